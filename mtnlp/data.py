"""A task's data: read its splits, fix its label set, tokenise (cached by datasets), collate batches.

Reading (read_task) needs neither torch nor datasets, so `mtnlp train` reports a mistake in a data
file before it spends seconds importing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .readers import read_examples, read_hub_split
from .recipe import Recipe, TaskSpec, resolve_path

SPLITS = ("train", "validation", "test")


@dataclass
class TaskData:
    name: str
    type: str
    labels: list[str]  # empty for regression
    splits: dict[str, datasets.Dataset] = field(default_factory=dict)  # tokenised


def read_split(recipe: Recipe, name: str, task: TaskSpec, split: str) -> tuple[list[dict], str]:
    """Examples of one split and a printable source name."""
    source = getattr(task.data, split)
    if task.data.hub:
        return read_hub_split(task.data, source, task.type), f"{task.data.hub}[{source}]"
    path = resolve_path(recipe, source)
    return read_examples(path, task.data, task.type), str(path)


def label_set(examples: list[dict], task_type: str) -> list[str]:
    if task_type == "regression":
        return []
    values = {tag for ex in examples for tag in ex["tags"]} if task_type == "tagging" else {ex["label"] for ex in examples}
    numeric = all(re.fullmatch(r"-?[0-9]{1,30}", v) for v in values)  # not isdigit(): int("²") fails
    return sorted(values, key=lambda v: (int(v), v) if numeric else (0, v))


def check_labels(examples: list[dict], labels: list[str], task_type: str, source: str) -> None:
    known = set(labels)
    for ex in examples:
        unseen = [t for t in ex["tags"] if t not in known] if task_type == "tagging" else (
            [ex["label"]] if ex["label"] not in known else [])
        if unseen:
            line = ex["_line"]
            at = f"{source}:{line}" if isinstance(line, int) else f"{source}: {line}"
            raise UserError(f"{at}: label {unseen[0]!r} does not occur in the training split "
                            f"(known: {', '.join(labels)})")


@dataclass
class RawTask:
    """A task's examples as read and checked, before tokenisation."""

    labels: list[str]
    examples: dict[str, list[dict]]  # split -> examples
    sources: dict[str, str]  # split -> printable file name


def read_task(recipe: Recipe, name: str, task: TaskSpec, splits: tuple[str, ...] = SPLITS,
              labels: list[str] | None = None) -> RawTask:
    """Read and check a task's splits. `labels` fixes the label set (e.g. from a trained model)."""
    raw, sources = {}, {}
    carve = task.data.validation_from_train
    if labels is None or "train" in splits or carve is not None:
        raw["train"], sources["train"] = read_split(recipe, name, task, "train")
    if labels is None:
        labels = label_set(raw["train"], task.type)
        if task.type == "classification" and len(labels) < 2:
            raise UserError(f"{sources['train']}: the training split has only one label ({labels[0]})")
    if carve is not None:  # a seeded, reproducible validation split cut from train
        order = list(range(len(raw["train"])))
        random.Random(recipe.training.seed).shuffle(order)
        held_out = set(order[: max(1, round(len(order) * carve))])
        raw["validation"] = [ex for i, ex in enumerate(raw["train"]) if i in held_out]
        raw["train"] = [ex for i, ex in enumerate(raw["train"]) if i not in held_out]
        sources["validation"] = sources["train"]
    for split in ("validation", "test"):
        if split in splits and getattr(task.data, split) is not None:
            raw[split], sources[split] = read_split(recipe, name, task, split)
            check_labels(raw[split], labels, task.type, sources[split])
    return RawTask(labels, {split: examples for split, examples in raw.items() if split in splits}, sources)


def load_task(recipe: Recipe, name: str, task: TaskSpec, tokenizer, max_length: int,
              splits: tuple[str, ...] = SPLITS, labels: list[str] | None = None,
              raw: RawTask | None = None) -> TaskData:
    """Read (unless `raw` is given), check and tokenise a task's splits."""
    raw = raw or read_task(recipe, name, task, splits, labels)
    data = TaskData(name, task.type, raw.labels)
    for split, examples in raw.examples.items():
        data.splits[split] = tokenize(examples, task.type, raw.labels, tokenizer, max_length)
    return data


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:  # every call rewrites the truncation/padding settings: leave them out of the key
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)
        state = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize(examples: list[dict], task_type: str, labels: list[str], tokenizer, max_length: int) -> datasets.Dataset:
    """Tokenise through datasets.map with a content-derived cache file, so a second run re-uses it."""
    import datasets

    rows = [{k: v for k, v in ex.items() if k != "_line"} for ex in examples]
    key = hashlib.sha256(json.dumps([rows, task_type, labels, max_length, tokenizer_fingerprint(tokenizer)],
                                    sort_keys=True).encode()).hexdigest()[:24]
    cache_dir = Path(os.environ.get("HF_DATASETS_CACHE") or Path(datasets.config.HF_DATASETS_CACHE)) / "mtnlp"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"tokenized-{key}.arrow"
    if cache_file.exists():
        return datasets.Dataset.from_file(str(cache_file))
    label_ids = {label: i for i, label in enumerate(labels)}

    def encode(batch):
        if task_type == "tagging":
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            enc["labels"] = [align_labels(enc.word_ids(i), [label_ids[t] for t in tags])
                             for i, tags in enumerate(batch["tags"])]
            return enc
        enc = tokenizer(batch["text"], batch.get("text_pair"), truncation=True, max_length=max_length)
        enc["labels"] = batch["label"] if task_type == "regression" else [label_ids[x] for x in batch["label"]]
        return enc

    def encode_with_length(batch):
        enc = encode(batch)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    dataset = datasets.Dataset.from_list(rows)
    return dataset.map(encode_with_length, batched=True, cache_file_name=str(cache_file), new_fingerprint=key,
                       desc="tokenizing")


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Label the first sub-token of each word; -100 (ignored by the loss) everywhere else."""
    out, previous = [], None
    for word in word_ids:
        out.append(word_labels[word] if word is not None and word != previous else -100)
        previous = word
    return out


MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def model_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset reduced to what collate() and the model read (cheaper row access)."""
    return dataset.select_columns([c for c in MODEL_COLUMNS if c in dataset.column_names])


def collate(rows: list[dict], pad_id: int, task_type: str) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest row of the batch."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": torch.full((len(rows), width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(rows), width), dtype=torch.long)}
    if "token_type_ids" in rows[0]:
        batch["token_type_ids"] = torch.zeros((len(rows), width), dtype=torch.long)
    if task_type == "tagging":
        batch["labels"] = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
        batch["attention_mask"][i, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][i, :n] = torch.tensor(r["token_type_ids"])
        if task_type == "tagging":
            batch["labels"][i, :n] = torch.tensor(r["labels"])
    if task_type == "classification":
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
    elif task_type == "regression":
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.float)
    return batch
