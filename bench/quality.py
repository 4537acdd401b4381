"""Quality benchmark: multi-task recipes against single-task baselines with the same encoder and budget.

    python bench/quality.py recipes/full.yaml --single-task --tag full
    python bench/quality.py recipes/full.yaml recipes/methods/*.yaml --batches 2000 \
        --single-task --finetune 250 --tag methods

Each recipe is trained in this process, one after another (so wall times are comparable), into
bench/runs/<tag>/<name>. --single-task adds one run per task of the FIRST recipe: that task alone,
for exactly as many batches as the first recipe's task sampler gives it, with the same number of
evaluations, so the single-task runs together cost what the multi-task run costs. --batches N gives
every recipe the same budget of N training batches (a PCGrad or CAGrad update takes one batch per task) and
4 evaluations. --finetune N adds,
for each task, N more steps on that task alone starting from the first recipe's trained model
(MT-DNN's refinement: `model.init_from`). Results: bench/results/quality_<tag>.json (or --output) and a
markdown table; the runs' folders go to bench/runs/<tag> (or --runs-dir).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchlib import REPO, RESULTS, environment, sampler_counts, write_results

from mtnlp.data import load_task
from mtnlp.encoders import resolve_encoder
from mtnlp.evaluation import main_metric
from mtnlp.gradients import GRADIENT_METHODS
from mtnlp.recipe import default_metrics, load_recipe
from mtnlp.recipes.multitask import train
from transformers import AutoTokenizer


def task_steps(recipe) -> dict[str, int]:
    """How many batches the recipe's sampler gives each task over the run (it is a pure function)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(recipe.model.encoder))
    sizes = {n: len(load_task(recipe, n, spec, tokenizer, recipe.model.max_length).splits["train"])
             for n, spec in recipe.tasks.items()}
    t = recipe.training
    counts = sampler_counts(sizes, t.steps * t.grad_accum, t.seed, recipe.sampling.temperature,
                            recipe.sampling.strategy)
    return {n: max(1, round(c / t.grad_accum)) for n, c in counts.items()}


def with_budget(recipe, batches: int):
    """The recipe trained on `batches` batches in all (PCGrad, CAGrad: one batch of every task per update)."""
    t = recipe.training
    per_update = t.grad_accum * (len(recipe.tasks) if GRADIENT_METHODS[recipe.mtl.gradient].every_task else 1)
    steps = max(1, batches // per_update)
    training = replace(t, steps=steps, eval_every=max(1, steps // 4), log_every=max(1, min(t.log_every, steps // 40)))
    return replace(recipe, training=training)


def replace(spec, **changes):
    """A copy of a recipe section with some keys changed (the recipe's models are pydantic)."""
    return spec.model_copy(update=changes)


def single_task(recipe, name: str, steps: int, **model_changes):
    t = recipe.training
    evals = max(1, round(t.steps / t.eval_every)) if t.eval_every else 1
    training = replace(t, steps=steps, eval_every=max(1, steps // evals), save_every=None)
    model = replace(recipe.model, **model_changes)
    return replace(recipe, name=name, tasks={name: recipe.tasks[name]}, training=training, model=model)


def run(recipe, out_dir: Path, kind: str) -> dict:
    recipe = replace(recipe, output_dir=str(out_dir), overwrite_output_dir=True, training=replace(
        recipe.training, save_every=None, resume_from=None))
    print(f"\n=== {kind}: {recipe.name} ({recipe.training.steps} steps) -> {out_dir}", flush=True)
    start, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    result = train(recipe)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    model = result.last_model
    scores = {}
    for task, splits in result.metrics["tasks"].items():
        key = main_metric(default_metrics(recipe, task, model.config.tasks[task]["labels"]))[0]
        scores[task] = {split: values[key] for split, values in splits.items()} | {"metric": key}
    return {"kind": kind, "name": recipe.name, "steps": recipe.training.steps, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "load1_at_start": load, "load1_at_end": os.getloadavg()[0],
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "params": sum(p.numel() for p in model.parameters()), "best_step": result.metrics["best_step"],
            "precision": result.precision.as_dict(), "scores": scores, "metrics": result.metrics["tasks"]}


def table(runs: list[dict]) -> str:
    tasks = list(dict.fromkeys(t for r in runs for t in r["scores"]))
    head = "| run | " + " | ".join(f"{t} dev / test" for t in tasks) + " | wall (CPU) | trainable params |"
    lines = [head, "|" + "---|" * (len(tasks) + 3)]
    for r in runs:
        cells = []
        for t in tasks:
            s = r["scores"].get(t)
            cells.append(" / ".join(f"{100 * s[k]:.1f}" if k in s else "–" for k in ("validation", "test")) if s else "")
        cost = f"{r['wall_s'] / 60:.1f} min" + (f" ({r['cpu_s'] / 60:.1f})" if "cpu_s" in r else "")
        lines.append(f"| {r['name']} ({r['kind']}) | " + " | ".join(cells)
                     + f" | {cost} | {r['trainable_params'] / 1e6:.2f} M |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every recipe")
    parser.add_argument("--single-task", action="store_true", help="add single-task baselines of the first recipe")
    parser.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                        help="add per-task fine-tuning from the first recipe's model")
    parser.add_argument("--finetune-lr", type=float, default=2e-5)
    parser.add_argument("--batches", type=int, help="give every recipe this many training batches")
    parser.add_argument("--skip-multitask", action="store_true", help="only the baselines / fine-tuning")
    parser.add_argument("--tag", default="quality")
    parser.add_argument("--output", help="results JSON (default: bench/results/quality_<tag>.json)")
    parser.add_argument("--runs-dir", help="where the runs' model folders go (default: bench/runs/<tag>)")
    args = parser.parse_args()

    runs_dir = Path(args.runs_dir) if args.runs_dir else REPO / "bench" / "runs" / args.tag
    out = Path(args.output) if args.output else RESULTS / f"quality_{args.tag}.json"
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "environment": environment(), "runs": []}
    recipes = [load_recipe(p, args.set) for p in args.recipes]
    if args.batches:
        recipes = [with_budget(r, args.batches) for r in recipes]
    first = recipes[0]
    for recipe in recipes if not args.skip_multitask else []:
        results["runs"].append(run(recipe, runs_dir / recipe.name, "multi-task"))
        write_results(out, results)
    if args.single_task:
        steps = task_steps(first)
        print(f"single-task budgets (batches each task gets in '{first.name}'): {steps}")
        for name, n in steps.items():
            results["runs"].append(run(single_task(first, name, n), runs_dir / f"single-{name}", "single-task"))
            write_results(out, results)
    if args.finetune:
        for name in first.tasks:
            recipe = single_task(first, name, args.finetune, init_from=str(runs_dir / first.name), init_heads=True)
            recipe = replace(recipe, training=replace(recipe.training, lr=args.finetune_lr))
            results["runs"].append(run(recipe, runs_dir / f"finetune-{name}", f"{first.name} → fine-tune"))
            write_results(out, results)
    print("\n" + table(results["runs"]))


if __name__ == "__main__":
    main()
