"""Pearson correlation coefficient (scipy); 0.0 when undefined (constant input), NaN for non-finite predictions."""

import math

import datasets
import evaluate
from scipy.stats import pearsonr


class Pearsonr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Pearson linear correlation between predictions and references.",
            citation="",
            inputs_description="predictions, references: lists of floats.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        if not all(map(math.isfinite, predictions)):  # a diverged model: NaN, which model selection passes over
            return {"pearsonr": math.nan}
        if len(predictions) < 2 or len(set(predictions)) < 2 or len(set(references)) < 2:
            return {"pearsonr": 0.0}
        value = float(pearsonr(references, predictions)[0])
        return {"pearsonr": 0.0 if math.isnan(value) else value}
