"""A task's data: read its splits, fix its label set, tokenise (cached by datasets), collate batches.

Reading (read_task) streams each file into an Arrow table (no Python object per example is kept) and
needs no torch, so `mtnlp train` reports a mistake in a data file before it spends seconds importing it.
"""

from __future__ import annotations

import array
import contextlib
import errno
import itertools
import json
import os
import random
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import regex

from .cache import (cache_dir, cached_labels, cached_split, digest, file_hash, labels_file,
                    remove_stale_files, tokenizer_fingerprint, unique, write_atomic)
from .errors import UserError, at
from .readers import (Row, hub_examples, hub_label_names, iter_examples, label_column, open_hub_split, read_hub_split,
                      read_lines)
from .recipe import Recipe, TaskSpec, resolve_path
from .tasks import TaskType, task_type
from .tasks.base import column, label_name, look_alike, sort_labels

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa
    import torch

SPLITS = ("train", "validation", "test")
# validation_from_train's split is the same for every training.seed: runs that differ by seed are compared
# on the same validation examples (and train on the same rest)
CARVE_SEED = 42
CACHE_VERSION = 15  # bump when reading or tokenize() gives different rows or columns, or refuses more (14: QA targets,
# tagging's cut_start; 15: entity tags beside tags without a prefix)
PARALLEL_FROM = 20_000  # examples; below this, worker start-up costs more than tokenising in parallel saves


@dataclass
class TaskData:
    name: str
    type: str
    labels: list[str]  # empty for a type without a label set (regression, multiple choice, extractive QA)
    splits: dict[str, datasets.Dataset] = field(default_factory=dict)  # tokenised
    max_length: int | None = None  # tokens per example; longer ones were truncated
    truncation_reported: set[str] = field(default_factory=set)  # splits whose truncation was reported
    options: dict = field(default_factory=dict)  # the task type's own settings (model_spec: text_pair, ...)
    stream: TrainStream | None = None  # a streamed training split (data.streaming), not in `splits`

    def train_size(self) -> int:
        return self.stream.size if self.stream else len(self.splits["train"])


@dataclass
class StreamSource:
    """A streamed training split as read_task opens it: nothing of it is read yet."""

    rows: datasets.IterableDataset
    name: str  # printable, e.g. "user/data[train]"
    size: int  # examples: data.size, else the data set's metadata


@dataclass
class TrainStream:
    """A streamed training split (data.streaming): its examples are read, checked and tokenised as
    training draws batches (batches.StreamBatches), never held whole."""

    source: StreamSource
    spec: TaskSpec
    labels: list[str]
    tokenizer: object
    max_length: int
    options: dict

    @property
    def size(self) -> int:
        return self.source.size

    def examples(self, seed: int, epoch: int):
        """Epoch `epoch`'s examples, shuffled within data.shuffle_buffer rows: the same order for the
        same (seed, epoch)."""
        rows = self.source.rows.shuffle(seed=seed, buffer_size=self.spec.data.shuffle_buffer)
        rows.set_epoch(epoch)
        examples = hub_examples(rows, self.source.name, self.spec.data, self.spec.type,
                                order=f" in epoch {epoch}'s shuffled order")
        return task_type(self.spec.type).checked(examples, self.spec, self.source.name)

    def encode(self, examples: list[dict]) -> list[dict]:
        """A batch of examples as the rows collate() pads (what tokenize() and model_rows() give)."""
        columns = {key: [ex[key] for ex in examples] for key in examples[0] if key != "_line"}
        label_ids = {label: i for i, label in enumerate(self.labels)}
        enc = task_type(self.spec.type).encode(columns, self.tokenizer, self.max_length, label_ids, self.options)
        kept = [c for c in MODEL_COLUMNS if c in enc]
        return [{c: enc[c][i] for c in kept} for i in range(len(enc["input_ids"]))]


