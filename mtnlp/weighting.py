"""Task loss weighting: each strategy is one small class (recipe key `mtl.weighting`).

A strategy turns a task's loss into the loss that is back-propagated (`weighting(task, loss)`),
sees every loss it weighted (`observe`), may update itself once per optimizer step (`end_step`),
and reports its current weights for the training log (`weights`). Its state is plain JSON, so a
resumed run continues exactly. Under DDP every rank must hold the same weights: strategies with
parameters have their gradients averaged across ranks in train.py; DWA averages its loss means.

Adding a strategy is a class here and its entry in WEIGHTINGS (the recipe checks `mtl.weighting`
against it, so an entry added by your own script before load_recipe works too); an option of its own
is also a field of recipe.py's MTLSpec (and, for the warning when it is set under another weighting, an
entry of recipe.py's WEIGHTING_KEYS). This module imports torch only when a strategy is built, so
that a recipe's mistakes are reported without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class StaticWeighting:
    """w_t · L_t with fixed per-task weights (tasks.<name>.loss_weight)."""

    def __init__(self, weights: dict[str, float], **options):
        self.static = dict(weights)

    def __call__(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        return self.static[task] * loss

    def parameters(self) -> list[torch.nn.Parameter]:
        """Learned weights (the optimizer trains them; under DDP train.py averages their gradients)."""
        return []

    def to(self, device) -> "StaticWeighting":
        return self

    def observe(self, task: str, loss: torch.Tensor) -> None:
        pass

    def end_step(self, step: int, reduce_mean) -> None:
        pass

    def weights(self) -> dict[str, float]:
        return dict(self.static)

    def state_dict_json(self) -> dict:
        return {}

    def load_state_dict_json(self, state: dict) -> None:
        pass


class UncertaintyWeighting(StaticWeighting):
    """Kendall, Gal & Cipolla (2018): a learned log-variance s_t per task;
    L = w_t · (exp(-s_t) · L_t + s_t) / 2, whose minimum over s_t is at s_t = log L_t.
    The effective weight of L_t is w_t · exp(-s_t) / 2 (logged)."""

    def __init__(self, weights: dict[str, float], **options):
        import torch

        super().__init__(weights)
        # one parameter per task: a step that did not draw a task leaves its s without a gradient, so
        # that AdamW's momentum does not move it (as a task's head), which one shared vector would
        self.log_vars = {n: torch.nn.Parameter(torch.zeros(())) for n in weights}

    def __call__(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_vars[task]
        return self.static[task] * 0.5 * (s.neg().exp() * loss + s)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.log_vars.values())

    def to(self, device) -> "UncertaintyWeighting":
        import torch

        # before the optimizer is built
        self.log_vars = {n: torch.nn.Parameter(s.detach().to(device)) for n, s in self.log_vars.items()}
        return self

    def weights(self) -> dict[str, float]:
        return {n: self.static[n] * 0.5 * math.exp(-s) for n, s in zip(self.log_vars, self.state_dict_json()["log_vars"])}

    def state_dict_json(self) -> dict:
        import torch

        return {"log_vars": torch.stack(list(self.log_vars.values())).tolist()}  # one read of the device

    def load_state_dict_json(self, state: dict) -> None:
        import torch

        with torch.no_grad():
            for s, value in zip(self.log_vars.values(), state["log_vars"]):
                s.fill_(value)


class DynamicWeightAverage(StaticWeighting):
    """Liu, Johns & Davison (2019): w_t = K · softmax_t(r_t / T) with r_t = L_t(k-1) / L_t(k-2),
    the ratio of the task's mean loss over the last two windows. DWA's "epoch" is a window of
    `window` optimizer steps here, because steps sample tasks instead of sweeping each data set.
    A task with no loss in either window keeps r_t = 1. Weights start at 1 (times w_t)."""

    def __init__(self, weights: dict[str, float], dwa_temperature: float = 2.0, dwa_window: int = 50, **options):
        super().__init__(weights)
        self.names, self.temperature, self.window = list(weights), dwa_temperature, dwa_window
        self.current = dict.fromkeys(self.names, 1.0)
        self.sums, self.counts = dict.fromkeys(self.names, 0.0), dict.fromkeys(self.names, 0)
        self.previous: list[dict[str, float | None]] = []  # the last two windows' mean losses

    def __call__(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        return self.static[task] * self.current[task] * loss

    def observe(self, task: str, loss: torch.Tensor) -> None:
        # summed on the loss's device: read (a host sync) once per window, not per micro-batch
        self.sums[task] = loss.detach().float() + self.sums[task]  # (float32: MPS has no float64)
        self.counts[task] += 1
        self.device = loss.device

    def end_step(self, step: int, reduce_mean) -> None:
        import torch

        if step % self.window:
            return
        device = getattr(self, "device", "cpu")  # where the DDP reduction runs (NCCL needs CUDA tensors)
        sums = reduce_mean(torch.stack([torch.as_tensor(self.sums[n], dtype=torch.float32, device=device)
                                        for n in self.names]
                                       + [torch.tensor(float(self.counts[n]), dtype=torch.float32, device=device)
                                          for n in self.names])).cpu().double()
        k = len(self.names)
        means = {n: (sums[i] / sums[k + i]).item() if sums[k + i] > 0 else None for i, n in enumerate(self.names)}
        self.previous = (self.previous + [means])[-2:]
        self.sums, self.counts = dict.fromkeys(self.names, 0.0), dict.fromkeys(self.names, 0)
        if len(self.previous) == 2:
            self.current = dwa_weights(self.previous[0], self.previous[1], self.temperature)

    def weights(self) -> dict[str, float]:
        return {n: self.static[n] * self.current[n] for n in self.names}

    def state_dict_json(self) -> dict:
        return {"current": self.current, "sums": {n: float(v) for n, v in self.sums.items()}, "counts": self.counts,
                "previous": self.previous}

    def load_state_dict_json(self, state: dict) -> None:
        if not state:  # a checkpoint of static weighting: DWA starts from here as at step 0
            return
        self.current, self.sums, self.counts = state["current"], state["sums"], state["counts"]
        self.previous = state["previous"]


def dwa_weights(before: dict, last: dict, temperature: float) -> dict[str, float]:
    """K · softmax(r / T) over tasks, r = last / before (1 where either is missing)."""
    import torch

    ratios = torch.tensor([last[n] / before[n] if last[n] is not None and before[n] else 1.0 for n in last],
                          dtype=torch.float64)
    return dict(zip(last, (len(last) * torch.softmax(ratios / temperature, 0)).tolist()))


WEIGHTINGS = {"static": StaticWeighting, "uncertainty": UncertaintyWeighting, "dwa": DynamicWeightAverage}


def build_weighting(strategy: str, weights: dict[str, float], **options) -> StaticWeighting:
    """options: the recipe's mtl section (train.py passes all of it); each strategy takes the keys it needs."""
    if strategy not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {strategy!r} (expected one of: {', '.join(WEIGHTINGS)})")
    return WEIGHTINGS[strategy](weights, **options)
