"""Gradient methods: how one update's gradients are formed from its micro-batches (mtl.gradient).

`Summed` accumulates grad_accum micro-batches, each of the task the sampler drew. The others take
micro-batches of EVERY task in each update and combine the tasks' gradients on the shared encoder
(`EveryTaskGradients`): `PCGrad` projects conflicting ones off each other (Yu et al., 2020); the
`GramCombination`s weigh them by coefficients from their Gram matrix: `CAGrad` moves the average gradient
towards the worst-off task (Liu et al., 2021), `MGDA` takes the smallest-norm combination (Sener & Koltun, 2018).

A method is one class here (a GradientMethod) with `task_order` (which task each micro-batch comes
from), `micro_batches` (how many an update takes: train.draw_update draws them first), `accumulate` (fill
.grad for one update, calling `micro_step` once per micro-batch: train.forward_backward, which computes the
next drawn batch's head loss), `log_record` (what it
adds to train_log.jsonl) and `state_dict_json` / `load_state_dict_json` (what a checkpoint keeps of
it). Adding one is a class and its entry in GRADIENT_METHODS (the recipe checks `mtl.gradient`
against it, so an entry added by your own script before load_recipe works too); an option of its own
is a field of recipe.py's MTLSpec and an entry of its GRADIENT_KEYS. Combining every task's
gradients is a subclass of EveryTaskGradients with its own `combine`, or of GramCombination with its own
`coefficients`. torch is imported only when a
method runs, so that a recipe's mistakes are reported without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .sampling import EveryTask, TaskSampler

if TYPE_CHECKING:
    import torch


def reduce_mean(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    return accelerator.reduce(tensor, "mean") if accelerator.num_processes > 1 else tensor


def reduce_mean_in_place(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """The mean over the processes, in `tensor` itself: Accelerate's reduce copies it first, a second K x P
    buffer of every task's gradient (1.75 GB for BERT-base and 4 tasks)."""
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
        tensor /= accelerator.num_processes
    return tensor


class GradientMethod:
    """What train.py calls; the defaults keep nothing and log nothing."""

    every_task = False  # whether an update takes micro-batches of every task (the sampler is not used)

    def __init__(self, seed: int = 0, **options):
        pass

    def task_order(self, sampler: TaskSampler, tasks: list[str], grad_accum: int) -> TaskSampler:
        return sampler

    def micro_batches(self, grad_accum: int, tasks: list[str]) -> int:
        """How many micro-batches an update takes: train.draw_update draws them (to weigh each task's items
        alike), and `accumulate` calls micro_step once for each."""
        return grad_accum * (len(tasks) if self.every_task else 1)

    def accumulate(self, run, micro_step) -> str:
        """Fill .grad for one update; returns the task of its last micro-batch ("all" for every task)."""
        raise NotImplementedError

    def log_record(self) -> dict:
        return {}

    def state_dict_json(self) -> dict:
        return {}

    def load_state_dict_json(self, state: dict) -> None:
        pass


class Summed(GradientMethod):
    """Plain accumulation: micro-batches may come from different tasks; DDP syncs on the last."""

    def accumulate(self, run, micro_step) -> str:
        accum = run.recipe.training.grad_accum
        for micro in range(accum):
            task = micro_step(run, sync=micro == accum - 1)
        return task


class EveryTaskGradients(GradientMethod):
    """grad_accum micro-batches of EVERY task per update, each task's shared-parameter gradient kept
    apart, averaged over DDP ranks (all backward passes skip DDP's own sync) and combined into .grad
    by `combine`. Head / adapter / task-layer gradients come from one task each and are summed as usual.
    `combine` also returns a fraction of conflicts, logged as `log_key` (a mean over the updates since the
    last log record): of task pairs whose gradients conflict (CAGrad, MGDA), or of PCGrad's projections."""

    every_task = True
    log_key = "conflicts"

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.conflicts: list[float] = []
        self.tasks: list[str] = []  # the tasks of `combine`'s rows (accumulate's run.tasks)

    def combine(self, grads: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float | None]:
        """grads: (K, P), one flattened shared-parameter gradient per task -> (P,) update, conflicts (None for
        gradients that are not finite: an fp16 overflow, whose step GradScaler skips, not counted in the log)."""
        raise NotImplementedError

    def task_order(self, sampler: TaskSampler, tasks: list[str], grad_accum: int) -> TaskSampler:
        return EveryTask(tasks, grad_accum)

    def accumulate(self, run, micro_step) -> str:
        import torch

        model, accelerator, self.tasks = run.unwrapped, run.accelerator, list(run.tasks)
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
        # a random order (PCGrad's) is the same on every rank and on resume
        rng = np.random.default_rng([self.seed, run.progress.step])
        combined, conflicts = self.combine(reduce_mean_in_place(accelerator, per_task), rng)
        for p, g in zip(shared, combined.split(sizes)):
            p.grad = g.view_as(p)
        if conflicts is not None:
            self.conflicts.append(conflicts)
        return "all"

    def log_record(self) -> dict:
        if not self.conflicts:
            return {}
        mean = sum(self.conflicts) / len(self.conflicts)
        self.conflicts.clear()
        return {self.log_key: mean}

    def state_dict_json(self) -> dict:  # the updates since the last log record (the same on every rank)
        return {"conflicts": [float(c) for c in self.conflicts], "log_key": self.log_key}

    def load_state_dict_json(self, state: dict) -> None:
        # another method's counts (resumed with another mtl.gradient) measure something else: not logged as ours
        same = state.get("log_key", "pcgrad_conflicts") == self.log_key  # (older checkpoints: PCGrad's)
        self.conflicts = list(state.get("conflicts", [])) if same else []