def read_split(recipe: Recipe, name: str, task: TaskSpec, split: str) -> tuple[pa.Table, str]:
    """Examples of one split (an Arrow table; `_line`: where each came from) and a printable source name."""
    source, key = getattr(task.data, split), f"tasks.{name}.data.{split}"

    def existing(given: str, key: str) -> Path:
        path = resolve_path(recipe, given)
        if not path.exists() or path.is_dir():
            problem = "is a folder, expected a data file" if path.exists() else "file not found"
            data_dir = resolve_path(recipe, ".") if recipe.data_dir is not None else None
            typed = Path(given).expanduser()
            relative = not typed.is_absolute()
            if relative and data_dir is not None and not data_dir.is_dir():  # e.g. a copied recipe whose data is elsewhere
                problem += f" (data_dir {recipe.data_dir} is no folder here: set data_dir=FOLDER)"
            elif relative and not path.exists() and typed.is_file():  # e.g. an override's ./dev.tsv
                base = resolve_path(recipe, "x").parent
                problem += (f"; a data file is read relative to {'data_dir' if recipe.data_dir is not None else 'the recipe'}"
                            f" ({base}): for {typed.absolute()}, give that path")
            raise UserError(f"{recipe.where(key)}: {key}: {path}: {problem}")
        return path

    if task.data.hub:
        hub_key = f"tasks.{name}.data.hub"
        examples = read_hub_split(task.data, source, task.type, f"{recipe.where(hub_key)}: {hub_key}",
                                  f"{recipe.where(key)}: {key}", config_where(recipe, name))
        name = f"{task.data.hub}[{source}]"
    elif isinstance(source, dict):  # format lines: {text: FILE, labels: FILE, text_pair?: FILE}
        files = {part: existing(value, f"{key}.{part}") for part, value in source.items()}
        examples, name = read_lines(files, task.data, task.type), str(files["labels"])  # label errors: labels file
    else:
        path = existing(source, key)
        examples, name = iter_examples(path, task.data, task.type), str(path)
    table = to_arrow(task_type(task.type).checked(examples, task, name), name)
    if not table.num_rows:
        raise UserError(f"{name}: no examples found")
    return table, name


def rows_of(table: pa.Table, batch_size: int = 10_000):
    """A table's rows as dicts, made a batch at a time."""
    for batch in table.to_batches(batch_size):
        yield from batch.to_pylist()


def check_labels(examples: pa.Table, labels: list[str], kind: TaskType, source: str,
                 known_as: str = "does not occur in the training split", label_names: dict | None = None) -> None:
    """Every label of a validation/test split occurs in training (the head has an output for it).
    `label_names`: the task's data.label_names, to say which file value became a label."""
    if not kind.min_labels:  # scores, not a label set
        return
    known = set(labels)
    for ex in rows_of(examples):
        unseen = [label for label in kind.labels_of(ex) if label not in known]
        if unseen:
            where = word_of(ex, kind, unseen[0])
            renamed = [str(value) for value, name in (label_names or {}).items() if name == unseen[0]]
            if renamed:
                where += f" (the file's {' or '.join(map(repr, renamed))}, renamed by data.label_names)"
            alike = [label for label in labels if same_number(label, unseen[0])]
            if twin := next((label for label in labels if look_alike(label) == look_alike(unseen[0])), None):
                where += (f" (written {ascii(unseen[0])}; the training split has {ascii(twin)}, which reads alike: "
                          "write them alike)")
            elif alike:  # pandas writes an int column with a missing value as floats
                where += f" (the training split has {alike[0]!r}: write the numbers alike in every split)"
            raise UserError(f"{at(source, ex['_line'])}: label {unseen[0]!r}{where} {known_as} "
                            f"(known: {', '.join(labels[:20])}{f', ... ({len(labels)} in all)' if len(labels) > 20 else ''})")


def word_of(example: dict, kind: TaskType, label: str) -> str:
    """Which word of a tagged sentence has `label` first, for an error about it ("" for a text's example)."""
    if "tokens" not in example:
        return ""
    i = kind.labels_of(example).index(label)
    return f" (word {i + 1} of the sentence, {example['tokens'][i]!r})"


