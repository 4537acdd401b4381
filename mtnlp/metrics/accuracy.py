"""Accuracy: fraction of predictions equal to references."""

import datasets
import evaluate


def _value(config_name):
    return datasets.Sequence(datasets.Value("int64")) if config_name == "multilabel" else datasets.Value("int64")


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy = correct / total.",
            citation="",
            inputs_description="predictions, references: lists of int labels (config multilabel: lists of "
                               "0/1 vectors; a prediction counts when the whole vector matches: exact match).",
            features=datasets.Features({"predictions": _value(self.config_name), "references": _value(self.config_name)}),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            return {"accuracy": 0.0}
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": float(correct / len(references))}