class PCGrad(EveryTaskGradients):
    """Yu et al. (2020): each task's gradient loses its component along every other task's gradient it
    conflicts with (negative dot product), in a random order; the projected gradients are summed.
    Logs the fraction of projections that found a conflict."""

    log_key = "pcgrad_conflicts"

    def combine(self, grads, rng):
        return project_conflicting(grads, rng)


class GramCombination(EveryTaskGradients):
    """An every-task method whose update is a combination Σ_i coef_i g_i of the task gradients, the
    coefficients chosen from their K×K Gram matrix (on the host: one copy per update). A task without
    gradient (loss_weight 0) is left out: it would be the worst-off task whatever the update (CAGrad), or the
    smallest gradient, 0 (MGDA). Logs the fraction of task pairs whose gradients conflict (negative dot product)
    and each task's coefficient (`coefficients`, means over the updates since the last log record)."""

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed)
        self.solved: list[list[float]] = []  # each update's coefficients, in the order of `tasks`

    def log_record(self) -> dict:
        record = super().log_record()
        if self.solved and len(self.tasks) == len(self.solved[0]):
            record["coefficients"] = dict(zip(self.tasks, np.mean(self.solved, axis=0).tolist()))
        self.solved.clear()
        return record

    def state_dict_json(self) -> dict:
        return {**super().state_dict_json(), "coefficients": self.solved}

    def load_state_dict_json(self, state: dict) -> None:
        super().load_state_dict_json(state)
        self.solved = [list(c) for c in state.get("coefficients", [])] if state.get("log_key") == self.log_key else []

    def coefficients(self, gram: np.ndarray) -> np.ndarray:
        """gram: the Gram matrix of the tasks that have a gradient -> their coefficients."""
        raise NotImplementedError

    def combine(self, grads, rng):
        import torch

        gram = host_gram(grads)
        if gram is None:  # an fp16 overflow, whose step GradScaler skips: nothing to solve
            return grads.sum(0), None
        active = np.flatnonzero(np.diag(gram) > 0)
        coef = np.zeros(len(gram))
        if len(active):
            coef[active] = self.coefficients(gram[np.ix_(active, active)])
        self.solved.append(coef.tolist())
        update = torch.as_tensor(coef, dtype=grads.dtype, device=grads.device) @ grads
        return update, pair_conflicts(gram[np.ix_(active, active)])


class CAGrad(GramCombination):
    """Liu et al. (2021), conflict-averse gradient descent: the update d maximises the smallest task
    improvement min_i g_i·d within a ball of radius c·|g0| around the average gradient g0. Its dual is
    min over the simplex of F(w) = g_w·g0 + c·|g0|·|g_w| (g_w = Σ w_i g_i), and d = g0 + c·|g0|/|g_w| · g_w.
    c = 0 is the average gradient; c (mtl.cagrad_c, default 0.5 as in LibMTL) must be below 1 for
    CAGrad to converge to a minimum of the average loss. The update is scaled by K / (1 + c²): the
    paper's rescaling, times K so that at c = 0 it is the sum of the task gradients, as pcgrad's
    without conflicts."""

    log_key = "cagrad_conflicts"

    def __init__(self, seed: int = 0, cagrad_c: float = 0.5, **options):
        super().__init__(seed)
        self.c = cagrad_c

    def coefficients(self, gram):
        k = len(gram)
        w = cagrad_weights(gram, self.c)
        # d = g0 + λ g_w = Σ_i (1/K + λ w_i) g_i, with |g0|² = mean(gram) and |g_w|² = wᵀ gram w
        g0_norm = np.sqrt(max(gram.mean(), 0.0))
        gw_norm = np.sqrt(max(w @ gram @ w, 0.0))
        # g_w ≈ 0 (the gradients' hull holds 0): no direction improves every task; the solver's rounding
        # must not choose one
        cancelled = gw_norm <= 1e-6 * np.sqrt(np.diag(gram).max())
        lam = 0.0 if cancelled else self.c * g0_norm / gw_norm
        coefficients = 1.0 / k + lam * w
        # the paper's d improves the worst-off task at least as much as g0 does (g0 is in the ball); where the task
        # gradients' norms are ~1e5 apart the solver's small weights are too coarse for that: keep g0 then
        if (gram @ coefficients).min() < gram.mean(1).min() - 1e-9 * np.abs(gram).max():
            coefficients = np.full(k, 1.0 / k)
        return coefficients * k / (1.0 + self.c ** 2)


