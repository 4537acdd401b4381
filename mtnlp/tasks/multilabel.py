"""type: multilabel — zero or more labels per text (GoEmotions, topic tags); a sigmoid per label,
binary cross-entropy, and a decision threshold per label (recipe `threshold`, optionally tuned on
validation: `tune_thresholds`), saved with the model."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from pydantic import Field

from ..spec import Fraction, LabelWeights, TaskSpec, changed
from .base import (TextTask, check_label_weights, column, label_figures, label_shares, on_device, rename,
                   weights_per_label)


class Multilabel(TextTask):
    name = "multilabel"
    min_labels = 1
    metrics = ("micro_f1", "macro_f1", "exact_match")
    metric_notes = {"macro_f1": "the mean of every label's F1; a label neither gold nor predicted in the split counts "
                                "as 0"}

    class Spec(TaskSpec):
        type: Literal["multilabel"]
        threshold: Fraction = 0.5  # a label is predicted when its probability exceeds this
        tune_thresholds: bool = False  # after training: each label's threshold that maximises its validation F1
        # (per-label thresholds are saved with the model; the reported validation metrics then use them)
        threshold_grid: list[Fraction] = Field(default_factory=lambda: [i / 20 for i in range(1, 20)], min_length=1)
        # each label's positive examples weigh this in its binary cross-entropy (pos_weight): {label: weight}
        # (others 1), or balanced: negatives / positives of the label in the training split
        label_weights: LabelWeights = None

    def check_recipe(self, recipe, name, task, fail):
        check_label_weights(name, task, fail)
        if task.tune_thresholds and task.data.validation is None and task.data.validation_from_train is None:
            fail(f"tasks.{name}.tune_thresholds", "thresholds are tuned on the validation split: give "
                                                 "data.validation or data.validation_from_train")
        if not task.tune_thresholds and changed(task, "threshold_grid"):  # (a key read only with another: said)
            key = f"tasks.{name}.threshold_grid"
            warnings.warn(f"{recipe.where(key)}: {key}: not read: it is the grid tune_thresholds picks each label's "
                          "threshold from (tune_thresholds is false)", stacklevel=4)

    def example(self, row, spec):
        example = {"text": row.text(spec.text_column, "text_column"), "_line": row.line}
        if spec.text_pair_column is not None:
            example["text_pair"] = row.text(spec.text_pair_column, "text_pair_column")
        example["label"] = self.parse_label(row, row.column(spec.label_column, "label_column"), spec)
        return example

    def parse_label(self, row, label, spec):
        """A JSON list, or a `data.label_sep`-separated string (default ","); empty: no label."""
        label = row.json_list(label, "labels")
        if label is None:
            return []
        if isinstance(label, (int, float)) and not isinstance(label, bool):
            label = str(label)
        if isinstance(label, str):
            label = [part for part in label.split(spec.label_sep or ",") if part.strip()]
        if not isinstance(label, list):
            row.fail(f"labels must be a list or a {spec.label_sep or ','!r}-separated string, got {row.show(label)}")
        names = [rename(row, row.name("label", value), value, spec) for value in label]
        return sorted(set(names), key=names.index)

    def labels_of(self, example):
        return example["label"]


    config_keys = ("text_pair", "thresholds")

    def model_spec(self, spec):
        return {**super().model_spec(spec), "threshold": spec.threshold}

    def config_value(self, key, value, labels):
        if key != "thresholds":
            return super().config_value(key, value, labels)
        if value is None or (isinstance(value, list) and len(value) == len(labels) and all(
                isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 1 for t in value)):
            return value
        raise ValueError(f"expected one threshold in [0, 1) per label ({len(labels)}), or null, got {value!r}")

    def target(self, label, label_ids):
        vector = [0.0] * len(label_ids)
        for name in label:
            vector[label_ids[name]] = 1.0
        return vector

    def collate_labels(self, rows, width):
        import torch

        return torch.tensor([r["labels"] for r in rows], dtype=torch.float)

    def label_weights(self, spec, labels, train):
        rows = None if train is None else np.asarray(column(train, "labels"), dtype=np.float64).reshape(-1, len(labels))
        counts = None if rows is None else rows.sum(0)
        return weights_per_label(spec.label_weights, labels, counts, lambda n: np.maximum(len(rows) - n, 1) / np.maximum(n, 1))

    def loss(self, logits, labels, spec):
        from torch.nn import functional as F

        weights = spec.get("label_weights")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(),
                                                  pos_weight=weights and on_device(tuple(weights), logits.device))

    def predictions(self, logits, labels, spec):
        return above(host(logits), threshold_values(spec, logits.shape[-1])).astype(int).tolist()

    def references(self, dataset):
        return [[int(v) for v in row] for row in column(dataset, "labels")]

    def per_label(self, references, predictions, metrics, labels, spec):
        """With each label's decision threshold (tuned or not)."""
        figures = label_figures(np.asarray(references).reshape(-1, len(labels)),
                                np.asarray(predictions).reshape(-1, len(labels)), labels)
        for label, threshold in zip(labels, threshold_values(spec, len(labels))):
            figures[label]["threshold"] = threshold
        return figures

    def decision(self, spec):
        return {"thresholds": dict(zip(spec["labels"], threshold_values(spec, len(spec["labels"])))),
                "thresholds_tuned": bool(spec.get("thresholds"))}

    def baseline(self, train, target, labels):
        from collections import Counter

        top = Counter(tuple(int(v) for v in row) for row in column(train, "labels")).most_common(1)[0][0]
        return [list(top)] * len(target)

    def facts(self, dataset, labels):
        rows = column(dataset, "labels")
        facts = label_shares([labels[i] for row in rows for i, v in enumerate(row) if v], len(rows))  # of examples
        facts["no_label"] = sum(not any(row) for row in rows) / max(len(rows), 1)
        return facts

    def evaluated_as(self, recipe, name, head, max_length):
        """The saved (tuned) thresholds, unless the evaluation recipe changes `threshold` (from the one the model
        was trained with) or says `tune_thresholds: false`: then its `threshold` (else the model's), for every
        label."""
        head = super().evaluated_as(recipe, name, head, max_length)
        spec = recipe.tasks[name]
        untuned = "tune_thresholds" in spec.model_fields_set and not spec.tune_thresholds and head.get("thresholds")
        threshold = spec.threshold if "threshold" in spec.model_fields_set else head.get("threshold", 0.5)
        if threshold == head.get("threshold", 0.5) and not untuned:
            return head
        return {**head, "threshold": threshold, "thresholds": None}

    def fits_validation(self, spec):
        return spec.tune_thresholds

    def fit(self, logits, references, spec, name=""):
        thresholds = self.tune(logits, references, spec.threshold_grid)
        predicted = float(above(host(logits), thresholds).sum(1).mean())
        gold = sum(map(sum, references)) / max(len(references), 1)
        if predicted > 2 * gold + 0.5:  # GoEmotions after 150 steps: 7.6 labels per comment predicted, 1.2 gold
            lowest = sum(t == min(spec.threshold_grid) for t in thresholds)
            warnings.warn(f"tasks.{name}.tune_thresholds: the tuned thresholds predict {predicted:.1f} labels per "
                          f"validation example, which has {gold:.1f} ({lowest} of {len(thresholds)} labels at the grid's "
                          f"lowest, {min(spec.threshold_grid)}): each label's threshold maximises its own F1, which for "
                          "a label the model tells apart poorly means predicting it often: macro-F1 rises, micro-F1 and "
                          f"exact match fall (`mtnlp evaluate ... tasks.{name}.tune_thresholds=false` gives the untuned "
                          "figures); train longer, or leave tune_thresholds out", stacklevel=2)
        # label_weights: balanced on GoEmotions: 6 of 28 at 0.95 (a top above 0.5 won outright: ties go nearest 0.5)
        highest = sum(t == max(spec.threshold_grid) for t in thresholds) if max(spec.threshold_grid) > 0.5 else 0
        if highest and highest >= max(min(2, len(thresholds)), len(thresholds) / 5):
            warnings.warn(f"tasks.{name}.tune_thresholds: {highest} of {len(thresholds)} labels' tuned thresholds are at "
                          f"the grid's highest, {max(spec.threshold_grid)}: the model's probabilities run high (e.g. "
                          "label_weights raise them), so a higher threshold may suit them better (threshold_grid); "
                          f"model selection during training used threshold {spec.threshold}", stacklevel=2)
        return {"thresholds": thresholds}

    def tune(self, logits, references: list[list[int]], grid: list[float]) -> list[float]:
        """Per label, the threshold of `grid` with the best F1 on these (validation) logits."""
        logits = host(logits)
        gold = np.asarray(references, dtype=bool).reshape(logits.shape)
        best = []
        for k in range(logits.shape[1]):
            def f1(t):
                pred = above(logits[:, k], [t])
                tp = int((pred & gold[:, k]).sum())
                return 2 * tp / max(int(pred.sum()) + int(gold[:, k].sum()), 1)
            best.append(max(grid, key=lambda t: (f1(t), -abs(t - 0.5))))  # ties: the one nearest 0.5
        return best

    def decode(self, logits, spec, all_scores, words=None, first_tokens=None, text=""):
        probs = np.exp(-np.logaddexp(0, -logits))  # the sigmoid, without overflow for large negative logits
        chosen = sorted(np.flatnonzero(above(logits, threshold_values(spec, len(probs)))).tolist(),
                        key=lambda i: -float(logits[i]))  # (probabilities past 1 - 6e-8 are all 1.0)
        out = {"labels": [{"label": spec["labels"][i], "score": float(probs[i])} for i in chosen]}
        if all_scores:
            out["scores"] = {label: float(p) for label, p in zip(spec["labels"], probs)}
        return out

    def export_config(self, config, spec):
        super().export_config(config, spec)
        config.problem_type = "multi_label_classification"
        # transformers has no field for them: kept beside id2label for whoever applies the sigmoid
        config.thresholds = dict(zip(spec["labels"], threshold_values(spec, len(spec["labels"]))))


def host(logits) -> np.ndarray:
    """A tensor's logits as a float32 array on the host (bf16 has no numpy type)."""
    return logits.detach().float().cpu().numpy()


def above(logits: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Where each label's probability exceeds its threshold, decided in logit space in float64: evaluation,
    tuning and the pipeline (decode) all decide here, so a logit within a rounding of the sigmoid of a
    threshold is not one label to evaluation and another to predict."""
    t = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(divide="ignore"):  # threshold 0: every finite logit is above it
        return np.asarray(logits, dtype=np.float64) > np.log(t) - np.log1p(-t)


def threshold_values(spec: dict, labels: int) -> list[float]:
    """Each of the `labels` labels' decision threshold: tuned per label (`thresholds`), or `threshold` for all."""
    return spec.get("thresholds") or [spec.get("threshold", 0.5)] * labels
