"""Per-task prediction and metrics (evaluate modules shipped in mtnlp/metrics)."""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import torch

from .data import TaskData, collate, model_rows
from .modeling import to_device
from .metrics import load_metric

# recipe metric name -> (evaluate module, key in its result, greater is better)
METRIC_KEYS = {
    "accuracy": ("accuracy", "accuracy", True),
    "f1": ("f1", "f1", True),
    "pearsonr": ("pearsonr", "pearsonr", True),
    "spearmanr": ("spearmanr", "spearmanr", True),
    "mse": ("mse", "mse", False),
    "seqeval": ("seqeval", "overall_f1", True),
    "token_accuracy": ("accuracy", "accuracy", True),
}


def main_metric(metrics: list[str]) -> tuple[str, bool]:
    """Name of the task's main metric (the first listed) in the results dict, and its direction."""
    name = metrics[0]
    return ("f1" if name == "seqeval" else name), METRIC_KEYS[name][2]


@torch.no_grad()
def predict(model, dataset, task: str, task_type: str, batch_size: int, pad_id: int,
            autocast=contextlib.nullcontext) -> list:
    """Predictions in dataset order: label ids, floats, or per-word label ids (tagging)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(-np.asarray(dataset["length"]), kind="stable")  # similar lengths batch together
    rows = model_rows(dataset)
    out = [None] * len(dataset)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size].tolist()
        batch = collate([rows[i] for i in idx], pad_id, task_type)
        labels = batch.pop("labels")
        with autocast():
            logits = model(**to_device(batch, device), task=task).logits.float().cpu()
        for j, i in enumerate(idx):
            if task_type == "regression":
                out[i] = float(logits[j])
            elif task_type == "classification":
                out[i] = int(logits[j].argmax())
            else:
                out[i] = logits[j][labels[j] != -100].argmax(-1).tolist()
    model.train(was_training)
    return out


def compute_metrics(data: TaskData, split: str, predictions: list, metrics: list[str]) -> dict[str, float]:
    dataset = data.splits[split]
    if data.type == "tagging":
        gold = dataset["tags"]
        # words cut off by max_length have no prediction: they count as "O" (or wrong, without an O tag)
        fill = "O" if "O" in data.labels else None
        pred = [[data.labels[i] for i in p] + [fill] * (len(g) - len(p)) for p, g in zip(predictions, gold)]
    else:
        gold, pred = dataset["labels"], predictions
    results = {}
    for name in metrics:
        if name == "seqeval":
            r = load_metric("seqeval").compute(predictions=[[t or "O" for t in p] for p in pred], references=gold)
            results.update(precision=r["overall_precision"], recall=r["overall_recall"], f1=r["overall_f1"])
        elif name == "token_accuracy":
            flat_p = [t for p in pred for t in p]
            flat_g = [t for g in gold for t in g]
            ids = {label: i for i, label in enumerate(data.labels)}
            r = load_metric("accuracy").compute(predictions=[ids.get(t, -1) for t in flat_p],
                                                references=[ids[t] for t in flat_g])
            results["token_accuracy"] = r["accuracy"]
        else:
            module, key, _ = METRIC_KEYS[name]
            kwargs = {"average": "macro"} if name == "f1" else {}
            results[name] = load_metric(module).compute(predictions=pred, references=gold, **kwargs)[key]
    return {k: float(v) for k, v in results.items()}


def majority_baseline(data: TaskData, split: str, metrics: list[str]) -> dict[str, float]:
    """Metrics of always predicting the most frequent training label (the train mean for regression)."""
    train, target = data.splits["train"], data.splits[split]
    if data.type == "regression":
        mean = float(np.mean(train["labels"]))
        return compute_metrics(data, split, [mean] * len(target), metrics)
    if data.type == "classification":
        top = Counter(train["labels"]).most_common(1)[0][0]
        return compute_metrics(data, split, [top] * len(target), metrics)
    top = Counter(t for tags in train["tags"] for t in tags).most_common(1)[0][0]
    top_id = data.labels.index(top)
    return compute_metrics(data, split, [[top_id] * len(tags) for tags in target["tags"]], metrics)


def evaluate_split(model, tokenizer, tasks: dict[str, TaskData], metrics: dict, split: str, batch_size: int,
                   autocast=contextlib.nullcontext) -> dict[str, dict]:
    """{task: {metric: value}} for every task that has `split`."""
    results = {}
    for name, data in tasks.items():
        if split in data.splits:
            preds = predict(model, data.splits[split], name, data.type, batch_size, tokenizer.pad_token_id, autocast)
            results[name] = compute_metrics(data, split, preds, metrics[name])
    return results


def selection_score(results: dict[str, dict], metrics: dict) -> float:
    """Mean over tasks of each task's main metric (negated where lower is better)."""
    scores = []
    for name, values in results.items():
        key, greater = main_metric(metrics[name])
        scores.append(values[key] if greater else -values[key])
    return sum(scores) / len(scores)
