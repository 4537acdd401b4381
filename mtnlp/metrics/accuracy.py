"""Accuracy: fraction of predictions equal to references."""

import datasets
import evaluate


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy = correct / total.",
            citation="",
            inputs_description="predictions, references: lists of int labels.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            return {"accuracy": 0.0}
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": float(correct / len(references))}
