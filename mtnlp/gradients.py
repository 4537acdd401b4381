"""Gradient methods: how one update's gradients are formed from its micro-batches (mtl.gradient).

`Summed` accumulates grad_accum micro-batches, each of the task the sampler drew. `PCGrad` takes
micro-batches of every task and projects conflicting task gradients (Yu et al., 2020). A method is
one class here with `task_order` (which task each micro-batch comes from), `accumulate` (fill
.grad for one update, calling `micro_step` once per micro-batch: train.forward_backward, which draws
the batch and computes its head's loss), `log_record` (what it adds to train_log.jsonl) and
`state_dict_json` / `load_state_dict_json` (what a checkpoint keeps of it).
"""

from __future__ import annotations

import numpy as np
import torch

from .sampling import EveryTask, TaskSampler


def reduce_mean(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    return accelerator.reduce(tensor, "mean") if accelerator.num_processes > 1 else tensor


class Summed:
    """Plain accumulation: micro-batches may come from different tasks; DDP syncs on the last."""

    def task_order(self, sampler: TaskSampler, tasks: list[str], grad_accum: int) -> TaskSampler:
        return sampler

    def accumulate(self, run, micro_step) -> str:
        accum = run.recipe.training.grad_accum
        for micro in range(accum):
            task = micro_step(run, sync=micro == accum - 1)
        return task

    def log_record(self) -> dict:
        return {}

    def state_dict_json(self) -> dict:
        return {}

    def load_state_dict_json(self, state: dict) -> None:
        pass


class PCGrad:
    """grad_accum micro-batches of EVERY task per update, each task's shared-parameter gradient kept
    apart, averaged over DDP ranks (all backward passes skip DDP's own sync), projected and summed
    into .grad. Head / adapter / task-layer gradients come from one task each and are summed as usual."""

    def __init__(self, seed: int):
        self.seed = seed
        self.conflicts: list[float] = []  # fraction of conflicting task pairs per update, logged as a mean

    def task_order(self, sampler: TaskSampler, tasks: list[str], grad_accum: int) -> TaskSampler:
        return EveryTask(tasks, grad_accum)

    def accumulate(self, run, micro_step) -> str:
        model, accelerator = run.unwrapped, run.accelerator
        shared = model.shared_parameters()
        sizes = [p.numel() for p in shared]
        per_task = torch.zeros(len(run.tasks), sum(sizes), device=shared[0].device)
        for row, task in zip(per_task, run.tasks):
            for _ in range(run.recipe.training.grad_accum):
                drawn = micro_step(run, sync=False)
                assert drawn == task, (drawn, task)  # the batch plan gives every task in turn (EveryTask)
            for p, part in zip(shared, row.split(sizes)):
                if p.grad is not None:
                    part.copy_(p.grad.flatten())
                p.grad = None
        own = [p for p in model.parameters() if p.grad is not None]
        if own:  # the task-specific gradients, averaged across ranks like DDP would
            flat = reduce_mean(accelerator, torch.cat([p.grad.flatten() for p in own]))
            for p, g in zip(own, flat.split([p.numel() for p in own])):
                p.grad = g.view_as(p)
        # the projection order is random but the same on every rank and on resume
        rng = np.random.default_rng([self.seed, run.progress.step])
        combined, conflicts = project_conflicting(reduce_mean(accelerator, per_task), rng)
        for p, g in zip(shared, combined.split(sizes)):
            p.grad = g.view_as(p)
        self.conflicts.append(conflicts)
        return "all"

    def log_record(self) -> dict:
        if not self.conflicts:
            return {}
        mean = sum(self.conflicts) / len(self.conflicts)
        self.conflicts.clear()
        return {"pcgrad_conflicts": mean}

    def state_dict_json(self) -> dict:  # the updates since the last log record (the same on every rank)
        return {"conflicts": [float(c) for c in self.conflicts]}

    def load_state_dict_json(self, state: dict) -> None:
        self.conflicts = list(state.get("conflicts", []))


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """PCGrad's projection. grads: (K, P), one flattened gradient per task. For task i, g_i' starts
    as g_i; for every other task j, in a random order, if g_i' · g_j < 0 then
    g_i' -= (g_i' · g_j / |g_j|²) g_j. Returns Σ_i g_i' and the fraction of (i, j) projections that
    found a conflict.

    Every g_i' stays a combination Σ_j C_ij g_j of the original gradients, so the projections run on
    the K×K Gram matrix and the P-sized vectors are touched twice (one Gram product, one combination)
    instead of once per task pair."""
    k = grads.shape[0]
    # gram[i, j] = g_i · g_j; the K×K projection loop branches on its values: one host copy per update
    gram = (grads @ grads.T).double().cpu()
    coef = torch.eye(k, dtype=torch.float64)  # g_i' = Σ_j coef[i, j] g_j
    conflicts = 0
    for i in range(k):
        for j in rng.permutation(k):
            if j == i or gram[j, j] == 0:
                continue
            dot = coef[i] @ gram[:, j]  # g_i' · g_j
            if dot < 0:
                coef[i, j] -= dot / gram[j, j]
                conflicts += 1
    return coef.sum(0).to(grads.device, grads.dtype) @ grads, conflicts / max(k * (k - 1), 1)


def build_gradient_method(name: str, seed: int):
    return PCGrad(seed) if name == "pcgrad" else Summed()
