"""type: regression — one score per text (or text pair); a single output and mean squared error."""

from __future__ import annotations

import math
import re
from typing import Literal

from ..spec import TaskSpec, TextData, unread
from .base import TextTask, column

FLOAT32_MAX = 3.4028234663852886e38  # the targets are float32: a larger label is inf there


class ScoreData(TextData):
    """A regression task's data section: its label is a number, which label_names and label_sep do not read."""

    _not_scores = unread("label_names", "label_sep", why="does not apply to regression, whose label is a number")


class Regression(TextTask):
    name = "regression"
    min_labels = 0  # scores, not labels
    fp32_head = True  # a value in bf16 came in steps of 1/128 near 1, 1/32 near 5

    class Spec(TaskSpec):
        type: Literal["regression"]
        data: ScoreData

    metrics = ("pearsonr", "spearmanr", "mse")
    metric_notes = dict.fromkeys(("pearsonr", "spearmanr"), "0 where it is undefined (constant predictions or "
                                                           "labels, fewer than 2 rows)")

    def parse_label(self, row, label, spec):
        if isinstance(label, bool) or isinstance(label, str) and "_" in label:  # float() takes True and "1_000"
            row.fail(f"label {row.show(label)} is not a number (regression task)")
        try:
            value = float(label)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond the float range
            if isinstance(label, int):
                row.fail(f"label {row.show(label)} is not a finite number")
            comma = isinstance(label, str) and re.fullmatch(r"\s*[-+]?\d+,\d+\s*", label)
            row.fail(f"label {row.show(label)} is not a number (regression task)"
                     + (f"; a decimal comma? write {label.strip().replace(',', '.')}" if comma else ""))
        if not math.isfinite(value):
            row.fail(f"label {row.show(label)} is not a finite number")
        if abs(value) > FLOAT32_MAX:
            row.fail(f"label {row.show(label)} is beyond the float32 range the model trains in (about 3.4e38)")
        return value


    def target(self, label, label_ids):
        return label

    def collate_labels(self, rows, width):
        import torch

        return torch.tensor([r["labels"] for r in rows], dtype=torch.float)

    def num_outputs(self, labels):
        return 1

    def loss(self, logits, labels, spec):
        from torch.nn import functional as F

        return F.mse_loss(logits.float().view(-1), labels.float().view(-1))  # labels (batch,) or (batch, 1)

    def predictions(self, logits, labels, spec):
        return logits.float().squeeze(-1).tolist()

    def baseline(self, train, target, labels):
        values = column(train, "labels")
        return [sum(values) / len(values)] * len(target)

    def facts(self, dataset, labels):
        values = column(dataset, "labels")
        return {"range": [min(values), max(values)]}

    def decode(self, logits, spec, all_scores, words=None, first_tokens=None, text=""):
        return {"value": float(logits.reshape(-1)[0])}

    def export_config(self, config, spec):
        config.num_labels, config.problem_type = 1, "regression"
        config.id2label, config.label2id = {0: "score"}, {"score": 0}

    def describe_labels(self, spec):
        return "(score)"
