"""Which task trains at each step: a sampling strategy's probabilities, drawn by TaskSampler.

A draw is a pure function of (seed, draw number), so the sampler's whole state is a counter: every DDP
rank draws the same task at the same step, and a resumed run continues with exactly the same tasks.
Which examples make up each task's batches: batches.py.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError


def proportional(sizes: np.ndarray, progress: float, **options) -> np.ndarray:
    """p_i ∝ n_i (n_i: task i's training examples)."""
    return sizes


def uniform(sizes, progress, **options):
    """p_i = 1/K."""
    return np.ones_like(sizes)


def tempered(sizes, progress, temperature: float = 2.0, **options):
    """p_i ∝ n_i^(1/T): between proportional (T = 1) and uniform (T → ∞)."""
    return (sizes / sizes.max()) ** (1.0 / temperature)  # a small T must not overflow


def annealed(sizes, progress, **options):
    """p_i ∝ n_i^alpha, alpha going from 1 to 0.2 over training (Stickland & Murray, 2019)."""
    return sizes ** (1.0 - 0.8 * progress)


# A strategy is one function of the task sizes and the training progress (0 at the first step, 1 at
# the last) to unnormalised probabilities; its own options come from the recipe's sampling section
# (a new option is a field of recipe.py's SamplingSpec, and an entry of its SAMPLING_KEYS). None: the tasks in turn. The recipe checks
# `sampling.strategy` against this dict, so an entry added by your own script before load_recipe works.
STRATEGIES = {"proportional": proportional, "uniform": uniform, "temperature": tempered, "annealed": annealed,
              "round_robin": None}


class TaskSampler:
    """Iterator of task names, drawn with the probabilities of a strategy (STRATEGIES) from a random
    stream of (seed, draw), or in turn (round_robin)."""

    def __init__(self, sizes: dict[str, int], strategy: str = "temperature", seed: int = 0, steps: int = 1,
                 per_step: int = 1, **options):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r} (expected one of: {', '.join(STRATEGIES)})")
        if not sizes or any(not isinstance(n, (int, np.integer)) or n < 1 for n in sizes.values()):
            raise ValueError(f"sizes: expected each task's number of training examples (at least 1), got {sizes!r}")
        if strategy == "temperature" and not options.get("temperature", 1) > 0:  # (a recipe's is checked so)
            raise ValueError(f"temperature: expected a number above 0, got {options['temperature']!r}")
        self.names = list(sizes)
        self.sizes = np.array([sizes[n] for n in self.names], dtype=np.float64)
        self.strategy, self.seed, self.options = strategy, seed, options
        self.steps, self.per_step = max(steps, 1), per_step  # per_step: draws per optimizer step (grad_accum)
        self.draw = 0

    def probabilities(self, draw: int | None = None) -> np.ndarray:
        draw = self.draw if draw is None else draw
        weigh = STRATEGIES[self.strategy] or uniform
        weights = np.asarray(weigh(self.sizes, min(draw // self.per_step / max(self.steps - 1, 1), 1.0), **self.options),
                             dtype=np.float64)
        # a strategy added by a script: zeros, a negative or a nan weight drew one task for the whole run
        if weights.shape != self.sizes.shape or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise UserError(f"sampling.strategy {self.strategy}: gave weights {weights.tolist()} for tasks {self.names} "
                            f"at draw {draw}; expected one finite weight >= 0 per task, not all 0")
        return weights / weights.sum()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if STRATEGIES[self.strategy] is None:
            task = self.names[self.draw % len(self.names)]
        else:
            u = np.random.default_rng([self.seed, self.draw]).random()
            index = int(np.searchsorted(np.cumsum(self.probabilities()), u, side="right"))
            task = self.names[min(index, len(self.names) - 1)]
        self.draw += 1
        return task

    def state_dict(self) -> dict:
        return {"draw": self.draw, "per_step": self.per_step}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint is written between steps: the next step's first draw is where a run with this
        # sampler's draws per step would be (grad_accum, or mtl.gradient, may differ from the checkpoint's)
        step = -(-int(state["draw"]) // int(state.get("per_step", self.per_step)))
        self.draw = step * self.per_step


class EveryTask(TaskSampler):
    """The task order of the every-task gradient methods (gradients.EveryTaskGradients: PCGrad, CAGrad, MGDA):
    `repeat` micro-batches of each task in turn, for every update."""

    def __init__(self, names: list[str], repeat: int):
        super().__init__(dict.fromkeys(names, 1), "round_robin", per_step=len(names) * repeat)
        self.repeat = repeat

    def __next__(self) -> str:
        task = self.names[(self.draw // self.repeat) % len(self.names)]
        self.draw += 1
        return task
