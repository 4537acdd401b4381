"""Per-task prediction and metrics (evaluate modules shipped in mtnlp/metrics)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from .data import TaskData, collate, model_rows
from .modeling import evaluating, to_device
from .metrics import METRICS, result_key
from .tasks import TaskType, task_type
from .tasks.base import column


def main_metric(metrics: list[str]) -> tuple[str, bool]:
    """Name of the task's main metric (the first listed) in the results dict, and its direction."""
    return result_key(metrics[0]), METRICS[metrics[0]].greater_is_better


@torch.no_grad()
def batch_logits(model, dataset, task: str, kind: TaskType, batch_size: int, pad_id: int,
                 autocast=contextlib.nullcontext):
    """(dataset indices, logits on the CPU, labels) batch by batch, longest examples first, of the model in the
    mode it is in: the callers run it in eval mode (modeling.evaluating, around their whole loop, so that a
    generator left suspended or interleaved with another never holds the model's mode)."""
    device = next(model.parameters()).device
    order = np.argsort(-np.asarray(column(dataset, "length")), kind="stable")  # similar lengths batch together
    rows = model_rows(dataset)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size].tolist()
        batch = collate([rows[i] for i in idx], pad_id, kind.name)
        labels = batch.pop("labels")
        with autocast():
            logits = model(**to_device(batch, device), task=task).logits.float().cpu()
        yield idx, logits, labels


def predict(model, dataset, task: str, kind: TaskType, spec: dict, batch_size: int, pad_id: int,
            autocast=contextlib.nullcontext, losses: dict | None = None) -> list:
    """Predictions in dataset order, in the form the task type scores (TaskType.predictions). `losses`, if given,
    receives the task's loss on the split (its head's, pooled over the items as a training step's is)."""
    out, not_finite = [None] * len(dataset), 0
    loss_sum, items = 0.0, 0.0
    columns = dataset.select_columns(list(kind.prediction_columns)) if kind.prediction_columns else None
    with evaluating(model):
        for idx, logits, labels in batch_logits(model, dataset, task, kind, batch_size, pad_id, autocast):
            not_finite += int((~logits.reshape(len(idx), -1).isfinite()).any(1).sum())
            rows = {"rows": columns[idx]} if columns is not None else {}  # e.g. a QA window's character offsets
            for i, prediction in zip(idx, kind.predictions(logits, labels, spec, **rows)):
                out[i] = prediction
            if losses is not None and (count := float(kind.loss_items(labels))):
                loss_sum, items = loss_sum + float(kind.loss(logits, labels, spec)) * count, items + count
    if losses is not None and items:
        losses[task] = loss_sum / items
    rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    if not_finite and rank == 0:  # an argmax over NaN still names a label: without this, a diverged head only scores lower
        warnings.warn(f"{task}: {not_finite} of {len(dataset)} examples got NaN or infinite logits (diverged, "
                      "or overflowed in this precision)", stacklevel=2)
    return out


def fit_to_validation(model, tasks: dict[str, TaskData], recipe_tasks: dict, batch_size: int, pad_id: int,
                      autocast=contextlib.nullcontext) -> dict[str, dict]:
    """What each task type learns from the validation split after training (e.g. multi-label
    thresholds): {task: config updates}, applied to model.config.tasks."""
    updates = {}
    for name, data in tasks.items():
        kind = task_type(data.type)
        if "validation" not in data.splits or not kind.fits_validation(recipe_tasks[name]):
            continue
        dataset = data.splits["validation"]
        order, chunks = [], []
        with evaluating(model):
            for idx, logits, _ in batch_logits(model, dataset, name, kind, batch_size, pad_id, autocast):
                order += idx
                chunks.append(logits)
        logits = torch.cat(chunks)[torch.as_tensor(np.argsort(order))]  # back to dataset order
        updates[name] = kind.fit(logits, kind.references(dataset), recipe_tasks[name], name)
        model.config.tasks[name].update(updates[name])
    return updates


def majority_baseline(data: TaskData, split: str, metrics: list[str]) -> dict[str, float]:
    """Metrics of always predicting the most frequent training label (the train mean for regression)."""
    kind = task_type(data.type)
    predictions = kind.baseline(data.splits["train"], data.splits[split], data.labels)
    return kind.score(kind.references(data.splits[split]), predictions, metrics, data.labels)


def evaluate_split(model, tokenizer, tasks: dict[str, TaskData], metrics: dict, split: str, batch_size: int,
                   autocast=contextlib.nullcontext, say=None, by_label: dict | None = None,
                   losses: dict | None = None) -> dict[str, dict]:
    """{task: {metric: value}} for every task that has `split`. `say` (e.g. print) hears, once per
    task and split, how many of its examples max_length truncated. `by_label`, if given, receives each
    task's figures per label ({task: {label: {precision, recall, f1, support}}}), where its type has labels;
    `losses` each task's loss on the split ({task: loss})."""
    results = {}
    for name, data in tasks.items():
        if split in data.splits:
            if say is not None and split not in data.truncation_reported:
                data.truncation_reported.add(split)
                if note := truncation_note(data, split):
                    say(note)
            kind = task_type(data.type)
            preds = predict(model, data.splits[split], name, kind, model.config.tasks[name], batch_size,
                            tokenizer.pad_token_id, autocast, losses)
            references = kind.references(data.splits[split])
            results[name] = kind.score(references, preds, metrics[name], data.labels)
            figures = by_label is not None and kind.per_label(references, preds, metrics[name], data.labels,
                                                              model.config.tasks[name])
            if figures:
                by_label[name] = figures
    return results


def truncation_note(data: TaskData, split: str) -> str | None:
    dataset = data.splits[split]
    if "truncated" not in dataset.column_names:
        return None
    note = task_type(data.type).truncation_note(dataset, data.max_length, data.options)
    return note and f"{data.name} {split}: {note}"


def selection_score(results: dict[str, dict], metrics: dict) -> float:
    """Mean over tasks of each task's main metric (negated where lower is better)."""
    scores = []
    for name, values in results.items():
        key, greater = main_metric(metrics[name])
        scores.append(values[key] if greater else -values[key])
    return sum(scores) / len(scores)