def label_notes(name: str, task: TaskSpec, labels: list[str], rows: int, source: str) -> list[str]:
    """Warnings about a training split's label set: labels that read alike but differ (Technical, technical; café
    written two ways), labels that are one number written two ways (1 and 1.0, true and 1: a file joined from two
    exports) - each is a label of its own - and a label, most of them reading as texts, for nearly every example
    (label_column naming the text)."""
    notes, twins, numbers = [], {}, {}
    for label in labels:
        twins.setdefault(look_alike(label), []).append(label)
        if (number := as_number(label)) is not None:
            numbers.setdefault(number, []).append(label)
    for names in list(names for names in twins.values() if len(names) > 1)[:1]:
        in_case = len({name.casefold() for name in names}) == 1 \
            and all(name == unicodedata.normalize("NFKC", name) for name in names)  # (not the Kelvin sign's K)
        how = "in case" if in_case else "in Unicode form, invisible characters, spaces or case"
        shown = " and ".join(map(repr if in_case or all(name.isascii() for name in names) else ascii, names))
        notes.append(f"{source}: labels {shown} differ only {how}: they are {len(names)} labels (write them alike if "
                     "they are one)")
    for names in list(names for names in numbers.values() if len({look_alike(name) for name in names}) > 1)[:1]:
        notes.append(f"{source}: labels {' and '.join(map(repr, names))} are the same number: they are "
                     f"{len(names)} labels (write them alike if they are one)")
    if task.type in ("classification", "multilabel") and len(labels) >= 20 and len(labels) > rows / 2 \
            and sum(map(reads_as_text, labels)) >= len(labels) / 2:  # (not a 500-way label set)
        notes.append(f"{source}: {len(labels):,} labels for {rows:,} examples: is tasks.{name}.data.label_column "
                     f"({task.data.label_column!r}) the text's column?")
    return notes


# a letter of a script written without spaces between words: a sentence of it is one "word" to str.split()
UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]")


def reads_as_text(label: str) -> bool:
    """Whether a label reads as a text rather than a label's name: three words or more, an end of sentence (a
    tweet's "good game!"), or five letters or more of a script written without spaces (Chinese, Japanese, Thai)."""
    return len(label.split()) >= 3 or label.rstrip()[-1:] in ".!?。！？" or len(UNSPACED.findall(label)) >= 5


def as_number(label: str) -> float | None:
    """The number a label text is (1, 1.0; true and false, as JSON's booleans are read, 1 and 0), or None."""
    if label.casefold() in ("true", "false"):
        return float(label.casefold() == "true")
    try:
        return float(label)
    except ValueError:
        return None


def same_number(a: str, b: str) -> bool:
    """Whether two label texts are one number written two ways (1 and 1.0, true and 1)."""
    return a != b and as_number(a) is not None and as_number(a) == as_number(b)


@dataclass
class RawTask:
    """A task's examples as read and checked, before tokenisation."""

    labels: list[str]
    examples: dict[str, pa.Table]  # split -> examples (rows_of() reads them as dicts)
    key: str | None = None  # the task's cache key (task_key); None: not cacheable (a hub data set)
    stream: StreamSource | None = None  # the training split, when it is streamed (not in `examples`)


# ---------------------------------------------------------------- cache keys
# A task's tokenised splits are cached (cache.py) under a key made of its files' content hashes and every
# setting that changes the rows or tokens, so that a second run neither re-reads nor re-hashes the data.


def present_splits(task: TaskSpec, splits: tuple[str, ...]) -> list[str]:
    return [s for s in splits if getattr(task.data, s) is not None or (s == "validation" and task.data.validation_from_train)]


def task_key(recipe: Recipe, task: TaskSpec) -> str | None:
    """The content of the task's files and the settings that decide its examples; None for a hub data
    set or a missing file (read_task then reports it)."""
    if task.data.hub:
        return None
    hashes = {}
    for split in SPLITS:
        source = getattr(task.data, split)
        files = source if isinstance(source, dict) else {"file": source} if source else {}
        try:  # by role: swapping the text and labels files of format lines gives other examples; with the
            # suffix, which decides the format when data.format does not (csv or tsv)
            hashes[split] = {role: [file_hash(path), path.suffix.lower()] for role, path in
                             ((role, resolve_path(recipe, f)) for role, f in files.items())}
        except OSError:
            return None
    settings = task.model_dump(mode="json", exclude={"metrics": True, "loss_weight": True, "dropout": True,
                                                     "data": {"train", "validation", "test"}})
    return digest([CACHE_VERSION, settings, hashes])


def read_task_unless_cached(recipe: Recipe, name: str, task: TaskSpec) -> RawTask | None:
    """read_task, or None when these files were read and checked before (load_task then uses the cache)."""
    key = task_key(recipe, task)
    if key is not None and (labels := cached_labels(key)) is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # said again, as the first read said it
            said = json.loads(read_notes_file(key).read_text(encoding="utf-8"))
            source = train_source(recipe, task)  # this recipe's name for the file (the entry may be another's)
            if said["given_back"]:
                say_given_back(recipe, name, said["given_back"], source)
            for note in label_notes(name, task, labels, said["train_rows"], source):
                warnings.warn(note, stacklevel=2)
        return None
    return read_task(recipe, name, task)


