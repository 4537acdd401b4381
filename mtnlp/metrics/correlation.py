"""Pearson (config pearsonr) or Spearman rank (config spearmanr) correlation (scipy); 0.0 when undefined (constant
input), NaN for non-finite predictions."""

import math

import datasets
import evaluate
from scipy import stats


class Correlation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Pearson linear (pearsonr) or Spearman rank (spearmanr) correlation between predictions and "
                        "references.",
            citation="",
            inputs_description="predictions, references: lists of floats.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        name = self.config_name  # pearsonr | spearmanr: scipy.stats' function and the result's key
        if name not in ("pearsonr", "spearmanr"):
            raise ValueError(f"correlation: config {name!r}: give pearsonr or spearmanr")
        if not all(map(math.isfinite, predictions)):  # a diverged model: NaN, which model selection passes over
            return {name: math.nan}
        if len(predictions) < 2 or len(set(predictions)) < 2 or len(set(references)) < 2:
            return {name: 0.0}
        value = float(getattr(stats, name)(references, predictions)[0])
        return {name: 0.0 if math.isnan(value) else value}
