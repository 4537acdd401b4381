"""Bundled evaluate metric scripts, loaded by path so they work offline."""

from __future__ import annotations

from pathlib import Path

import evaluate

_DIR = Path(__file__).resolve().parent
METRIC_FILES = frozenset({"accuracy", "f1", "pearsonr", "spearmanr", "mse", "seqeval"})
_CACHE: dict[str, evaluate.EvaluationModule] = {}


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load bundled metric ``name`` (e.g. "accuracy") once per process."""
    if name not in METRIC_FILES:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRIC_FILES)}")
    if name not in _CACHE:
        _CACHE[name] = evaluate.load(str(_DIR / f"{name}.py"))
    return _CACHE[name]
