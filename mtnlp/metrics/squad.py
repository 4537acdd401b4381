"""SQuAD exact match and F1, as the official evaluation scripts compute them (v1.1, and v2.0 for
unanswerable questions): answers are normalised (lower case; punctuation, the articles a/an/the and
extra whitespace removed), a prediction is scored against each gold answer and keeps the best; a
question without gold answers is answered correctly only by the empty answer. Values are fractions
(0-1) like mtnlp's other metrics, not the scripts' percentages."""

import collections
import re
import string

import datasets
import evaluate

PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:  # v2.0: an empty answer scores 1 against an empty gold answer only
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD exact match and token F1 (official normalisation; v2.0 handling of unanswerable "
                        "questions).",
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text; "
                     "Rajpurkar et al. 2018, Know What You Don't Know: Unanswerable Questions for SQuAD.",
            inputs_description="predictions: the predicted answer texts (\"\" for no answer); references: per "
                               "question the list of gold answer texts (empty: unanswerable).",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references):
        if not references:
            return {"exact_match": 0.0, "f1": 0.0}
        em = f1_sum = 0.0
        for prediction, golds in zip(predictions, references):
            golds = [g for g in golds if normalize_answer(g)] or [""]
            em += max(exact_match(prediction, g) for g in golds)
            f1_sum += max(f1(prediction, g) for g in golds)
        return {"exact_match": em / len(references), "f1": f1_sum / len(references)}