class MGDA(GramCombination):
    """Sener & Koltun (2018), the multiple-gradient descent algorithm on the shared parameters: the update is
    the point of smallest norm in the convex hull of the task gradients, d = Σ w_i g_i (w on the simplex), a
    direction in which no task's loss rises (g_i·d >= |d|² for every task i), or 0 at a Pareto-stationary
    point, where no such direction exists. Scaled by K (the tasks with a gradient), as CAGrad's: equal task
    gradients give their sum."""

    log_key = "mgda_conflicts"

    def coefficients(self, gram):
        return len(gram) * min_norm_weights(gram)


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """The simplex weights of the smallest-norm point of the hull of K vectors (norms > 0) with this Gram matrix,
    exactly, also for norms spread over many orders of magnitude: Lawson and Hanson's least-distance programming
    as one non-negative least-squares problem (scipy's nnls, an active-set method that ends at the exact
    solution). With n the norms and A the unit vectors in K dimensions (AᵀA = the cosine matrix), u >= 0
    minimising |A u|² + (cᵀu - 1)², c = min(n) / n, gives w ∝ c·u."""
    from scipy.optimize import nnls

    norms = np.sqrt(np.diag(gram))
    values, vectors = np.linalg.eigh(gram / np.outer(norms, norms))
    a = np.sqrt(np.clip(values, 0.0, None))[:, None] * vectors.T
    c = norms.min() / norms
    u, _ = nnls(np.vstack([a, c]), np.r_[np.zeros(len(gram)), 1.0])
    w = c * u
    return w / w.sum() if w.sum() > 0 else np.full(len(gram), 1.0 / len(gram))


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """The simplex weights w minimising CAGrad's dual F(w) = wᵀ G 1/K + c·|g0|·sqrt(wᵀ G w), G the
    tasks' Gram matrix, with scipy's SLSQP from the uniform weights."""
    from scipy.optimize import minimize

    k = gram.shape[0]
    uniform = np.full(k, 1.0 / k)
    if c == 0 or not np.any(gram):
        return uniform
    scale = np.abs(gram).max()  # SLSQP's tolerances are absolute: solve the problem at unit scale
    g = gram / scale
    radius = c * np.sqrt(max(g.mean(), 0.0))
    result = minimize(lambda w: w @ g @ uniform + radius * np.sqrt(max(w @ g @ w, 0.0) + 1e-12), uniform,
                      bounds=[(0.0, 1.0)] * k, constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0},
                      method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    w = np.clip(result.x, 0.0, None)
    return w / w.sum() if w.sum() > 0 else uniform


def host_gram(grads: torch.Tensor) -> np.ndarray | None:
    """The K×K Gram matrix of the task gradients (K, P), on the host in float64 (copied first: MPS has no
    float64); None when it is not finite (an fp16 overflow)."""
    gram = (grads @ grads.T).cpu().double().numpy()
    return gram if np.isfinite(gram).all() else None


def pair_conflicts(gram: np.ndarray) -> float:
    """The fraction of task pairs (i < j) whose gradients have a negative dot product."""
    k = gram.shape[0]
    upper = gram[np.triu_indices(k, 1)]
    return float((upper < 0).mean()) if upper.size else 0.0


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float | None]:
    """PCGrad's projection. grads: (K, P), one flattened gradient per task. For task i, g_i' starts
    as g_i; for every other task j, in a random order, if g_i' · g_j < 0 then
    g_i' -= (g_i' · g_j / |g_j|²) g_j. Returns Σ_i g_i' and the fraction of (i, j) projections (between
    tasks that have a gradient) that found a conflict (None, and the plain sum, for gradients that are not
    finite: an fp16 overflow).

    Every g_i' stays a combination Σ_j C_ij g_j of the original gradients, so the projections run on
    the K×K Gram matrix and the P-sized vectors are touched twice (one Gram product, one combination)
    instead of once per task pair."""
    import torch

    k = grads.shape[0]
    # gram[i, j] = g_i · g_j; the K×K projection loop branches on its values: one host copy per update
    gram = host_gram(grads)
    if gram is None:  # an fp16 overflow, whose step GradScaler skips: no conflict to count
        return grads.sum(0), None
    gram = torch.from_numpy(gram)
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
    active = int((torch.diagonal(gram) > 0).sum())  # the pairs of tasks with a gradient (not loss_weight 0 ones)
    return coef.sum(0).to(grads.device, grads.dtype) @ grads, conflicts / max(active * (active - 1), 1)


# mtl.gradient's values
GRADIENT_METHODS: dict[str, type[GradientMethod]] = {"sum": Summed, "pcgrad": PCGrad, "cagrad": CAGrad, "mgda": MGDA}


def build_gradient_method(name: str, seed: int, **options) -> GradientMethod:
    """options: the recipe's mtl section (train.py passes all of it); each method takes the keys it needs."""
    if name not in GRADIENT_METHODS:
        raise ValueError(f"unknown gradient method {name!r} (expected one of: {', '.join(GRADIENT_METHODS)})")
    return GRADIENT_METHODS[name](seed, **options)
