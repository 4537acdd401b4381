"""PCGrad (Yu et al., 2020): project each task's gradient off the others' where they conflict.

For task i, g_i' starts as g_i; for every other task j, in a random order, if g_i' · g_j < 0 then
g_i' -= (g_i' · g_j / |g_j|²) g_j. The update is Σ_i g_i'. Only the SHARED parameters' gradients
are projected; a head's gradient comes from its own task alone and is left as it is.
"""

from __future__ import annotations

import numpy as np
import torch


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """grads: (K, P), one flattened gradient per task. Returns Σ_i g_i' and the fraction of
    (i, j) projections that found a conflict."""
    k = grads.shape[0]
    projected = grads.clone()
    norms_sq = (grads * grads).sum(1)
    conflicts = 0
    for i in range(k):
        for j in rng.permutation(k):
            if j == i or norms_sq[j] == 0:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= (dot / norms_sq[j]) * grads[j]
                conflicts += 1
    return projected.sum(0), conflicts / max(k * (k - 1), 1)
