"""The run directory: resolved recipe, logs, best model, metrics.json, curves.png, printed tables."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from .evaluation import evaluate_split, main_metric, majority_baseline
from .recipe import Recipe, to_dict


def start_run(run_dir: Path, recipe: Recipe, precision) -> None:
    """A fresh run directory with the resolved recipe: training.mixed_precision is what this run uses,
    and a comment says what was asked for and why."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("history.jsonl", "train_log.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    resolved = to_dict(recipe)
    resolved["training"]["mixed_precision"] = precision.name
    note = f"# training.mixed_precision: {precision.requested} -> {precision.name} ({precision.reason})\n"
    (run_dir / "recipe.yaml").write_text(note + yaml.safe_dump(resolved, sort_keys=False))


def append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def forget_after(run_dir: Path, step: int) -> None:
    """Drop log lines from after `step` (a resumed run writes them again)."""
    for name in ("history.jsonl", "train_log.jsonl"):
        path = run_dir / name
        if not path.exists():
            continue
        kept = [r for r in read_jsonl(path) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def save_model(folder: Path, model, tokenizer) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


class LossLog:
    """Per-task training loss sums, kept on the device where the losses are: reading them is a host
    sync, so it happens once per log step (flush), not once per micro-batch."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts = defaultdict(int)

    def add(self, task: str, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.sums[task] = self.sums[task] + loss if task in self.sums else loss
        self.counts[task] += 1

    def flush(self) -> dict[str, float]:
        """Each task's mean loss since the last flush."""
        names = list(self.sums)
        values = torch.stack([self.sums[n] for n in names]).tolist() if names else []
        means = {n: v / self.counts[n] for n, v in zip(names, values)}
        self.sums.clear()
        self.counts.clear()
        return means


def one_line(results: dict, metrics: dict) -> str:
    return "  ".join(f"{name} {main_metric(metrics[name])[0]}={values[main_metric(metrics[name])[0]]:.4f}"
                     for name, values in results.items())


def table(results: dict[str, dict], baselines: dict[str, dict] | None = None) -> str:
    """A plain-text table: one row per task and split, one column per metric."""
    rows = []
    for task, splits in results.items():
        for split, values in splits.items():
            base = (baselines or {}).get(task, {}).get(split, {})
            cells = "  ".join(f"{k}={v:.4f}" + (f" (majority {base[k]:.4f})" if k in base else "")
                              for k, v in values.items())
            rows.append((task, split, cells))
    if not rows:
        return "(no evaluation data)"
    w1 = max(len(r[0]) for r in rows + [("task", "", "")])
    w2 = max(len(r[1]) for r in rows + [("", "split", "")])
    lines = [f"{'task':<{w1}}  {'split':<{w2}}  metrics", "-" * (w1 + w2 + 12)]
    lines += [f"{t:<{w1}}  {s:<{w2}}  {c}" for t, s, c in rows]
    return "\n".join(lines)


def final_metrics(recipe, run_dir: Path, model, tokenizer, tasks, metrics, state, accelerator, precision) -> dict:
    """Evaluate the best model on validation and test; write metrics.json and curves.png; print the table."""
    out = {"tasks": {name: {} for name in tasks}, "best_step": state["best_step"], "precision": precision.as_dict()}
    baselines = {name: {} for name in tasks}
    for split in ("validation", "test"):
        results = state.get("best_validation") if split == "validation" else None
        if results is None:
            results = evaluate_split(model, tokenizer, tasks, metrics, split, recipe.training.eval_batch_size,
                                     accelerator.autocast)
        for name, values in results.items():
            out["tasks"][name][split] = values
            baselines[name][split] = majority_baseline(tasks[name], split, metrics[name])
    out["majority_baseline"] = baselines
    if accelerator.is_main_process:
        (run_dir / "metrics.json").write_text(json.dumps(out, indent=2))
        plot_curves(run_dir)
        accelerator.print(f"\nbest step {state['best_step']} — metrics of the kept model ({run_dir / 'model'}):")
        accelerator.print(table(out["tasks"], baselines))
    return out


def plot_curves(run_dir: Path) -> None:
    """curves.png: per-task training loss (left) and validation main metric (right) over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_log, history = read_jsonl(run_dir / "train_log.jsonl"), read_jsonl(run_dir / "history.jsonl")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for task in sorted({t for r in train_log for t in r["loss"]}):
        points = [(r["step"], r["loss"][task]) for r in train_log if task in r["loss"]]
        left.plot(*zip(*points), label=task)
    left.set(title="training loss", xlabel="step", yscale="log")
    for task in sorted({t for r in history for t in r["main"]}):
        points = [(r["step"], r["main"][task]) for r in history if task in r["main"]]
        right.plot(*zip(*points), marker="o", label=task)
    right.set(title="validation (main metric)", xlabel="step")
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)
