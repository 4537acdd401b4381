"""type: classification — one label per text (or text pair); softmax and cross-entropy."""

from __future__ import annotations

from typing import Literal

from ..spec import TaskSpec
from .base import TextTask, label_name, softmax


class Classification(TextTask):
    name = "classification"

    class Spec(TaskSpec):
        type: Literal["classification"]

    metrics = ("accuracy", "f1")

    def parse_label(self, row, label, spec):
        return label_name(row, label, spec)

    def loss(self, logits, labels, spec):
        from torch.nn import functional as F

        return F.cross_entropy(logits.float(), labels)

    def predictions(self, logits, labels, spec):
        return logits.argmax(-1).tolist()

    def decode(self, logits, spec, all_scores, words=None, first_tokens=None, text=""):
        labels = spec["labels"]
        probs = softmax(logits)
        best = int(probs.argmax())
        out = {"label": labels[best], "score": float(probs[best])}
        if all_scores:
            out["scores"] = {label: float(p) for label, p in zip(labels, probs)}
        return out

    def export_config(self, config, spec):
        super().export_config(config, spec)
        config.problem_type = "single_label_classification"