def read_notes_file(key: str) -> Path:
    """What reading the files of `key` warns of: the labels validation_from_train gave back to training, and how
    many examples the training file has (label_notes)."""
    return cache_dir() / f"read-notes-{key}.json"


def train_source(recipe: Recipe, task: TaskSpec) -> str:
    """The training file as read_split names it (format lines: its labels file)."""
    source = task.data.train
    return str(resolve_path(recipe, source["labels"] if isinstance(source, dict) else source))


def say_given_back(recipe: Recipe, name: str, labels: list[str], source: str) -> None:
    key = f"tasks.{name}.data.validation_from_train"
    warnings.warn(f"{recipe.where(key)}: {key}: label(s) {', '.join(labels)} had every example carved out of "
                  f"{source}: one of each trains instead (a head output must have one)", stacklevel=3)


def read_task(recipe: Recipe, name: str, task: TaskSpec, splits: tuple[str, ...] = SPLITS,
              labels: list[str] | None = None) -> RawTask:
    """Read and check a task's splits. `labels` fixes the label set (e.g. from a trained model)."""
    before = task_key(recipe, task)  # the files' content as read: a file changed meanwhile gives no cache key
    raw, sources, stream, notes, train_rows = {}, {}, None, [], None
    carve, given_back = task.data.validation_from_train, []
    kind = task_type(task.type)
    derived = labels is None  # only a label set read off the training split is remembered for the files
    if task.data.streaming and (labels is None or "train" in splits):
        stream = open_stream(recipe, name, task)
        if labels is None:
            labels = stream_labels(recipe, name, task, stream)
        sources["train"] = stream.name
    elif labels is None or "train" in splits or carve is not None:
        raw["train"], sources["train"] = read_split(recipe, name, task, "train")
    if derived and stream is None:
        labels, train_rows = kind.label_set(rows_of(raw["train"])), raw["train"].num_rows
        notes = label_notes(name, task, labels, train_rows, sources["train"])
        for note in notes:
            warnings.warn(note, stacklevel=2)
    if derived and (problem := kind.label_set_problem(labels)):
        label, why = problem
        if stream is not None:
            raise UserError(f"{stream.name}: {why}")
        example = next(ex for ex in rows_of(raw["train"]) if label in kind.labels_of(ex))
        raise UserError(f"{at(sources['train'], example['_line'])}{word_of(example, kind, label)}: {why}")
    if derived and len(labels) < kind.min_labels:
        raise UserError(f"{sources['train']}: the training split has {len(labels)} label(s) "
                        f"({', '.join(labels)}); a {task.type} task needs at least {kind.min_labels}")
    if carve is not None:  # a seeded, reproducible validation split cut from train
        total = raw["train"].num_rows
        group_of_row = carve_groups(raw["train"], kind.carve_by)
        order = carve_order(int(group_of_row.max()) + 1)
        sizes = np.bincount(group_of_row)[order]  # rows per group, in carve order
        wanted = max(1, round(total * carve))
        taken = min(int(np.searchsorted(np.cumsum(sizes), wanted)) + 1, len(order))  # groups until `wanted` rows
        held = np.zeros(len(order), dtype=bool)  # per group: carved out
        held[order[:taken]] = True
        key = f"tasks.{name}.data.validation_from_train"
        if sizes[:taken].sum() == total:
            together = (f" (examples with the same {kind.carve_by} stay together: {len(order)} group(s))"
                        if kind.carve_by else "")
            raise UserError(f"{recipe.where(key)}: {key}: {carve} of {sources['train']}'s {total} example(s) "
                            f"leaves none to train on{together}")
        # of the file's labels, the data alone decides (evaluate, with the model's labels, carves the same split)
        given_back = keep_a_training_example(raw["train"], group_of_row, held, order, kind)
        if given_back and not held.any():
            raise UserError(f"{recipe.where(key)}: {key}: every carved example of {sources['train']} is the only "
                            f"one of its label ({', '.join(given_back)}): none is left to validate on")
        if given_back and derived:
            say_given_back(recipe, name, given_back, sources["train"])
        held_rows = held[group_of_row]
        raw["validation"] = kept_rows(raw["train"], held_rows)  # file order within each part
        raw["train"] = kept_rows(raw["train"], ~held_rows)
        sources["validation"] = sources["train"]
    for split in ("validation", "test"):
        if split in splits and getattr(task.data, split) is not None:
            raw[split], sources[split] = read_split(recipe, name, task, split)
    for split in raw:  # with the model's labels (mtnlp evaluate), training's and a carved split's too
        if split in splits and not (derived and split == "train"):
            check_labels(raw[split], labels, kind, sources[split],
                         "does not occur in the training split" if derived else "is not one of the model's labels",
                         task.data.label_names)
    key = task_key(recipe, task)
    key = key if key == before else None  # (tokenize keys a split without one by its examples)
    if key is not None and derived and cached_labels(key) is None:
        with contextlib.suppress(OSError):  # a read-only cache: read again next time
            if given_back or notes:  # said again by read_task_unless_cached
                write_atomic(read_notes_file(key), json.dumps({"given_back": given_back, "train_rows": train_rows}))
            write_atomic(labels_file(key), json.dumps(labels))
    return RawTask(labels, {split: examples for split, examples in raw.items() if split in splits}, key,
                   stream if "train" in splits else None)


