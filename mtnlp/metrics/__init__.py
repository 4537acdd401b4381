"""The metrics: one table of what each recipe metric name is, and the bundled evaluate modules that
compute them, loaded by path so they work offline. A task type (mtnlp/tasks) lists which apply to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_DIR = Path(__file__).resolve().parent
_CACHE: dict = {}


@dataclass(frozen=True)
class Metric:
    module: str  # the bundled evaluate module (mtnlp/metrics/<module>.py)
    result: str  # the key of the module's result that is this metric
    greater_is_better: bool = True
    options: dict = field(default_factory=dict)  # compute() keyword arguments
    config: str | None = None  # the module's configuration, e.g. multilabel


# recipe metric name -> what computes it. The results (metrics.json) use the recipe's names, except
# seqeval, which reports precision, recall and f1 (its main value).
METRICS = {
    "accuracy": Metric("accuracy", "accuracy"),
    "f1": Metric("f1", "f1", options={"average": "macro"}),
    "pearsonr": Metric("correlation", "pearsonr", config="pearsonr"),
    "spearmanr": Metric("correlation", "spearmanr", config="spearmanr"),
    "mse": Metric("mse", "mse", greater_is_better=False),
    "seqeval": Metric("seqeval", "overall_f1"),
    "token_accuracy": Metric("accuracy", "accuracy"),
    "micro_f1": Metric("f1", "f1", options={"average": "micro"}, config="multilabel"),
    "macro_f1": Metric("f1", "f1", options={"average": "macro"}, config="multilabel"),
    "exact_match": Metric("accuracy", "accuracy", config="multilabel"),
    "squad_f1": Metric("squad", "f1"),  # extractive QA: SQuAD token F1 and exact match
    "squad_exact_match": Metric("squad", "exact_match"),
}
METRIC_FILES = frozenset(m.module for m in METRICS.values())  # the bundled modules


def result_key(name: str) -> str:
    """Where metric `name`'s main value is in a task's results."""
    return "f1" if name == "seqeval" else name


def load_metric(name: str, config: str | None = None):
    """Load bundled metric module ``name`` (e.g. "accuracy") once per process."""
    import evaluate

    if name not in METRIC_FILES:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRIC_FILES)}")
    if (name, config) not in _CACHE:
        try:
            _CACHE[name, config] = evaluate.load(str(_DIR / f"{name}.py"), config)
        except OSError as e:  # evaluate copies a module into its modules cache (and touches it) before importing it
            from ..errors import UserError

            raise UserError(f"{e.filename or evaluate.config.HF_MODULES_CACHE}: {e.strerror or e}: evaluate copies "
                            f"mtnlp's metric modules into HF_MODULES_CACHE ({evaluate.config.HF_MODULES_CACHE}): "
                            "set it, or HF_HOME, to a folder you can write") from None
    return _CACHE[name, config]


def load_metrics(names) -> None:
    """Load the modules of these recipe metric names now: training checks that it can before its first step."""
    for name in names:
        load_metric(METRICS[name].module, METRICS[name].config)


def compute(name: str, predictions: list, references: list) -> float:
    metric = METRICS[name]
    result = load_metric(metric.module, metric.config).compute(predictions=predictions, references=references,
                                                              **metric.options)
    return float(result[metric.result])
