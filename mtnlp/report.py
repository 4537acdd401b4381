"""The run directory: resolved recipe, logs, best model, metrics.json, curves.png, printed tables."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import unicodedata
import warnings
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from pydantic import ValidationError

from .encoders import save_tokenizer
from .errors import UserError, quiet_loggers
from .evaluation import evaluate_split, main_metric, majority_baseline
from .folders import RUN_OUTPUTS, writing
from .recipe import Recipe, resolve_path, to_dict
from .tasks.base import INVISIBLE


def start_run(run_dir: Path, recipe: Recipe, precision) -> None:
    """A fresh run directory: a previous run's outputs removed (recipe.refuse_to_mix allowed it), the resolved recipe."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for path in replaced_recipes(run_dir):
        path.unlink()
    names = {recipe.name}  # report_to's folder, and the replaced run's (its recipe.yaml's name): TensorBoard shows both
    try:
        names.add(str(yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))["name"]))
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        pass
    for tracker in (run_dir / name for name in names):
        if run_dir.resolve() in tracker.resolve().parents:
            for path in tracker.glob("events.out.tfevents.*"):
                path.unlink()
    write_recipe(run_dir, recipe, precision)


def resume_recipe(run_dir: Path, recipe: Recipe, precision, step: int) -> list[str]:
    """Resuming a run in its folder at `step`: recipe.yaml becomes the resumed run's (e.g. more steps, another
    lr). The recipe that trained up to `step` (recipe_that_trained) is kept as recipe.before-step-{step}.yaml
    if it said otherwise (later ones go: their steps are trained again). Returns what differs from it ("key: old -> new"), training.steps aside
    (the resume says what it does with them); where the run's folder is (moved) is no setting."""
    trained = recipe_that_trained(run_dir, step)
    old = trained.read_text(encoding="utf-8") if trained else None
    for replaced in replaced_recipes(run_dir, after=step - 1):
        replaced.unlink()
    write_recipe(run_dir, recipe, precision)

    def settings(text):  # with the precision the first line says was used (auto may resolve otherwise now)
        resolved = yaml.safe_load(text) or {}
        try:  # keys added since an older mtnlp wrote it: at their defaults, which are how it trained
            resolved = to_dict(Recipe.model_validate(resolved))
        except ValidationError:
            pass
        resolved.get("training", {}).pop("resume_from", None)
        for key in ("output_dir", "overwrite_output_dir"):  # where the run's folder is (it may have moved)
            resolved.pop(key, None)
        used = re.match(r"# training.mixed_precision: \S+ -> (\S+)", text)
        resolved["precision used"] = used and used.group(1)
        return dict(flat(resolved))

    was, now = (settings(old) if old is not None else None), settings((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    if was is None or was == now:
        return []
    (run_dir / f"recipe.before-step-{step:06d}.yaml").write_text(old, encoding="utf-8")

    def shown(values, key):  # a key one side has as a section (label_weights: {a: 2} against balanced)
        if key in values:
            return yaml_text(values[key], default_flow_style=True, width=10**6).strip().removesuffix("\n...")
        return "(a mapping)" if any(k.startswith(key + ".") for k in values) else "(unset)"

    return [f"{key}: {shown(was, key)} -> {shown(now, key)}" for key in sorted({*was, *now})
            if was.get(key) != now.get(key) and key != "training.steps"]


def flat(tree: dict, prefix: str = ""):
    """(dotted key, value) of every leaf of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


TRACKER_NAMES = {"weights": "weight", "coefficients": "coefficient"}  # train_log.jsonl's per-task keys in TensorBoard


def train_scalars(record: dict) -> dict:
    """A train_log.jsonl record's numbers as the trackers' scalars: train/lr, train/loss/<task>,
    train/weight/<task>, train/pcgrad_conflicts, train/examples/<task>, ..."""
    return {f"train/{TRACKER_NAMES.get(key, key)}" + (f"/{task}" if task else ""): value
            for key, values in record.items() if key != "step"
            for task, value in (values.items() if isinstance(values, dict) else [(None, values)])
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def eval_scalars(record: dict) -> dict:
    """A history.jsonl record's as the trackers' scalars: eval/<task>/<metric>, eval/<task>/loss and the
    selection's eval/score."""
    scores = {"eval/score": record["score"]} if isinstance(record.get("score"), (int, float)) else {}
    losses = {f"eval/{task}/loss": value for task, value in record.get("loss", {}).items()
              if isinstance(value, (int, float))}
    return scores | losses | {f"eval/{task}/{metric}": value for task, results in record.get("validation", {}).items()
                              for metric, value in results.items() if isinstance(value, (int, float))}


def recipe_that_trained(run_dir: Path, step: int) -> Path | None:
    """The recipe file that trained the run in `run_dir` up to `step`: the earliest recipe.before-step-M.yaml
    with M >= step, or else recipe.yaml (None: neither is there)."""
    later = sorted(replaced_recipes(run_dir, after=step - 1), key=lambda p: p.name)
    path = run_dir / "recipe.yaml"
    return later[0] if later else path if path.exists() else None


def planned_steps(run_dir: Path, step: int) -> int | None:
    """training.steps of the recipe that trained the run in `run_dir` up to `step` (None: not known)."""
    trained = recipe_that_trained(run_dir, step)
    try:
        steps = yaml.safe_load(trained.read_text(encoding="utf-8"))["training"]["steps"]
    except (AttributeError, OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    return steps if isinstance(steps, int) else None


def replaced_recipes(run_dir: Path, after: int = -1) -> list[Path]:
    """The recipe.before-step-N.yaml files that resume_recipe kept, with N > `after`."""
    return [p for p in run_dir.glob("recipe.before-step-*.yaml") if int(p.stem.rsplit("-", 1)[1]) > after]


def write_recipe(run_dir: Path, recipe: Recipe, precision) -> None:
    """RUN/recipe.yaml: training.mixed_precision is what the recipe asked for (e.g. auto: `mtnlp evaluate MODEL
    RUN/recipe.yaml` on another machine chooses for that machine), and a comment says what it resolved to
    here and why."""
    resolved = to_dict(recipe)
    resolved.pop("overwrite_output_dir", None)  # what this run did to the folder, which resuming with this file must not
    # relative data paths resolve beside the recipe file, which this copy is not: make their base absolute
    resolved["data_dir"] = str(resolve_path(recipe, ".").resolve())
    note = f"# training.mixed_precision: {precision.requested} -> {precision.name} ({precision.reason})\n"
    (run_dir / "recipe.yaml").write_text(note + yaml_text(resolved, sort_keys=False), encoding="utf-8")


def yaml_text(value, **options) -> str:
    """YAML of `value` with its characters as they are (a task named 风格) where that reads back the same and shows
    them; escaped where it would not (U+0085 reads back as a space; a zero-width space, or café written two ways,
    would look like nothing or like the same text)."""
    text = yaml.safe_dump(value, allow_unicode=True, **options)
    if text != unicodedata.normalize("NFC", text) or INVISIBLE.search(text) or yaml.safe_load(text) != value:
        return yaml.safe_dump(value, **options)
    return text


def append(path: Path, record: dict) -> None:
    """One JSON line; a non-finite number (an fp16 step's inf gradient norm, a diverged loss) is null, as
    strict JSON readers refuse NaN and Infinity."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(finite(record), allow_nan=False) + "\n")


def finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def read_jsonl(path: Path) -> list[dict]:
    """A log's records; a last line cut short (the run was stopped, or its disk filled, while writing it) is
    dropped with a warning, as a resume writes that step's record again."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError as e:
            if number < len(lines):
                raise UserError(f"{path}:{number}: not a JSON record ({e})") from None
            warnings.warn(f"{path}:{number}: a line cut short, left out", stacklevel=2)
            continue
        if record is not None:
            records.append(record)
    return records


def forget_after(run_dir: Path, step: int) -> None:
    """Drop log lines from after `step` (a resumed run writes them again; resume_recipe drops the recipes)."""
    for name in ("history.jsonl", "train_log.jsonl"):
        path = run_dir / name
        if not path.exists():
            continue
        kept = [r for r in read_jsonl(path) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def carry_logs(source: Path, run_dir: Path, step: int) -> dict[str, list[dict]]:
    """A run resumed at `step` from another run's checkpoint into a new folder: that run's log lines up to `step`,
    so that the new folder's history (and curves) holds the evaluations its kept model may be from. A line that is
    not a record of ours (damaged, cut short, not UTF-8) is left out, with a warning; the others are carried, and
    returned by log name (for the trackers)."""
    carried = {}
    for name in ("history.jsonl", "train_log.jsonl"):
        path, kept, bad = source / name, [], 0
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        except OSError as e:
            warnings.warn(f"{path}: not carried over into {run_dir} ({e.strerror})", stacklevel=2)
            continue
        for line in filter(str.strip, lines):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
                bad += 1
            elif record["step"] <= step:
                kept.append(record)
        if bad:
            warnings.warn(f"{path}: {bad} line(s) not a log record, not carried over into {run_dir}", stacklevel=2)
        if kept:
            (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        carried[name] = kept
    return carried


def save_model(folder: Path, model, tokenizer, state_dict: dict | None = None) -> None:
    """The model (with `state_dict`: those weights, in its config) and its tokenizer, written beside `folder`
    and swapped in (two renames) as the whole of it: a crash or a full disk mid-write leaves the folder as it
    was, and a reader (`mtnlp predict` during training) is far less likely to meet one step's weights under
    another's config."""
    folder = folder.resolve() if folder.is_symlink() else folder  # a link stays: what it points to is swapped
    tmp, old = folder.with_name(f".tmp-{folder.name}"), folder.with_name(f".old-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    with writing(tmp):
        model.save_pretrained(tmp, state_dict=state_dict)
        save_tokenizer(tokenizer, tmp)
    # nothing else of the old folder comes along: its card, curves and eval-SPLIT.json describe the old weights
    # (finish writes the card again)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


class LossLog:
    """Per-task training loss sums, kept on the device where the losses are: reading them is a host
    sync, so it happens once per log step (flush), not once per micro-batch."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts = defaultdict(int)
        self.last: dict[str, float] = {}  # the means of the last flush

    def add(self, task: str, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.sums[task] = self.sums[task] + loss if task in self.sums else loss
        self.counts[task] += 1

    def flush(self, tasks: list[str], accelerator=None) -> dict[str, float]:
        """Each task's mean loss since the last flush, over every process's micro-batches (under DDP a
        collective: each process's losses are weighted by its share of an update's items, train.draw_update)."""
        ddp = accelerator is not None and accelerator.num_processes > 1
        means = {}
        if self.sums or ddp:
            device = accelerator.device if ddp else next(iter(self.sums.values())).device
            zero = torch.zeros((), device=device)
            both = torch.stack([torch.stack([self.sums.get(n, zero).to(device) for n in tasks]),
                                torch.tensor([float(self.counts[n]) for n in tasks], device=device)])
            sums, counts = (accelerator.reduce(both, "sum") if ddp else both).tolist()
            means = {n: v / c for n, v, c in zip(tasks, sums, counts) if c}
        self.sums.clear()
        self.counts.clear()
        self.last = means
        return means

    def state_dict(self) -> dict:
        """The sums since the last flush, read in one host sync (at log and checkpoint steps only); a
        checkpoint keeps them, so that a resumed run's next record averages the steps an uninterrupted run's does."""
        names = list(self.sums)
        values = torch.stack([self.sums[n] for n in names]).tolist() if names else []
        return {"sums": dict(zip(names, values)), "counts": {n: self.counts[n] for n in names}}

    def load_state_dict(self, state: dict, device) -> None:
        self.sums = {n: torch.tensor(v, dtype=torch.float32, device=device) for n, v in state.get("sums", {}).items()}
        self.counts = defaultdict(int, state.get("counts", {}))


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
    w1 = max(shown_width(r[0]) for r in rows + [("task", "", "")])
    w2 = max(shown_width(r[1]) for r in rows + [("", "split", "")])
    lines = [f"{'task':<{w1}}  {'split':<{w2}}  metrics", "-" * (w1 + w2 + 12)]
    lines += [f"{padded(t, w1)}  {padded(s, w2)}  {c}" for t, s, c in rows]
    return "\n".join(lines)


def label_table(by_label: dict[str, dict[str, dict]]) -> str:
    """One row per task and label: precision, recall, F1 and support (evaluation.evaluate_split's by_label), and
    the decision threshold of a multilabel task's labels."""
    thresholds = any("threshold" in f for labels in by_label.values() for f in labels.values())
    rows = [("task", "label", "precision", "recall", "f1", "support") + ("threshold",) * thresholds]
    rows += [(task, label, f"{f['precision']:.4f}", f"{f['recall']:.4f}", f"{f['f1']:.4f}", f"{f['support']:,}")
             + (f"{f['threshold']:g}" if "threshold" in f else "",) * thresholds
             for task, labels in by_label.items() for label, f in labels.items()]
    if len(rows) == 1:
        return "(no task with labels)"
    return aligned(rows, right={2, 3, 4, 5, 6})


def aligned(rows: list[tuple[str, ...]], right: set[int]) -> str:
    """Rows of cells as text columns two spaces apart, the columns in `right` (numbers) right-aligned."""
    widths = [max(shown_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(padded(c, w, i in right) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def shown_width(text: str) -> int:
    """The columns a terminal gives `text`: two for a wide character (Chinese, Japanese, Korean, full-width), none
    for a combining mark or an invisible one."""
    return sum(0 if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf")
               else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def padded(text: str, width: int, right: bool = False) -> str:
    """`text` padded with spaces to `width` shown columns (on the left when `right`)."""
    fill = " " * max(width - shown_width(text), 0)
    return fill + text if right else text + fill


def data_table(facts: dict[str, dict[str, dict]], max_length: int) -> str:
    """One row per task and split: examples, labels, the largest and smallest label share (over words
    for tagging; the score range for regression; questions with and without an answer for QA) and how
    many examples max_length truncates."""
    def pct(fraction):
        return f"{fraction:.1%}" if fraction >= 0.001 or not fraction else "<0.1%"

    def share(entry):
        return f"{entry[0]} {pct(entry[1])}"

    rows = [("task", "split", "examples", "labels", "largest", "smallest", f"> {max_length} tokens")]
    for task, splits in facts.items():
        for split, f in splits.items():
            if f.get("streamed"):  # read as training goes: only its size and label set are known
                rows.append((task, split, f"{f['examples']:,}", str(f["labels"] or "-"), "-", "-", "(streamed)"))
                continue
            if "range" in f:
                spread = ["-", f"min {f['range'][0]:g}", f"max {f['range'][1]:g}"]
            else:
                spread = [str(f["labels"]), share(f["largest"]), share(f["smallest"])]
            over = f["over_max_length"]
            unit = f" {f['unit']}" if "unit" in f else ""  # what a type counts, when not rows (QA: questions)
            rows.append((task, split, f"{f['examples']:,}{unit}", *spread,
                         f"{over:,} ({pct(over / f['examples'])})" if over else "0"))
    return aligned(rows, right={2, 3, 6})


def final_metrics(recipe, run_dir: Path, model, tokenizer, tasks, metrics, progress, accelerator, precision, *,
                  data: dict, seen: dict) -> dict:
    """Evaluate the best model on validation and test; write metrics.json and curves.png; print the table.
    `progress`: train.Progress; `data`: each task's split facts (data.split_facts); `seen`: each task's
    batches and examples trained."""
    out = {"tasks": {name: {} for name in tasks}, "best_step": progress.best_step,
           "steps": {"trained": progress.step, "planned": recipe.training.steps}, "precision": precision.as_dict(),
           "data": {"max_length": recipe.model.max_length, "tasks": data}, "trained_on": seen,
           "processes": accelerator.num_processes}  # a step's batch: batch_size x grad_accum x processes
    baselines, per_label = {name: {} for name in tasks}, {name: {} for name in tasks}
    for split in ("validation", "test"):
        # the kept model's validation figures as training computed them (a checkpoint of an older mtnlp has none per label)
        stored = split == "validation" and progress.best_validation is not None and progress.best_by_label is not None
        results, by_label = (progress.best_validation, progress.best_by_label) if stored else (None, {})
        if results is None:
            results = evaluate_split(model, tokenizer, tasks, metrics, split, recipe.training.eval_batch_size,
                                     accelerator.autocast, say=accelerator.print, by_label=by_label)
        for name, values in results.items():
            out["tasks"][name][split] = values
            if "train" in tasks[name].splits:  # (not for a streamed training split)
                baselines[name][split] = majority_baseline(tasks[name], split, metrics[name])
        for name, figures in by_label.items():
            per_label[name][split] = figures
    out["majority_baseline"] = baselines
    out["per_label"] = {name: splits for name, splits in per_label.items() if splits}
    if accelerator.is_main_process:
        (run_dir / "metrics.json").write_text(json.dumps(finite(out), indent=2, allow_nan=False, ensure_ascii=False),  # NaN: null
                                             encoding="utf-8")
        plot_curves(run_dir, {name: main_metric(metrics[name])[0] for name in tasks})
        accelerator.print(f"\nbest step {progress.best_step} — metrics of the kept model ({run_dir / 'model'}):")
        accelerator.print(table(out["tasks"], baselines))
    return out


def plot_curves(run_dir: Path, main: dict[str, str]) -> None:
    """run_dir/curves.png (see curves_figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a task name in a script no installed font has (CJK on a bare server) is drawn as boxes, not warned of; a
    # fallback font without a "normal" weight is logged as a findfont warning per character
    with quiet_loggers("matplotlib.font_manager"), warnings.catch_warnings(), \
            matplotlib.rc_context({"font.family": fonts()}):
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        fig = curves_figure(run_dir, main)
        fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)


# fonts for scripts matplotlib's DejaVu Sans lacks (CJK above all), as Linux, macOS and Windows ship them
SCRIPT_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans", "WenQuanYi Zen Hei", "Droid Sans Fallback",
                "PingFang SC", "Hiragino Sans", "Apple SD Gothic Neo", "Microsoft YaHei", "Yu Gothic", "Malgun Gothic",
                "Noto Sans Devanagari", "Noto Sans Thai", "Noto Sans Arabic", "Noto Sans Hebrew", "Arial Unicode MS")


def fonts() -> list[str]:
    """The user's font.family (matplotlibrc: a CJK font of their own stays first), then the installed SCRIPT_FONTS:
    matplotlib draws each character in the first font that has it."""
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    own = list(matplotlib.rcParams["font.family"])
    return [*own, *[name for name in SCRIPT_FONTS if name in installed and name not in own]]


LEGEND_INSIDE = 6  # tasks up to which each panel keeps its legend inside; more get one legend below both
LEGEND_CHARACTERS = 40  # a longer task name is shortened in the legend, keeping its start and end


def line_styles(tasks: list[str]) -> dict[str, dict]:
    """A colour and line style per task, each pair its own: matplotlib's 10 colours, then dashed, dotted and
    dash-dotted lines in the same colours (40 tasks), then again."""
    import matplotlib.pyplot as plt

    colours, dashes = plt.rcParams["axes.prop_cycle"].by_key()["color"], ["-", "--", ":", "-."]
    return {task: {"color": colours[i % len(colours)], "linestyle": dashes[i // len(colours) % len(dashes)]}
            for i, task in enumerate(tasks)}


def legend_name(task: str) -> str:
    """The task's name in a legend: a long one keeps its start and its end (..._v1, ..._v2 stay apart)."""
    if len(task) <= LEGEND_CHARACTERS:
        return task
    half = (LEGEND_CHARACTERS - 1) // 2
    return task[:half] + "…" + task[-(LEGEND_CHARACTERS - 1 - half):]


def curves_figure(run_dir: Path, main: dict[str, str]):
    """Per-task training loss (left) and validation main metric (right) over steps, the kept model's step marked;
    `main`: each task's main metric, in the recipe's task order, which gives each task its colour and line style in
    both panels."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    train_log, history = read_jsonl(run_dir / "train_log.jsonl"), read_jsonl(run_dir / "history.jsonl")
    style = line_styles(list(main))
    label = {task: legend_name(task) for task in main}
    below = len(main) > LEGEND_INSIDE
    entry = {task: f"{label[task]} ({main[task]})" for task in main}  # (the validation panel's and the legend's)
    # columns that fit the figure's 11 inches at about 0.075 inch a character, besides the line's sample
    columns = max(1, min(3, int(10.5 // (0.075 * max(map(len, entry.values())) + 0.6))))
    rows = -(-len(main) // columns) if below else 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4 + 0.25 * rows), layout="constrained")
    for task in main:
        # (.get: a line written by hand, or carried over from another run's log, may lack them)
        if points := [(r["step"], r["loss"][task]) for r in train_log if task in (r.get("loss") or {})]:
            left.plot(*zip(*points), label=label[task], marker="o" if len(points) == 1 else None, **style[task])
        if points := [(r["step"], r["main"][task]) for r in history if task in (r.get("main") or {})]:
            right.plot(*zip(*points), marker="o", label=entry[task], **style[task])
    if kept := [r["step"] for r in history if r.get("best")]:  # the kept model's step (model/, metrics.json best_step)
        right.axvline(kept[-1], color="0.6", linestyle=":", linewidth=1, zorder=0)
        right.text(kept[-1], 0.02, f"kept (step {kept[-1]}) ", transform=right.get_xaxis_transform(), rotation=90,
                   ha="right", va="bottom", fontsize=8, color="0.4")
    left.set(title="training loss", xlabel="step", yscale="log")
    right.set(title="validation (main metric)", xlabel="step")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # steps
        if not below and ax.get_legend_handles_labels()[0]:
            ax.legend()
    if below:  # one entry per task, for both panels
        fig.legend([Line2D([], [], **style[task]) for task in main], list(entry.values()), loc="outside lower center",
                   ncols=columns)
    return fig