def carve_groups(examples: pa.Table, by: str | None) -> np.ndarray:
    """Each row's group, the rows validation_from_train keeps on one side, numbered in file order: those with the
    same value of column `by`, or each row alone (shuffled as one-row groups, the carve is what shuffling the rows
    gives)."""
    if by is None:
        return np.arange(examples.num_rows)
    import pyarrow.compute as pc

    values = examples.column(by)
    return pc.index_in(values, value_set=values.unique()).to_numpy()  # (unique: in the order first met)


def carve_order(groups: int) -> np.ndarray:
    """The group numbers in carve order: the order random.shuffle with CARVE_SEED gives a list of the groups,
    kept in 8 bytes a group (not a Python object each)."""
    order = array.array("q", range(groups))
    random.Random(CARVE_SEED).shuffle(order)
    return np.frombuffer(order, dtype=np.int64)


def keep_a_training_example(examples: pa.Table, group_of_row: np.ndarray, held: np.ndarray, order: np.ndarray,
                            kind: TaskType) -> list[str]:
    """Returns the labels of which every example was held out (`held`: per group), after giving back to training
    the first group (in carve `order`) that holds each: a head output that never trains is worse than a smaller
    split."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    trained, first_carved = set(), {}  # label -> the carve rank of the first held-out group that holds it
    for i, row in enumerate(rows_of(examples)):
        group = group_of_row[i]
        if not held[group]:
            trained.update(kind.labels_of(row))
            continue
        for label in kind.labels_of(row):
            first_carved[label] = min(first_carved.get(label, rank[group]), rank[group])
    missing = sort_labels(set(first_carved) - trained)
    held[order[[first_carved[label] for label in missing]]] = False
    return missing


def kept_rows(table: pa.Table, keep: np.ndarray, chunk: int = 10_000) -> pa.Table:
    """The rows of `table` where `keep` is true, in order: in memory for a small table (as to_arrow keeps one),
    else written to chunk files a chunk at a time and memory-mapped from them."""
    import pyarrow as pa

    if table.num_rows < chunk:
        return table.filter(pa.array(keep))
    with ChunkFiles() as files:
        start = 0
        for batch in table.to_batches(chunk):
            files.write(pa.Table.from_batches([batch.filter(pa.array(keep[start:start + batch.num_rows]))]))
            start += batch.num_rows
        pa.default_memory_pool().release_unused()
        return pa.concat_tables(files.tables())


def config_where(recipe: Recipe, name: str) -> str:
    """Where a hub data set's config error is: data.config's line, or data.hub's where no config is given."""
    data = f"tasks.{name}.data"
    return f"{recipe.where(data + '.config' if recipe.tasks[name].data.config else data + '.hub')}: {data}.config"


