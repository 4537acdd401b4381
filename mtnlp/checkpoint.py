"""Training checkpoints: model (safetensors), optimizer (torch, weights_only), scheduler, sampler and Python /
numpy RNG (JSON), torch RNG (safetensors).

A checkpoint is written to a temporary folder, fsynced and renamed, so a crash mid-write never
leaves a half checkpoint under a real name; "latest" is the newest complete one.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import UserError
from .folders import STATE_FILE, checkpoint_state, checkpoint_step, complete_checkpoints, weights_readable_as_umask, writing



ACCELERATORS = ("cuda", "mps", "xpu")  # torch modules with a device generator of their own


def rng_state() -> dict:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(mt), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}


def set_rng_state(state: dict, generators: dict[str, torch.Tensor]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(generators["torch"])
    for device in ACCELERATORS:
        if device in generators and getattr(torch, device).is_available():
            getattr(torch, device).set_rng_state(generators[device])


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "r+b") as f:  # (Windows refuses to flush a read-only handle)
            os.fsync(f.fileno())


def save_checkpoint(folder: Path, model, optimizer, state: dict, rank: int = 0, world_size: int = 1,
                    rank_state: dict | None = None, scaler=None) -> Path:
    """Write checkpoint `folder` atomically; each rank adds its own RNG state and `rank_state` (what
    differs between ranks, e.g. example counts), which load_checkpoint merges into that rank's state.
    `scaler`: fp16's gradient scaler, whose scale a resumed run must not learn again."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    if rank == 0:
        for stale in [tmp, *folder.parent.glob(".tmp-step-*")]:  # e.g. of a save a full disk stopped
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(world_size)
    generators = {"torch": torch.get_rng_state()}
    for device in ACCELERATORS:  # dropout on a GPU draws from this process's device's generator
        module = getattr(torch, device)
        if module.is_available() and getattr(module, "is_initialized", lambda: True)():
            generators[device] = module.get_rng_state()
    save_file(generators, str(tmp / f"rng-{rank}.safetensors"))
    (tmp / f"rng-{rank}.json").write_text(json.dumps(rng_state()), encoding="utf-8")
    (tmp / f"rank-{rank}.json").write_text(json.dumps(rank_state or {}), encoding="utf-8")
    _barrier(world_size)
    if rank == 0:
        with writing(tmp):
            weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            if scaler is not None:
                (tmp / "scaler.json").write_text(json.dumps(scaler.state_dict()), encoding="utf-8")
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")  # written last: marks the folder complete
            weights_readable_as_umask(tmp)  # safetensors writes 0600: a shared run directory's others could not resume
            _fsync_tree(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    _barrier(world_size)
    return folder


def _barrier(world_size: int) -> None:
    if world_size > 1:
        torch.distributed.barrier()


def log_variances_per_task(state: dict, optimizer) -> dict:
    """Optimizer state written when uncertainty weighting kept its K log-variances in one (K,) parameter (the
    last group) as the state of the K scalar parameters it has now; other state as it is."""
    saved, now = state["param_groups"][-1]["params"], optimizer.param_groups[-1]["params"]
    old = state["state"].get(saved[0], {}) if len(saved) == 1 else {}
    if len(now) < 2 or any(p.ndim for p in now) or not any(torch.is_tensor(v) and v.shape == (len(now),)
                                                           for v in old.values()):
        return state
    first = saved[0]  # the highest index: the weighting's group is the last
    # each its own tensors: AdamW counts `step` in place, and K parameters sharing one would count it K times
    parts = {first + j: {key: (v[j] if v.ndim == 1 else v).clone() if torch.is_tensor(v) else v
                         for key, v in old.items()} for j in range(len(now))}
    group = {**state["param_groups"][-1], "params": list(parts)}
    return {"state": {**{k: v for k, v in state["state"].items() if k != first}, **parts},
            "param_groups": state["param_groups"][:-1] + [group]}


def load_checkpoint(folder: Path, model, optimizer, rank: int = 0, world_size: int = 1, scaler=None) -> dict:
    """Restore model, optimizer (and fp16's `scaler`) and this rank's RNG; return the trainer state dict
    (its "ranks": how many processes wrote the checkpoint)."""
    try:  # weights_only: tensors and plain containers only, never arbitrary pickled objects
        # map_location: a GPU run's state loads on a CPU, and N ranks do not all build it on cuda:0 first;
        # load_state_dict moves it to each parameter's device
        optimizer_state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise UserError(f"{folder / 'optimizer.pt'}: refused to load: not plain optimizer state "
                        f"({str(e).splitlines()[0][:120]})") from None
    weights_loaded = False
    try:  # other weights (mtl.sharing, heads) or parameter groups (mtl.weighting) than this run's
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        weights_loaded = True
        optimizer.load_state_dict(log_variances_per_task(optimizer_state, optimizer))
    except (RuntimeError, ValueError) as e:
        saved, now = optimizer_state["param_groups"], optimizer.param_groups
        if weights_loaded and len(saved) in (2, 3) and len(now) == len(saved) + 2:  # (3: learned loss weights' group)
            raise UserError(f"{folder}: written by an mtnlp before training.head_lr, whose optimizer held its "
                            f"parameters in {len(saved)} groups, not {len(now)}: resume it with that mtnlp, or start a "
                            f"new run from its model (model.init_from={folder.parent.parent / 'model'})") from None
        raise UserError(f"{folder}: written by a run with other tasks or methods (mtl.sharing, mtl.freeze_encoder, "
                        "mtl.weighting, heads); "
                        f"resume it with the recipe it was started with ({str(e).splitlines()[0][:120]})") from None
    if scaler is not None and (folder / "scaler.json").exists():
        scaler.load_state_dict(json.loads((folder / "scaler.json").read_text(encoding="utf-8")))
    rng_file = folder / f"rng-{rank}.json"
    if rng_file.exists():
        set_rng_state(json.loads(rng_file.read_text(encoding="utf-8")), load_file(str(folder / f"rng-{rank}.safetensors")))
    state = checkpoint_state(folder)
    ranks = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("rank-*.json"))]
    state["ranks"] = len(ranks) or 1
    if len(ranks) == world_size:
        return state | ranks[rank]
    # another number of processes: every rank takes the mean of the ranks' DWA sums and counts, which DWA averages
    # over the ranks: the window's mean loss stays that of all ranks' losses (each weighted by its share of the items)
    own = [r.get("weighting", {}) for r in ranks]
    if ranks and all("sums" in w and "counts" in w for w in own):
        state["weighting"] = {**state.get("weighting", {}), **mean_sums_and_counts(own)}
    # and the mean of the ranks' loss log since the last record, which LossLog.flush sums over the ranks: the steps
    # before the resume weigh as those after it
    if ranks:
        state["loss_log"] = mean_sums_and_counts([r.get("loss_log", {}) for r in ranks])
    if "seen" in state and ranks:  # another number of processes: rank 0 counts every example trained so far
        state["seen"] = {task: {"batches": counts["batches"],
                                "examples": sum(r["seen"][task]["examples"] for r in ranks) if rank == 0 else 0}
                         for task, counts in state["seen"].items()}
    return state


def mean_sums_and_counts(parts: list[dict]) -> dict:
    """The mean over the ranks of their running "sums" and "counts" ({task: number} each; a task a rank lacks
    counts 0), in the order the ranks name the tasks."""
    return {key: {task: sum(part.get(key, {}).get(task, 0) for part in parts) / len(parts)
                  for task in dict.fromkeys(t for part in parts for t in part.get(key, {}))}
            for key in ("sums", "counts")}


def prune_checkpoints(checkpoints: Path, keep: int) -> None:
    for old in complete_checkpoints(checkpoints)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def remove_checkpoints_after(checkpoints: Path, step: int) -> None:
    """A run resumed at `step` writes them again (or, with other settings, continues another way, which
    `latest` must then find)."""
    for folder in checkpoints.glob("step-*"):
        if checkpoint_step(folder) > step:
            shutil.rmtree(folder, ignore_errors=True)
