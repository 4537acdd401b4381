"""type: classification — one label per text (or text pair); softmax and cross-entropy."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..spec import LabelWeights, TaskSpec
from .base import (TextTask, check_label_weights, column, label_figures, label_name, labelled_cross_entropy,
                   on_device, softmax, weights_per_label)


IGNORE = -100  # a row the loss leaves out, as torch's cross_entropy and transformers' heads do


class Classification(TextTask):
    name = "classification"

    class Spec(TaskSpec):
        type: Literal["classification"]
        # cross-entropy class weights: {label: weight} (others 1), or balanced: n / (K · n_label), sklearn's
        label_weights: LabelWeights = None

    metrics = ("accuracy", "f1")
    metric_notes = {"f1": "macro-averaged over the labels in the split's gold or predicted labels"}

    def parse_label(self, row, label, spec):
        return label_name(row, label, spec)

    def check_recipe(self, recipe, name, task, fail):
        check_label_weights(name, task, fail)

    def label_weights(self, spec, labels, train):
        counts = None if train is None else np.bincount(column(train, "labels"), minlength=len(labels))
        return weights_per_label(spec.label_weights, labels, counts, lambda n: n.sum() / (len(n) * np.maximum(n, 1)))

    def loss(self, logits, labels, spec):
        from torch.nn import functional as F

        labels = labels.view(-1)  # (batch,) or (batch, 1), as transformers' *ForSequenceClassification take them
        weights = spec.get("label_weights")
        if not weights:
            return labelled_cross_entropy(logits.float(), labels, IGNORE)
        # each example's loss times its label's weight, averaged over the rows; torch's `weight=` divides by the
        # batch's sum of weights instead, which cancels them in a batch of one label (batch_size 1: always) and
        # makes grad_accum differ from a larger batch. Rows labelled -100 are left out (their loss is 0 here), as
        # without weights; none left gives 0, not NaN
        losses = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="none")
        kept = labels != IGNORE
        weighted = losses * on_device(tuple(weights), logits.device)[labels.clamp(min=0)]
        return weighted.sum() / kept.sum().clamp(min=1)  # on the device: no host sync

    def loss_items(self, labels):
        return (labels != IGNORE).sum()  # the labelled rows

    def predictions(self, logits, labels, spec):
        return logits.argmax(-1).tolist()

    def per_label(self, references, predictions, metrics, labels, spec):
        return label_figures(references, predictions, labels)

    def decode(self, logits, spec, all_scores, words=None, first_tokens=None, text=""):
        labels = spec["labels"]
        probs = softmax(logits)
        best = int(logits.argmax())  # as evaluation decides (two logits a rounding apart can tie as probabilities)
        out = {"label": labels[best], "score": float(probs[best])}
        if all_scores:
            out["scores"] = {label: float(p) for label, p in zip(labels, probs)}
        return out

    def export_config(self, config, spec):
        super().export_config(config, spec)
        config.problem_type = "single_label_classification"