def open_stream(recipe: Recipe, name: str, task: TaskSpec) -> StreamSource:
    """The training split of a streamed hub data set, opened (not read) and its size."""
    data, key, train_key = task.data, f"tasks.{name}.data.hub", f"tasks.{name}.data.train"
    rows = open_hub_split(data, data.train, f"{recipe.where(key)}: {key}", f"{recipe.where(train_key)}: {train_key}",
                          config_where(recipe, name))
    size = data.size
    if size is None:
        split = (rows.info.splits or {}).get(data.train) if rows.info else None
        size = split.num_examples if split is not None and split.num_examples else None
    if size is None:
        raise UserError(f"{recipe.where(f'tasks.{name}.data.streaming')}: tasks.{name}.data.size: the streamed "
                        f"split '{data.train}' of {data.hub} does not say how many examples it has (no split sizes "
                        "in its metadata): declare it as data.size (task sampling weighs tasks by size)")
    return StreamSource(rows, f"{data.hub}[{data.train}]", size)


def stream_labels(recipe: Recipe, name: str, task: TaskSpec, stream: StreamSource) -> list[str]:
    """A streamed task's label set, without reading the stream: its ClassLabel names or data.label_names,
    as the examples will name them (label_sep, label_names)."""
    kind = task_type(task.type)
    if not kind.min_labels:  # scores
        return []
    column, features = label_column(task.data, task.type), stream.rows.features
    if features and column not in features:  # say so before blaming the missing ClassLabel
        key = f"tasks.{name}.data.{'tag_column' if kind.token_level else 'label_column'}"
        raise UserError(f"{recipe.where(key)}: {key}: {stream.name} has no column '{column}' "
                        f"(found: {', '.join(features)})")
    names = hub_label_names(stream.rows, task.data, task.type)
    if names is None:
        raise UserError(f"{recipe.where(f'tasks.{name}.data.streaming')}: tasks.{name}.data.label_names: the labels "
                        f"of a streamed split must be known before it is read: {stream.name} has no ClassLabel "
                        "feature, so list them in data.label_names (e.g. {neg: negative, pos: positive})")
    where = Row(stream.name, {}, "features")
    return sort_labels({label_name(where, value, task.data) for value in names})


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # a container's CPU quota (cgroup v2): "max 100000" or "200000 100000"
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1's: cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (taskset, a container's cpuset) and its container's
    CPU quota (`docker --cpus 2`, cgroup v2 or v1), not the machine's count (os.cpu_count: 64 tokenising
    processes on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for read in (lambda: CGROUP_CPU_MAX.read_text(encoding="ascii").split()[:2],
                 lambda: [(CGROUP_V1_CPU / f"cpu.cfs_{part}_us").read_text(encoding="ascii")
                          for part in ("quota", "period")]):
        try:
            quota, period = read()
            if quota.strip() not in ("max", "-1"):
                cores = min(cores, max(1, int(int(quota) / int(period) + 0.5)))  # (1.5 CPUs: 2 processes)
            break
        except (OSError, ValueError):
            continue
    return cores


def load_task(recipe: Recipe, name: str, task: TaskSpec, tokenizer, max_length: int,
              splits: tuple[str, ...] = SPLITS, labels: list[str] | None = None,
              raw: RawTask | None = None) -> TaskData:
    """A task's tokenised splits: from the cache when its files and settings are unchanged, otherwise
    read (unless `raw` is given), checked and tokenised."""
    options = task_type(task.type).model_spec(task)
    num_proc = recipe.training.num_proc or usable_cores()
    key = raw.key if raw else task_key(recipe, task)
    remove_stale_files()
    if raw is None and key is not None:
        known = labels or cached_labels(key)
        if known is not None:
            cached = {split: cached_split(split_key(key, split, known, tokenizer, max_length, options))
                      for split in present_splits(task, splits)}
            if all(dataset is not None for dataset in cached.values()):
                return TaskData(name, task.type, known, cached, max_length, options=options)
    raw = raw or read_task(recipe, name, task, splits, labels)
    data = TaskData(name, task.type, raw.labels, max_length=max_length, options=options)
    if raw.stream:
        data.stream = TrainStream(raw.stream, task, raw.labels, tokenizer, max_length, options)
    for split, examples in raw.examples.items():
        data.splits[split] = tokenize(examples, task.type, raw.labels, tokenizer, max_length, options, num_proc,
                                      key and split_key(key, split, raw.labels, tokenizer, max_length, options),
                                      what=f"tasks.{name} {split}")
    return data


def split_key(key: str, split: str, labels: list[str], tokenizer, max_length: int, options: dict) -> str:
    return digest([key, split, labels, max_length, tokenizer_fingerprint(tokenizer), options])


