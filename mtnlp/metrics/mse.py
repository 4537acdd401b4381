"""Mean squared error."""

import datasets
import evaluate


class Mse(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="MSE = mean((prediction - reference) ** 2).",
            citation="",
            inputs_description="predictions, references: lists of floats.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            return {"mse": 0.0}
        return {"mse": float(sum((float(p) - float(r)) ** 2 for p, r in zip(predictions, references)) / len(references))}
