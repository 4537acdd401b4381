"""Run by test_ddp.py under torchrun or accelerate launch: train a recipe, then write this rank's parameter digest.

    ddp_worker.py RECIPE OUT_DIR [key=value ...]
    ddp_worker.py --jobs JOBS.json    several recipes one after another, in the same processes (each launch
                                      costs three processes' start-up): a list of {"recipe", "out", "overrides",
                                      "skew": bool, "copy": [FROM, TO] (rank 0 copies a folder after the job)};
                                      rank 0 prints "=== job N" before job N
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import mtnlp.train
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train


def skewed(real):
    """As if the ranks' kernels rounded otherwise: their metrics disagree."""
    from accelerate import PartialState
    from mtnlp.evaluation import main_metric

    calls = []

    def evaluate_split(model, tokenizer, tasks, metrics, split, *args, **kwargs):
        results = real(model, tokenizer, tasks, metrics, split, *args, **kwargs)
        calls.append(split)
        sign = 1 if PartialState().process_index == 0 else -1  # rank 0 improves at every evaluation, rank 1 never
        for name, values in results.items():
            key, greater = main_metric(metrics[name])
            values[key] += sign * len(calls) * (1 if greater else -1)
        for figures in (kwargs.get("by_label") or {}).values():  # and rank 1's figures per label are nonsense
            for label in figures:
                figures[label]["support"] *= sign
        return results

    return evaluate_split


def run(recipe_path, out_dir, overrides=(), skew=False):
    real = mtnlp.train.evaluate_split
    if skew:
        mtnlp.train.evaluate_split = skewed(real)
    try:
        result = train(load_recipe(recipe_path, list(overrides)))
    finally:
        mtnlp.train.evaluate_split = real
    acc = result.accelerator
    digest = hashlib.sha256()
    for name, tensor in sorted(result.last_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    Path(out_dir, f"rank-{acc.process_index}.json").write_text(json.dumps({
        "rank": acc.process_index, "world_size": acc.num_processes, "distributed_type": str(acc.distributed_type),
        "digest": digest.hexdigest(), "loss_weights": result.loss_weights,
    }))
    return acc


if sys.argv[1] == "--jobs":
    for number, job in enumerate(json.loads(Path(sys.argv[2]).read_text())):
        if os.environ.get("RANK", "0") == "0":
            print(f"=== job {number}", flush=True)
        acc = run(job["recipe"], job["out"], job.get("overrides", ()), job.get("skew", False))
        if job.get("copy"):
            if acc.is_main_process:
                shutil.copytree(*job["copy"])
            acc.wait_for_everyone()
else:
    recipe_path, out_dir, *overrides = sys.argv[1:]
    run(recipe_path, out_dir, overrides)
