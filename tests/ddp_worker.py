"""Run by test_ddp.py under torchrun: train a recipe, then write this rank's parameter digest."""

import hashlib
import json
import sys
from pathlib import Path

from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train

recipe_path, out_dir, *overrides = sys.argv[1:]
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
