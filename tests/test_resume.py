"""The run directory over a run's life: a new run in a used output_dir, resuming from another run's or an
older checkpoint, changed settings on resume (methods, learning rates, number of processes)."""

import json
import shutil

import pytest
import torch

from mtnlp.checkpoint import load_checkpoint
from mtnlp.recipe import load_recipe
from mtnlp.train import make_optimizer, setup, train_step


@pytest.mark.parametrize("before, after", [
    ({}, {"mtl.weighting": "dwa", "mtl.dwa_window": 1}),
    ({}, {"mtl.gradient": "pcgrad"}),
    ({"mtl.gradient": "pcgrad"}, {"mtl.gradient": "pcgrad", "training.grad_accum": 2}),
    ({"mtl.gradient": "pcgrad"}, {}),
], ids=["static->dwa", "sum->pcgrad", "pcgrad-grad_accum", "pcgrad->sum"])
def test_resuming_with_another_weighting_or_gradient_method_continues(make_recipe, tmp_path, before, after):
    recipe = make_recipe(training={"steps": 4, "grad_accum": 3})
    first = setup(load_recipe(recipe, [f"{k}={v}" for k, v in before.items()]))
    for _ in range(2):
        train_step(first)
    from mtnlp.train import checkpoint

    folder = checkpoint(first)
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}", *(f"{k}={v}" for k, v in after.items())]))
    for _ in range(2):
        train_step(resumed)
    assert resumed.progress.step == 4


def test_learning_rates_given_on_resume_apply(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 6, "warmup": 0.0})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    from mtnlp.train import checkpoint

    folder = checkpoint(run)
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}", "training.lr=2e-4", "training.head_lr=4e-4"]))
    factor = (6 - 3) / 6  # linear decay, no warm-up
    lrs = [g["lr"] for g in resumed.optimizer.param_groups]
    assert lrs == pytest.approx([2e-4 * factor] * 2 + [4e-4 * factor] * 2)
    assert resumed.scheduler.get_last_lr() == pytest.approx(lrs)
    train_step(resumed)
    assert resumed.scheduler.get_last_lr()[0] == pytest.approx(2e-4 * 2 / 6)


def test_resuming_with_another_number_of_processes_warns_and_keeps_the_counts(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 4})
    run = setup(load_recipe(recipe))
    for _ in range(2):
        train_step(run)
    from mtnlp.train import checkpoint

    folder = checkpoint(run)
    seen = json.loads((folder / "rank-0.json").read_text())["seen"]
    # as if written by 2 processes: rank 1 trained on other examples, its own count
    rank1 = {t: {"batches": c["batches"], "examples": c["examples"] + 1} for t, c in seen.items()}
    (folder / "rank-1.json").write_text(json.dumps({"seen": rank1}))
    for suffix in ("json", "safetensors"):
        shutil.copy(folder / f"rng-0.{suffix}", folder / f"rng-1.{suffix}")
    with pytest.warns(UserWarning, match=rf"{folder}: written by 2 process\(es\), resumed with 1: the batches differ"):
        resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}"]))
    assert resumed.plan.seen == {t: {"batches": c["batches"], "examples": 2 * c["examples"] + 1} for t, c in seen.items()}
    # 1 -> 2 processes: the second counts from 0 (the first carries every example so far)
    (folder / "rank-1.json").unlink()
    state = load_checkpoint(folder, resumed.unwrapped, resumed.optimizer, rank=1, world_size=2)
    assert state["ranks"] == 1 and all(c["examples"] == 0 for c in state["seen"].values())
    state = load_checkpoint(folder, resumed.unwrapped, resumed.optimizer, rank=0, world_size=2)
    assert state["seen"] == seen


def test_one_step_trains():
    from mtnlp.recipe import TrainingSpec

    model = torch.nn.Linear(2, 2)
    optimizer, _ = make_optimizer(model, TrainingSpec(steps=1, lr=1e-3))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the only update's: no warm-up to 0


def test_the_cuda_generator_is_saved_and_restored(tmp_path, monkeypatch):
    """(On CPU the CUDA calls are stand-ins: what matters is that a checkpoint carries the generator.)"""
    from mtnlp.checkpoint import save_checkpoint

    generator, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: generator)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    load_checkpoint(save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1}), model, optimizer)
    assert len(restored) == 1 and torch.equal(restored[0], generator)
