"""F1 score (sklearn f1_score), macro-averaged by default."""

import datasets
import evaluate
from sklearn.metrics import f1_score


def _value(config_name):
    return datasets.Sequence(datasets.Value("int64")) if config_name == "multilabel" else datasets.Value("int64")


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 = 2 * precision * recall / (precision + recall).",
            citation="",
            inputs_description="predictions, references: lists of int labels (config multilabel: lists of 0/1 "
                               "vectors); average: sklearn average mode.",
            features=datasets.Features({"predictions": _value(self.config_name), "references": _value(self.config_name)}),
        )

    def _compute(self, predictions, references, average="macro"):
        if self.config_name == "multilabel" and references and len(references[0]) == 1:
            # one label: sklearn would read the 0/1 column as two classes (0 and 1) and average over both
            references, predictions, average = [r[0] for r in references], [p[0] for p in predictions], "binary"
        return {"f1": float(f1_score(references, predictions, average=average, zero_division=0))}