def tokenize(examples: pa.Table | list[dict], task_type_name: str, labels: list[str], tokenizer, max_length: int,
             options: dict | None = None, num_proc: int = 1, key: str | None = None, what: str = "examples"
             ) -> datasets.Dataset:
    """Tokenise through datasets.map into the cache under `key` (default: a hash of the examples), in
    `num_proc` processes for large sets, so a second run re-uses it; a large set is announced as `what`.
    `options`: the task type's own settings (TaskType.model_spec, e.g. a QA task's doc_stride)."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    table = examples if isinstance(examples, pa.Table) else to_arrow(examples)
    table = table.drop_columns([c for c in ("_line",) if c in table.column_names])
    if key is None:
        key = digest([CACHE_VERSION, table.to_pylist(), task_type_name, labels, max_length,
                      tokenizer_fingerprint(tokenizer)] + ([options] if options else []))
    cached = cached_split(key)
    if cached is not None:
        return cached
    label_ids = {label: i for i, label in enumerate(labels)}
    kind = task_type(task_type_name)

    def encode_with_length(batch):
        enc = kind.encode(batch, tokenizer, max_length, label_ids, options)
        if "length" not in enc:  # a type may give its own (multiple choice: choices x longest choice)
            enc["length"] = [len(ids) for ids in enc["input_ids"]]
        if "truncated" not in enc:  # a type may say itself what max_length cut (windows of a context lose nothing)
            enc["truncated"] = was_truncated(enc)
        return enc

    cache_file = cache_dir() / f"tokenized-{key}.arrow"
    large = table.num_rows >= PARALLEL_FROM
    num_proc = num_proc if large and num_proc > 1 else None
    if large:  # millions of examples take minutes, which were silent (datasets' progress bars are off)
        print(f"tokenizing {what}: {table.num_rows:,} examples{f' in {num_proc} processes' if num_proc else ''}, "
              f"cached in {cache_dir()} for the next runs", file=sys.stderr, flush=True)
    spilled = cache_dir() / f".examples-{key}-{unique()}.arrow"
    try:
        with writing_cache():
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            # a large split is mapped from a file: an in-memory table would be pickled to each tokenising
            # process, and datasets' map holds more of it in memory (1 M rows: 0.58 instead of 0.68 GB peak)
            dataset = spill(table, spilled) if large else Dataset(InMemoryTable(table))
            # a type that makes several rows of one example keeps only the columns encode() returns
            remove = None if kind.one_row_per_example else dataset.column_names
            result = dataset.map(encode_with_length, batched=True, cache_file_name=str(cache_file),
                                 new_fingerprint=key, remove_columns=remove, num_proc=num_proc, desc="tokenizing")
    finally:
        with contextlib.suppress(OSError):  # the result is in its own files
            spilled.unlink(missing_ok=True)
    rows_of_part = {Path(f["filename"]).name: len(Dataset.from_file(f["filename"])) for f in result.cache_files}
    if rows_of_part:  # written last: the entry is complete (its rows: cached_split checks them)
        write_atomic(cache_dir() / f"tokenized-{key}.json", json.dumps(rows_of_part))
    return result


@contextlib.contextmanager
def writing_cache():
    """Writes to the cache folder: one that cannot be written, or a full disk, is said naming the folder
    (pyarrow's errors name one of its files, or nothing)."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
            raise UserError(f"{cache_dir()}: the tokenised data is cached here, and it cannot be written "
                            f"({os.strerror(e.errno)}): set HF_DATASETS_CACHE (or HF_HOME) to a folder you can "
                            "write") from None
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the machine's, as any full disk: `error: <path>: <what>`
            raise OSError(e.errno, os.strerror(e.errno), str(cache_dir())) from None
        raise


def spill(table: pa.Table, path: Path) -> datasets.Dataset:
    """`table` written to an Arrow file and memory-mapped from it."""
    import pyarrow as pa
    from datasets import Dataset

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=10_000):
            writer.write_batch(batch)
    return Dataset.from_file(str(path))


