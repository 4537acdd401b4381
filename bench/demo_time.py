"""Where the wall time of the demo (`mtnlp train recipes/demo.yaml`) goes, phase by phase (issue #10).

Runs the loop of recipes/multitask.py on recipes/demo.yaml (overrides as key=value after the options)
with a clock around each phase: imports, set-up (reading or loading the cached data, the model, the
optimizer), the training steps of each task, each evaluation, and finish() (the kept model on validation
and test). The machine, the date and the load average are recorded before the runs (`loadavg_at_start`,
after --wait-idle), the load average again at the end (`loadavg_at_end`). The data cache is warmed by a first set-up unless --cold, so a phase's time is the same
whether the demo ran before or not. Writes the times, the run's metrics, its resolved recipe (`recipe`: every
key, defaults included, as RUN/recipe.yaml has it) and the machine (CPU model, ISA flags, bf16 support, ISA
caps) to --output.

    python bench/demo_time.py --output bench/results/demo_time_fp32.json training.mixed_precision=no
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from mtnlp import train as T  # noqa: E402
from mtnlp.recipe import load_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(benchlib.RESULTS / "demo_time.json"))
    parser.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for a quiet machine")
    parser.add_argument("--cold", action="store_true", help="do not warm the data cache first")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    args = parser.parse_args()
    imports = time.perf_counter() - START
    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    environment = benchlib.environment()  # date and load average at the start of the runs (after the wait)

    with tempfile.TemporaryDirectory(prefix="mtnlp-demo-time-") as tmp:
        recipe = load_recipe(benchlib.REPO / "recipes" / "demo.yaml", [f"output_dir={tmp}/run", *args.overrides])
        if not args.cold:
            T.setup(recipe)  # reads and tokenises into the cache if this machine has not yet
        clock = time.perf_counter()
        run = T.setup(recipe)
        setup = time.perf_counter() - clock
        t = recipe.training
        steps, seconds, evaluations = collections.Counter(), collections.Counter(), []
        while run.progress.step < t.steps:  # recipes/multitask.py's loop, without checkpoints
            clock = time.perf_counter()
            task = T.train_step(run)
            T.log_step(run, task)
            seconds[task] += time.perf_counter() - clock
            steps[task] += 1
            if T.is_eval_step(run):
                clock = time.perf_counter()
                T.evaluate_and_select(run)
                evaluations.append(time.perf_counter() - clock)
        clock = time.perf_counter()
        result = T.finish(run)
        finish = time.perf_counter() - clock
        resolved = yaml.safe_load((Path(tmp) / "run" / "recipe.yaml").read_text())  # what ran, all defaults included

    total = imports + setup + sum(seconds.values()) + sum(evaluations) + finish
    results = environment | {
        "loadavg_at_end": list(os.getloadavg()), "wait_for_idle": idle, "overrides": args.overrides, "precision": result.precision.as_dict(),
        "seconds": {"imports": imports, "setup": setup, "train_steps": sum(seconds.values()),
                    "evaluations": evaluations, "finish": finish, "total": total},
        "train_steps_by_task": {task: {"steps": steps[task], "seconds": seconds[task],
                                       "seconds_per_step": seconds[task] / steps[task]} for task in steps},
        "metrics": result.metrics["tasks"], "recipe": resolved,
    }
    for phase, value in results["seconds"].items():
        value = sum(value) if isinstance(value, list) else value
        print(f"{phase:12s} {value:7.1f} s  {value / total:6.1%}")
    for task, facts in results["train_steps_by_task"].items():
        print(f"  {task:10s} {facts['steps']:4d} steps  {facts['seconds']:6.1f} s  {facts['seconds_per_step']:.3f} s/step")
    print(json.dumps(results["metrics"]))
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
