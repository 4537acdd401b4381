"""The demo's metrics over several seeds, for the demo recipe as it is and as it was (issue #10 item 5).

One seed's metrics move by more than a point on sentiment (872 dev sentences) between seeds, so a change
to the demo is judged on the mean over seeds as well as on the README's seed. Each run is
`python recipes/multitask.py --config recipes/demo.yaml` in its own process with the variant's overrides
and `training.seed`; writes each run's metrics, precision (requested and used, from its metrics.json)
and wall time, each variant's means and resolved recipe (`recipes`: the last seed's), and the machine (recorded before the first run; the load average at
the end beside it) to --output.

    python bench/demo_seeds.py --seeds 42 7 1 --output bench/results/demo_seeds_fp32.json training.mixed_precision=no
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

VARIANTS = {
    "demo": [],
    # recipes/demo.yaml until 2026-12-03
    "600 steps, temperature 2, no head_lr": ["training.steps=600", "training.eval_every=300", "training.head_lr=null",
                                             "sampling.temperature=2.0"],
}
MAIN = {("sentiment", "validation"): "accuracy", ("question", "validation"): "accuracy",
        ("question", "test"): "accuracy", ("pos", "validation"): "token_accuracy"}


def run(overrides: list[str], out: Path) -> tuple[dict, float, dict, dict]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(benchlib.REPO / "recipes" / "multitask.py"), "--config",
                           str(benchlib.REPO / "recipes" / "demo.yaml"), f"output_dir={out}", "overwrite_output_dir=true",
                           *overrides], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"a run failed (exit status {done.returncode}), overrides {overrides}:\n{done.stderr[-3000:]}")
    written = json.loads((out / "metrics.json").read_text()) | {"recipe": yaml.safe_load((out / "recipe.yaml").read_text())}
    tasks = written["tasks"]
    metrics = {f"{task} {split} {metric}": tasks[task][split][metric] for (task, split), metric in MAIN.items()}
    return metrics, seconds, written.get("precision"), written["recipe"]


def merged(overrides: list[str], given: list[str]) -> list[str]:
    """A variant's overrides with those given replacing any of the same key (mtnlp refuses a key given twice)."""
    keys = {item.split("=", 1)[0] for item in given}
    return [item for item in overrides if item.split("=", 1)[0] not in keys] + given


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1])
    parser.add_argument("--output", default=str(benchlib.RESULTS / "demo_seeds.json"))
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every run, key=value")
    args = parser.parse_args()
    environment = benchlib.environment()  # date and load average at the start of the runs
    runs, recipes = [], {}  # each variant's resolved recipe (RUN/recipe.yaml: every key, defaults included)
    with tempfile.TemporaryDirectory(prefix="mtnlp-demo-seeds-") as tmp:
        for seed in args.seeds:  # seed-major: a drift in the machine's speed touches both variants alike
            for name, overrides in VARIANTS.items():
                metrics, seconds, precision, recipes[name] = run(merged(overrides, [*args.overrides, f"training.seed={seed}"]),
                                                  Path(tmp) / f"{name}-{seed}")
                runs.append({"variant": name, "seed": seed, "seconds": seconds, "precision": precision,
                             "metrics": metrics})
                print(f"{name:40s} seed {seed:3d} {seconds:6.1f} s  " + "  ".join(f"{v:.4f}" for v in metrics.values()))
    means = {name: {key: statistics.mean(r["metrics"][key] for r in runs if r["variant"] == name) for key in runs[0]["metrics"]}
             | {"seconds": statistics.mean(r["seconds"] for r in runs if r["variant"] == name)} for name in VARIANTS}
    for name, mean in means.items():
        print(f"{name:40s} mean     {mean['seconds']:6.1f} s  " + "  ".join(f"{v:.4f}" for k, v in mean.items() if k != "seconds"))
    benchlib.write_results(Path(args.output), environment | {
        "loadavg_at_end": list(os.getloadavg()), "variants": VARIANTS, "overrides": args.overrides,
        "precision_used": sorted({r["precision"]["used"] for r in runs if r["precision"]}), "runs": runs,
        "means": means, "recipes": recipes})


if __name__ == "__main__":
    main()