def to_arrow(examples, source: str = "<examples>", chunk: int = 10_000) -> pa.Table:
    """Examples (an iterable of dicts) as an Arrow table, converted a chunk at a time: a large file
    never becomes a list of Python dicts. Past the first chunk, the chunks go to a file the table is
    memory-mapped from (its pages are the file's, not the process's own memory)."""
    import pyarrow as pa

    examples = iter(examples)
    with ChunkFiles() as files:
        try:
            while True:
                part = pa.Table.from_pylist(list(itertools.islice(examples, chunk)))
                if not files.paths and part.num_rows < chunk:  # small: kept in memory
                    return part
                if part.num_rows:
                    files.write(part)
                if part.num_rows < chunk:
                    pa.default_memory_pool().release_unused()  # the chunks' memory (1 M rows: 20 MB)
                    # a column that is empty (null) or whole numbers in one chunk takes the other chunks' type
                    return pa.concat_tables(files.tables(), promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UserError(f"{source}: a field holds values of different kinds in different examples ({e})") from None


class ChunkFiles:
    """Arrow tables written one after another to files in the cache folder (a new file whenever the
    schema changes) and read back memory-mapped. The files are deleted on exit: the mappings keep
    their data for as long as a table uses it."""

    def __init__(self):
        self.paths, self.writer, self.schema = [], None, None

    def __enter__(self):
        return self

    @writing_cache()
    def write(self, table: pa.Table) -> None:
        import pyarrow as pa

        if self.writer is None or table.schema != self.schema:
            self.close()
            path = cache_dir() / f".reading-{unique()}-{len(self.paths)}.arrow"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.paths.append(path)
            self.writer, self.schema = pa.ipc.new_stream(str(path), table.schema), table.schema
        self.writer.write_table(table)

    @writing_cache()
    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def tables(self) -> list[pa.Table]:
        import pyarrow as pa

        self.close()
        return [pa.ipc.open_stream(pa.memory_map(str(path))).read_all() for path in self.paths]

    def __exit__(self, *exc):
        try:
            self.close()  # (on a full disk, flushing fails again)
        finally:
            for path in self.paths:
                # (a file that could not be made, in a folder this user cannot search, is EACCES, not ENOENT: it
                # would hide why it could not be made)
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)


def was_truncated(enc) -> list[bool]:
    """Which examples lost tokens to max_length: a fast tokenizer (the only kind mtnlp loads) keeps what it
    cut off in `overflowing`."""
    return [bool(e.overflowing) for e in enc.encodings]


def split_facts(dataset: datasets.Dataset, kind: str, labels: list[str], unk_id: int | None = None) -> dict:
    """What a user should know about a tokenised split before training on it: its size, its label
    spread (the task type's view: over words for tagging), how many examples max_length cuts and
    (given the tokenizer's unk_id) the share of its tokens the vocabulary lacks."""
    facts = {"examples": len(dataset), "over_max_length": int(sum(column(dataset, "truncated"))),
             **task_type(kind).facts(dataset, labels)}
    if unk_id is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = dataset.with_format("arrow")["input_ids"]
        while pa.types.is_list(ids.type):  # (multiple choice: a list of choices, each a list of ids)
            ids = pc.list_flatten(ids)
        # a scalar of the ids' own type: a Python int would cast every int32 id to int64 (8 bytes an id, which
        # Arrow's pool keeps after the sum)
        unknown = pc.sum(pc.equal(ids, pa.scalar(unk_id, ids.type))).as_py() or 0
        facts["unknown_tokens"] = unknown / max(len(ids), 1)
    return facts


MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def rows_signature(dataset: datasets.Dataset, *settings) -> str:
    """A hash of a tokenised split's rows - every column: token ids, labels and what scoring reads (QA answers,
    words' tags) - and `settings` (JSON), whatever its storage's chunks and integer widths: a model scores two
    splits with the same one alike (resuming checks the validation splits with it)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name in sorted(table.column_names):
        values = table.column(name).combine_chunks()
        h.update(name.encode())
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or \
                pa.types.is_fixed_size_list(values.type):
            h.update(pc.list_value_length(values).cast(pa.int64()).to_numpy(zero_copy_only=False).tobytes())
            values = values.flatten()
        if pa.types.is_integer(values.type) or pa.types.is_boolean(values.type) or pa.types.is_floating(values.type):
            wide = pa.float64() if pa.types.is_floating(values.type) else pa.int64()
            h.update(values.cast(wide).to_numpy(zero_copy_only=False).tobytes())
        else:  # text, answers (structs): their values
            h.update(json.dumps(values.to_pylist(), default=str).encode())
    return h.hexdigest()[:24]


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
