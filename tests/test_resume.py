"""The run directory over a run's life: a new run in a used output_dir, resuming from another run's or an
older checkpoint, changed settings on resume (methods, learning rates, number of processes)."""

import pytest
import torch

from mtnlp.train import make_optimizer


def test_one_step_trains():
    from mtnlp.recipe import TrainingSpec

    model = torch.nn.Linear(2, 2)
    optimizer, _ = make_optimizer(model, TrainingSpec(steps=1, lr=1e-3))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the only update's: no warm-up to 0
