"""A task's data: read its splits, fix its label set, tokenise (cached by datasets), collate batches.

Reading (read_task) needs neither torch nor datasets, so `mtnlp train` reports a mistake in a data
file before it spends seconds importing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .readers import read_examples, read_hub_split, read_lines
from .recipe import Recipe, TaskSpec, resolve_path
from .tasks import TaskType, task_type

SPLITS = ("train", "validation", "test")
CACHE_VERSION = 2  # bump when tokenize() writes different columns


@dataclass
class TaskData:
    name: str
    type: str
    labels: list[str]  # empty for regression
    splits: dict[str, datasets.Dataset] = field(default_factory=dict)  # tokenised
    max_length: int | None = None  # tokens per example; longer ones were truncated
    truncation_reported: set[str] = field(default_factory=set)  # splits whose truncation was reported


def read_split(recipe: Recipe, name: str, task: TaskSpec, split: str) -> tuple[list[dict], str]:
    """Examples of one split and a printable source name."""
    source = getattr(task.data, split)
    if task.data.hub:
        examples, name = read_hub_split(task.data, source, task.type), f"{task.data.hub}[{source}]"
    elif isinstance(source, dict):  # format lines: {text: FILE, labels: FILE, text_pair?: FILE}
        files = {key: resolve_path(recipe, value) for key, value in source.items()}
        examples, name = read_lines(files, task.data, task.type), str(files["labels"])  # label errors: labels file
    else:
        path = resolve_path(recipe, source)
        examples, name = read_examples(path, task.data, task.type), str(path)
    task_type(task.type).check_split(examples, task, name)
    return examples, name


def check_labels(examples: list[dict], labels: list[str], kind: TaskType, source: str) -> None:
    """Every label of a validation/test split occurs in training (the head has an output for it)."""
    if not kind.min_labels():  # scores, not a label set
        return
    known = set(labels)
    for ex in examples:
        unseen = [label for label in kind.labels_of(ex) if label not in known]
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
    kind = task_type(task.type)
    if labels is None:
        labels = kind.label_set(raw["train"])
        if len(labels) < kind.min_labels():
            raise UserError(f"{sources['train']}: the training split has {len(labels)} label(s) "
                            f"({', '.join(labels)}); a {task.type} task needs at least {kind.min_labels()}")
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
            check_labels(raw[split], labels, kind, sources[split])
    return RawTask(labels, {split: examples for split, examples in raw.items() if split in splits}, sources)


def load_task(recipe: Recipe, name: str, task: TaskSpec, tokenizer, max_length: int,
              splits: tuple[str, ...] = SPLITS, labels: list[str] | None = None,
              raw: RawTask | None = None) -> TaskData:
    """Read (unless `raw` is given), check and tokenise a task's splits."""
    raw = raw or read_task(recipe, name, task, splits, labels)
    data = TaskData(name, task.type, raw.labels, max_length=max_length)
    for split, examples in raw.examples.items():
        data.splits[split] = tokenize(examples, task.type, raw.labels, tokenizer, max_length,
                                      task_type(task.type).model_spec(task))
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


def tokenize(examples: list[dict], task_type_name: str, labels: list[str], tokenizer, max_length: int,
             options: dict | None = None) -> datasets.Dataset:
    """Tokenise through datasets.map with a content-derived cache file, so a second run re-uses it.
    `options`: the task type's own settings (TaskType.model_spec, e.g. a QA task's doc_stride)."""
    import datasets

    rows = [{k: v for k, v in ex.items() if k != "_line"} for ex in examples]
    keyed = [CACHE_VERSION, rows, task_type_name, labels, max_length, tokenizer_fingerprint(tokenizer)]
    key = hashlib.sha256(json.dumps(keyed + ([options] if options else []), sort_keys=True).encode()).hexdigest()[:24]
    cache_dir = Path(os.environ.get("HF_DATASETS_CACHE") or Path(datasets.config.HF_DATASETS_CACHE)) / "mtnlp"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"tokenized-{key}.arrow"
    if cache_file.exists():
        return datasets.Dataset.from_file(str(cache_file))
    label_ids = {label: i for i, label in enumerate(labels)}
    kind = task_type(task_type_name)

    def encode_with_length(batch):
        enc = kind.encode(batch, tokenizer, max_length, label_ids, options)
        if "length" not in enc:  # a type may give its own (multiple choice: choices x longest choice)
            enc["length"] = [len(ids) for ids in enc["input_ids"]]
        if "truncated" not in enc:  # a type may say itself what max_length cut (windows of a context lose nothing)
            enc["truncated"] = was_truncated(enc, batch, kind, tokenizer)
        return enc

    dataset = datasets.Dataset.from_list(rows)
    # a type that makes several rows of one example keeps only the columns encode() returns
    remove = None if kind.one_row_per_example else dataset.column_names
    return dataset.map(encode_with_length, batched=True, cache_file_name=str(cache_file), new_fingerprint=key,
                       remove_columns=remove, desc="tokenizing")


def was_truncated(enc, batch: dict, kind: TaskType, tokenizer) -> list[bool]:
    """Which examples lost tokens to max_length: a fast tokenizer keeps what it cut off in
    `overflowing`; for a slow one, compare with an untruncated encoding."""
    if getattr(enc, "encodings", None):
        return [bool(e.overflowing) for e in enc.encodings]
    if kind.token_level:
        full = tokenizer(batch["tokens"], is_split_into_words=True)
    else:
        full = tokenizer(batch["text"], batch.get("text_pair"))
    return [len(f) > len(t) for f, t in zip(full["input_ids"], enc["input_ids"])]


def split_facts(dataset: datasets.Dataset, kind: str, labels: list[str]) -> dict:
    """What a user should know about a tokenised split before training on it: its size, its label
    spread (the task type's view: over words for tagging) and how many examples max_length cuts."""
    return {"examples": len(dataset), "over_max_length": int(sum(dataset["truncated"])),
            **task_type(kind).facts(dataset, labels)}


MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def model_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset reduced to what collate() and the model read (cheaper row access)."""
    return dataset.select_columns([c for c in MODEL_COLUMNS if c in dataset.column_names])


def collate(rows: list[dict], pad_id: int, kind: str) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest row of the batch; the task type shapes the labels (and may pad its
    own inputs: TaskType.collate_inputs, e.g. multiple choice's (batch, choices, length))."""
    kind = task_type(kind)
    batch = kind.collate_inputs(rows, pad_id)
    if batch is None:
        batch = pad_sequences(rows, pad_id)
    batch["labels"] = kind.collate_labels(rows, batch["input_ids"].shape[-1])
    return batch


def pad_sequences(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """One sequence per row (input_ids, token_type_ids), padded to the longest; the attention mask."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": torch.full((len(rows), width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(rows), width), dtype=torch.long)}
    if "token_type_ids" in rows[0]:
        batch["token_type_ids"] = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
        batch["attention_mask"][i, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][i, :n] = torch.tensor(r["token_type_ids"])
    return batch
