"""Run by test_ddp.py under torchrun: train a recipe, then write this rank's parameter digest."""

import hashlib
import json
import os
import sys
from pathlib import Path

from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train

recipe_path, out_dir, *overrides = sys.argv[1:]
if os.environ.get("MTNLP_TEST_SKEW_EVALUATION"):  # as if the ranks' kernels rounded otherwise: their metrics disagree
    import mtnlp.train
    from accelerate import PartialState
    from mtnlp.evaluation import main_metric

    real, calls = mtnlp.train.evaluate_split, []

    def skewed(model, tokenizer, tasks, metrics, split, *args, **kwargs):
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

    mtnlp.train.evaluate_split = skewed
result = train(load_recipe(recipe_path, overrides))
acc = result.accelerator
digest = hashlib.sha256()
for name, tensor in sorted(result.last_model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().float().cpu().numpy().tobytes())
Path(out_dir, f"rank-{acc.process_index}.json").write_text(json.dumps({
    "rank": acc.process_index, "world_size": acc.num_processes, "distributed_type": str(acc.distributed_type),
    "digest": digest.hexdigest(), "loss_weights": result.loss_weights,
}))
