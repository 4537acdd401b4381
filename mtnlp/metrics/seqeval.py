"""Entity-level precision/recall/F1 with seqeval, by conlleval's rules (seqeval's default mode: IOB1, IOB2
and IOBES tags; an I- tag after O or another type starts an entity)."""

import warnings

import datasets
import evaluate
from seqeval.metrics import accuracy_score
from seqeval.metrics import classification_report


class Seqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level scores (seqeval) by conlleval's rules: an I- tag after O or another "
                        "type starts an entity.",
            citation="",
            inputs_description="predictions, references: lists of tag-string sequences.",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        with warnings.catch_warnings():  # no entity in either: numpy's "Mean of empty slice" from its averages
            warnings.simplefilter("ignore", RuntimeWarning)
            report = classification_report(y_true=references, y_pred=predictions, output_dict=True, zero_division=0)
        report.pop("macro avg", None)
        report.pop("weighted avg", None)
        overall = report.pop("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
        scores = {
            etype: {
                "precision": float(s["precision"]),
                "recall": float(s["recall"]),
                "f1": float(s["f1-score"]),
                "number": int(s["support"]),
            }
            for etype, s in report.items()
        }
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
