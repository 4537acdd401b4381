"""PCGrad (Yu et al., 2020): project each task's gradient off the others' where they conflict.

For task i, g_i' starts as g_i; for every other task j, in a random order, if g_i' · g_j < 0 then
g_i' -= (g_i' · g_j / |g_j|²) g_j. The update is Σ_i g_i'. Only the SHARED parameters' gradients
are projected; a head's gradient comes from its own task alone and is left as it is.

Every g_i' stays a combination Σ_j C_ij g_j of the original gradients, so the projections run on
the K×K Gram matrix and the P-sized vectors are touched twice (one Gram product, one combination)
instead of once per task pair.
"""

from __future__ import annotations

import numpy as np
import torch


def project_conflicting(grads: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """grads: (K, P), one flattened gradient per task. Returns Σ_i g_i' and the fraction of
    (i, j) projections that found a conflict."""
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
