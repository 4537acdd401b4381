"""What every task type answers. A type is one module in mtnlp/tasks (one class) and one line in
the registry (mtnlp/tasks/__init__.py); the rest of mtnlp asks it instead of branching on the
type's name: reading a raw example, the label set, tokenising and aligning labels, padding a batch,
the head's loss, turning logits into predictions, scoring them, decoding them for the pipeline and
exporting the head as a plain transformers model."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import regex

if TYPE_CHECKING:
    import torch

    from ..readers import Row
    from ..spec import DataSpec


class InputError(ValueError):
    """What is wrong with one field of a pipeline input of a type's own form; `field` is its place in the
    input (".choices[1]"), which serve names in its error's "field"."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class TaskType:
    name: str  # the recipe's `type:`
    metrics: tuple[str, ...]  # the metrics (mtnlp/metrics METRICS) that apply; by default all of them, the first main
    token_level = False  # True: examples are token lists (CoNLL, CoNLL-U, json lists), labels per token
    metric_notes: dict[str, str] = {}  # how a reported figure is computed, where its name does not say (model card)
    head_kind = "sequence"  # which of the encoder family's heads it uses: "sequence", "token", "choice" or "span"
    fp32_head = False  # True: the head computes in fp32 under bf16/fp16 autocast (its outputs are the predicted values)
    export_class = "AutoModelForSequenceClassification"  # the transformers class an exported head loads as
    pipeline_tag = "text-classification"  # the hub's task tag for the model card
    min_labels = 2  # labels training must show; 0: no label set (scores, choice positions, spans)
    # False: encode() may turn one example into several rows (e.g. the windows of a long context);
    # tokenising then keeps only the columns encode() returns, so it returns what evaluation reads
    one_row_per_example = True
    # columns of a tokenised split that predictions() reads beside the logits (passed as rows=)
    prediction_columns: tuple[str, ...] = ()
    # validation_from_train puts the examples with the same value of this column on one side (QA: "context")
    carve_by: str | None = None

    # ---------------------------------------------------------------- reading

    def example(self, row: Row, spec: DataSpec) -> dict:
        """A checked example from one raw row (columns by name); problems are UserErrors naming the row."""
        raise NotImplementedError

    def examples(self, row: Row, spec: DataSpec) -> list[dict]:
        """The checked examples of one raw row: one (example()), or several (e.g. a SQuAD article's questions)."""
        return [self.example(row, spec)]

    def checked(self, examples: Iterable[dict], task, source: str) -> Iterator[dict]:
        """The examples of one split, each passed on once checked against the split's rules (each example
        alone: example()), with the task's own recipe keys (`task`: its Spec); UserErrors name the file and
        line (e.g. multiple choice: the same number of choices throughout). Read once, in order, as the
        split is read or streamed: a split is never a list here."""
        return iter(examples)

    def check_recipe(self, recipe, name: str, task, fail) -> None:
        """Checks that relate the task's own keys to the rest of the recipe; fail(dotted key, message)."""

    def default_metrics(self, labels: list[str]) -> list[str]:
        """The metrics of a task whose recipe names none; the first is the main one (model selection)."""
        return list(self.metrics)

    def label_set(self, examples: Iterable[dict]) -> list[str]:
        """The label names, in a stable order (numbers numerically): the head's output order."""
        return sort_labels({label for ex in examples for label in self.labels_of(ex)})

    def label_set_problem(self, labels: list[str]) -> tuple[str, str] | None:
        """A label the type cannot read beside the others of a training split's set, and why: (label, message)."""
        return None

    def labels_of(self, example: dict) -> list[str]:
        return [example["label"]] if self.min_labels else []

    def model_spec(self, spec) -> dict:
        """What the model's config keeps of the recipe's task section beyond type, labels and dropout."""
        return {}

    # keys a model's config.tasks[name] may hold beyond the type's recipe keys (its Spec's fields, which model_spec
    # copies): what model_spec or training computes (a text task's text_pair, multilabel's tuned thresholds)
    config_keys: tuple[str, ...] = ()

    def model_keys(self) -> set[str]:
        """The keys config.tasks[name] may hold: the type's own recipe keys and config_keys (every type's recipe
        keys - data, metrics, loss_weight - are training's, never a model's)."""
        from ..spec import TaskSpec

        return (set(self.Spec.model_fields) - set(TaskSpec.model_fields)) | set(self.config_keys)

    def config_value(self, key: str, value, labels: list[str]):
        """config.tasks[name][key] as a model reads it: a field of the type's recipe section checked and read as
        the recipe reads it (e.g. "false" as false), or one of config_keys; a ValueError says what is wrong, a
        KeyError that the type has no such key (model_keys)."""
        if key not in self.model_keys():
            raise KeyError(key)
        if key == "text_pair" and key in self.config_keys:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        field = self.Spec.model_fields.get(key)
        if field is None:  # one of config_keys
            return value
        from typing import Annotated

        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
                               ).validate_python(value)
        except ValidationError as e:
            raise ValueError(f"{e.errors()[0]['msg']}, got {value!r}") from None

    # ---------------------------------------------------------------- tokenising and batches

    def encode(self, batch: dict[str, list], tokenizer, max_length: int, label_ids: dict[str, int],
               options: dict | None = None) -> dict:
        """Tokenise a batch of examples (datasets.map) with their labels as model targets. `options`:
        the task's model_spec() (e.g. a QA task's doc_stride). A type whose rows are not one sequence each
        also gives "length" (padded tokens it costs); a type may set "truncated" itself."""
        enc = truncating(tokenizer, batch["text"], batch.get("text_pair"), max_length=max_length)
        enc["labels"] = [self.target(label, label_ids) for label in batch["label"]]
        return enc

    def target(self, label, label_ids: dict[str, int]):
        return label_ids[label]

    def collate_inputs(self, rows: list[dict], pad_id: int) -> dict[str, torch.Tensor] | None:
        """The model inputs of a batch, padded; None: one sequence per row (data.pad_sequences)."""
        return None

    def collate_labels(self, rows: list[dict], width: int) -> torch.Tensor:
        import torch

        return torch.tensor([r["labels"] for r in rows], dtype=torch.long)

    # ---------------------------------------------------------------- the head

    def num_outputs(self, labels: list[str]) -> int:
        return len(labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, spec: dict) -> torch.Tensor:
        """The head's loss; `spec`: the task's entry in the model's config.tasks, with the keys model_spec()
        keeps of the recipe (e.g. a label smoothing a type adds to its Spec) and `label_weights`."""
        raise NotImplementedError

    def loss_items(self, labels: torch.Tensor) -> int | torch.Tensor:
        """How many items loss() averages over in a batch with these labels (as collated, on the host): its
        rows. An update weighs each micro-batch by it (train.draw_update), as one larger batch would."""
        return len(labels)

    def label_weights(self, spec, labels: list[str], train) -> list[float] | None:
        """The per-label loss weights the recipe's `label_weights` gives (config.tasks' `label_weights`, which
        loss() reads); `train`: the tokenised training split, None when it is streamed. None: unweighted."""
        return None

    # ---------------------------------------------------------------- evaluation

    def predictions(self, logits: torch.Tensor, labels: torch.Tensor, spec: dict, rows: dict | None = None) -> list:
        """One prediction per row of a batch, in the form score() takes; `rows`: the batch's
        prediction_columns (given when the type names any)."""
        raise NotImplementedError

    def references(self, dataset) -> list:
        return column(dataset, "labels")

    def metrics_problem(self, metrics: list[str], labels: list[str]) -> str | None:
        """Why `metrics` cannot score a task with these labels (known once the data is read), or None."""
        return None

    def score(self, references: list, predictions: list, metrics: list[str], labels: list[str]) -> dict[str, float]:
        from ..metrics import compute

        return {name: compute(name, predictions, references) for name in metrics}

    def per_label(self, references: list, predictions: list, metrics: list[str], labels: list[str],
                  spec: dict) -> dict | None:
        """Each label's {precision, recall, f1, support} (label_figures), or None: the type has no labels.
        `spec`: the head's config entry the predictions were made with."""
        return None

    def fits_validation(self, spec) -> bool:
        """Whether fit() has something to learn from the validation split after training."""
        return False

    def fit(self, logits: torch.Tensor, references: list, spec, name: str = "") -> dict:
        """Model config updates learnt from the validation split's logits of task `name` (see fits_validation)."""
        return {}

    def evaluated_as(self, recipe, name: str, head: dict, max_length: int) -> dict:
        """The head's config entry as `mtnlp evaluate` uses it at `max_length`, given the evaluation recipe's
        task section recipe.tasks[name]: what the recipe changes of what fit() learnt (e.g. another multi-label
        threshold)."""
        return head

    def baseline(self, train, target, labels: list[str]) -> list:
        """What always predicting the most frequent training label gives on `target`."""
        top = Counter(column(train, "labels")).most_common(1)[0][0]
        return [top] * len(target)

    def facts(self, dataset, labels: list[str]) -> dict:
        """The label spread of a tokenised split, for the start-of-training table (shares per example)."""
        return label_shares([labels[i] for i in column(dataset, "labels")])

    def truncation_note(self, dataset, max_length: int, options: dict | None = None) -> str | None:
        """What max_length cut of a tokenised split (its "truncated" column), said once per split; None: nothing.
        `options`: the task's model_spec (whether it reads pairs)."""
        cut = sum(column(dataset, "truncated"))
        if not cut:
            return None
        pairs = f" ({PAIR_CUT})" if (options or {}).get("text_pair") else ""
        effect = ("the words it cuts off are scored as O (as wrong where the tags have no O)" if self.token_level
                  else f"the model sees only what fits{pairs}")
        return (f"{cut:,} of {len(dataset):,} examples are longer than max_length={max_length} tokens and were "
                f"truncated; {effect}")

    # ---------------------------------------------------------------- pipeline and export

    # None: the type reads texts and pairs, and the pipeline runs all such heads in one encoder pass.
    # Otherwise the fields of its own pipeline input (e.g. ("question", "context")), which pipeline()
    # answers with its own tokenisation and forward pass.
    input_fields: tuple[str, ...] | None = None
    optional_fields: tuple[str, ...] = ()  # fields of that input it may also have (multiple choice: "question")

    def accepts(self, value) -> bool:
        """Whether a pipeline input is this type's own (a mapping with its input fields)."""
        return bool(self.input_fields) and isinstance(value, dict) and set(self.input_fields) <= set(value)

    example_input: dict | None = None  # such an input, for the model card's usage example

    def check_input(self, value) -> None:
        """A ValueError saying what is wrong with an input this type accepts (e.g. a line of `mtnlp
        predict --input`, which names its file and line)."""

    def pipeline(self, pipe, task: str, inputs: list[dict], all_scores: bool) -> tuple[list, list[int]]:
        """Predictions for inputs of this type's own form (types with input_fields only), and which of the
        inputs max_length cut (their indices; the pipeline names them in one warning, with `cut_effect`)."""
        raise NotImplementedError

    cut_effect = ""  # what max_length cutting an input of this type's own form does (types with input_fields)

    def decode(self, logits: np.ndarray, spec: dict, all_scores: bool, words=None, first_tokens=None,
               text: str = "") -> Any:
        """The pipeline's prediction for one input from this head's logits (one row, float32 numpy: a torch
        op per input would meet the intra-op thread pool once per input, slow on a busy CPU). Token-level
        types get `words`, the (word, (start, end)) of the text's words that have a token, and
        `first_tokens`, the position of each one's first sub-token."""
        raise NotImplementedError

    def export_config(self, config, spec: dict) -> None:
        """Set num_labels / id2label / problem_type of an exported head's transformers config."""
        config.id2label = dict(enumerate(spec["labels"]))
        config.label2id = {label: i for i, label in enumerate(spec["labels"])}

    def decision(self, spec: dict) -> dict:
        """What turns this head's scores into its predictions beyond its labels (serve's /info), e.g. multi-label
        thresholds; none for most types."""
        return {}

    def describe_labels(self, spec: dict) -> str:
        """The labels cell of the model card's table: whole labels, and how many there are where not all fit."""
        labels = spec["labels"]
        if len(shown := ", ".join(labels)) <= 120:
            return shown
        kept, more = [], f"... ({len(labels):,} labels)"
        while len(", ".join([*kept, labels[len(kept)], more])) <= 120:
            kept.append(labels[len(kept)])
        return ", ".join([*kept, more])


class TextTask(TaskType):
    """A text (or a text pair) with a label: the shared part of reading it."""

    config_keys = ("text_pair",)

    def model_spec(self, spec) -> dict:
        """Whether the head reads text pairs: the pipeline gives it only the form it was trained on."""
        return {"text_pair": spec.data.text_pair_column is not None}

    def evaluated_as(self, recipe, name, head, max_length):
        """The head as it is; an evaluation recipe that gives it the other form of input than it was trained on
        (a pair head's data without text_pair_column) is an error, as predict's input would be."""
        from ..errors import UserError

        pair = recipe.tasks[name].data.text_pair_column is not None
        if head.get("text_pair", pair) != pair:
            key = f"tasks.{name}.data" + (".text_pair_column" if pair else "")
            raise UserError(f"{recipe.where(key)}: {key}: the model's {name} head reads " + (
                "single texts: drop text_pair_column" if pair else
                "text pairs: give text_pair_column (the second text's column)"))
        return head

    def example(self, row: Row, spec: DataSpec) -> dict:
        example = {"text": row.text(spec.text_column, "text_column"), "_line": row.line}
        if spec.text_pair_column is not None:
            example["text_pair"] = row.text(spec.text_pair_column, "text_pair_column")
        label = row.column(spec.label_column, "label_column")
        if label is None or (isinstance(label, str) and not label.strip()):
            row.fail(f"empty label in column '{row.printable(spec.label_column)}'")
        example["label"] = self.parse_label(row, label, spec)
        return example

    def parse_label(self, row: Row, label, spec: DataSpec):
        raise NotImplementedError


def input_forms(kinds: dict[str, TaskType]) -> str:
    """'{text, choices} (mc) or {question, context} (qa)': the own input forms of these tasks, by name, for
    error messages."""
    return " or ".join(f"{{{', '.join(kind.input_fields)}}} ({task})" for task, kind in kinds.items())


def reads(spec: dict) -> str:
    """What a task (its config entry) answers, for error messages and serve's /info: its type's own form,
    text pairs, single texts, or (a model saved before heads recorded it) texts and pairs."""
    from . import task_type

    kind = task_type(spec["type"])
    if kind.input_fields:
        return "{" + ", ".join([*kind.input_fields, *(f"{name}?" for name in kind.optional_fields)]) + "}"
    if kind.token_level:
        return "single texts or {words}"
    return {True: "text pairs", False: "single texts"}.get(spec.get("text_pair"), "texts")


def is_words_input(value) -> bool:
    """Whether a pipeline input is {"words": [...]}: a text split into words already (as a CoNLL corpus
    is), which the tagging heads answer with one tag per word."""
    return isinstance(value, dict) and "words" in value


def reads_text(spec: dict, pair: bool) -> bool:
    """Whether a task (its config entry) reads a text pair (`pair`) or a single text: a text head reads the
    form it was trained on (config `text_pair`), both when a text head was saved without it; a type with its own
    inputs neither."""
    from . import task_type

    kind = task_type(spec["type"])  # a tagging head was only ever trained on single texts, recorded or not
    return not kind.input_fields and spec.get("text_pair", False if kind.token_level else pair) == pair


def example_input(spec: dict):
    """An input the task (its config entry) reads: its type's example, a pair, or a text."""
    from . import task_type

    kind = task_type(spec["type"])
    if kind.input_fields:
        return kind.example_input
    return {"text": "Some text to analyse.", "text_pair": "A second text."} if spec.get("text_pair") \
        else "Some text to analyse."


# a run of invisible characters (Unicode's default-ignorable code points: a right-to-left mark, a zero-width space
# or joiner, a variation selector), which no label holds (look_alike)
INVISIBLE = regex.compile(r"\p{Default_Ignorable_Code_Point}+")


def look_alike(label: str) -> str:
    """What a label (or a task name) reads as: its letters in one Unicode form (NFKC: café as é or as e + U+0301,
    ＰＯＳ as POS), without invisible characters (a right-to-left mark, a zero-width space), spaces as one, case
    folded."""
    visible = INVISIBLE.sub("", unicodedata.normalize("NFKC", label))
    return " ".join(visible.split()).casefold()


# a character that shows: neither whitespace, a control character nor invisible; a word (pipeline.split_words) and
# a QA answer (extractive_qa.whole_words, shown_part) hold one
SHOWN = regex.compile(r"[^\s\p{Cc}\p{Default_Ignorable_Code_Point}]")
LONE_SURROGATE = "holds a lone surrogate (an invalid \\u escape such as \\ud800), which no tokenizer takes"


def text_input_problem(value) -> tuple[str, str] | None:
    """What is wrong with an input meant as a text or {"text": ..., "text_pair": ...}: (the field at fault,
    after the input's own name: "", ".text", ...; why), or None. The pipeline and serve say the same."""
    if isinstance(value, str):
        return None
    if not isinstance(value, dict):
        return "", f'expected a text or an object {{"text": ..., "text_pair": ...}}, got {type(value).__name__}'
    if is_words_input(value):
        if other := [key for key in value if key != "words"]:
            return f".{other[0]}", 'unknown field beside "words" (a text split into words is {"words": [...]})'
        if not isinstance(value["words"], list):
            return ".words", "expected a list of words"
        for k, word in enumerate(value["words"]):
            if isinstance(word, (int, float)) and not isinstance(word, bool):  # a corpus's tokens may be numbers
                return f".words[{k}]", f"expected a word: a string, got the number {word}: write it as text, \"{word}\""
            if not isinstance(word, str) or not word.strip():
                return f".words[{k}]", "expected a word: a string that is not empty or blank"
        return None
    for key in value:
        if key not in ("text", "text_pair"):
            from . import TASK_TYPES

            # a field of a type's own input, without the rest of it: say what is missing, not that it is unknown
            for kind in TASK_TYPES.values():
                if key in (kind.input_fields or ()):
                    missing = [field for field in kind.input_fields if field not in value]
                    return (f".{missing[0]}", f"missing (an input of the {kind.name} type holds "
                                              f"{{{', '.join(kind.input_fields)}}})")
            return f".{key}", "unknown field (expected: text, text_pair)"
    for key in ("text", "text_pair"):
        if (key == "text" or key in value) and not isinstance(value.get(key), str):
            return f".{key}", "expected a string"
    return None


def answering_tasks(value, tasks: dict[str, dict], every: bool = False) -> list[str]:
    """The tasks of `tasks` (the requested ones' config entries, by name) that answer one pipeline input:
    those whose type has it as its own form (TaskType.accepts), the input checked by the type; otherwise
    the text heads that read its form, a pair or a single text, as they were trained (config `text_pair`;
    a head saved without it reads both). A ValueError saying why when no requested task reads it, or with
    `every` (the tasks were named by the caller) when one of them does not: a named head is never left out.
    The pipeline, mtnlp predict and mtnlp serve all route inputs with this."""
    from . import TASK_TYPES, task_type

    kinds = {t: task_type(spec["type"]) for t, spec in tasks.items()}
    forms = [kind.name for kind in TASK_TYPES.values() if kind.accepts(value)]
    pair, words = isinstance(value, dict) and "text_pair" in value, is_words_input(value)
    takers = [t for t, kind in kinds.items() if (kind.accepts(value) if forms else kind.token_level if words
                                                 else reads_text(tasks[t], pair))]
    missing = [t for t in tasks if t not in takers]
    if not takers or every and missing:
        what = (f"an input of the {' / '.join(forms)} type" if forms else "a text pair" if pair
                else "a text split into words" if words
                else "a text" if isinstance(value, str) or isinstance(value, dict) and set(value) == {"text"}
                else f"{{{', '.join(map(str, value))}}}" if isinstance(value, dict) else repr(value)[:80])
        listed = ", ".join(f"{t} reads {reads(tasks[t])}" for t in (missing if takers else tasks))
        raise ValueError(f"{what}, but no {'requested ' * every}task reads it ({listed})" if not takers else
                         f"{what}, but a requested task does not read it ({listed}): ask only for tasks that "
                         "read it, or for none (every task that reads an input answers it)")
    for t in takers if forms else ():
        kinds[t].check_input(value)
    return takers


# what longest-first truncation (transformers' default, run_glue's) does to a text pair
PAIR_CUT = "of a pair, the longer text is cut first, down to the other's length, then both"


def truncating(tokenizer, texts: list, pairs: list | None = None, *, max_length: int, words: bool = False, **kwargs):
    """tokenizer(texts, pairs, truncation=True, max_length=...) (`words`: each text a list of words), with a
    long text cut first a little past its max_length-th token. The tokenizer's truncation builds every
    overflowing window of what it cuts off, and for a pair every combination of the two texts' windows:
    quadratic in the length (a pair of 10,000-character texts took 45 s). The result is the same (see
    _cut_long), and a cut text still overflows, so its truncation is still seen."""
    if getattr(tokenizer, "is_fast", False) and getattr(tokenizer, "truncation_side", "right") == "right":
        texts, pairs = _cut_long(tokenizer, texts, pairs, max_length, words)
    return tokenizer(texts, pairs, is_split_into_words=words, truncation=True, max_length=max_length, **kwargs)


def _cut_long(tokenizer, texts: list, pairs: list | None, max_length: int, words: bool) -> tuple[list, list | None]:
    """Each long text cut after its first max_length + 16 tokens, where the cut keeps what truncation keeps:
    the cut text's first max_length tokens are the text's, and of a pair the longer text stays the longer
    (longest-first truncation gives it the odd token of an odd budget; the first text when both are as
    long). A cut that would change either is not made: a merge across it, a space left at its end."""
    size = (lambda t: sum(map(len, t))) if words else len
    long = [i for i in range(len(texts)) if size(texts[i]) > 2 * max_length  # shorter: cheap as it is
            or pairs is not None and size(pairs[i]) > 2 * max_length]
    if not long:
        return texts, pairs
    parts = [list(texts)] + ([list(pairs)] if pairs is not None else [])

    def encode(values: list) -> list:
        return tokenizer(values, is_split_into_words=words, add_special_tokens=False, return_offsets_mapping=True,
                         verbose=False).encodings if values else []  # verbose: no "longer than" warning

    def prefix(value, enc, n: int):  # the text (or words) up to the end of token n - 1
        end = enc.offsets[n - 1][1]  # in its word, with `words`
        return value[:enc.word_ids[n - 1]] + [value[enc.word_ids[n - 1]][:end]] if words else value[:end]

    keep = max_length + 16
    for i in long:  # a 200 MB line tokenised whole took ~29 GB: the "whole" text is a prefix of some more tokens
        longer, *other = sorted(parts, key=lambda part: len(part[i]), reverse=True)
        if not other or len(other[0][i]) <= BOUND * keep:  # of a pair, the longer text, past the other's tokens
            longer[i] = bounded(longer[i], keep + 4 * sum(map(len, other[0][i])) if other else keep, encode,
                                functools.partial(whole_words, tokenizer))
    full = [encode([part[i] for i in long]) for part in parts]
    counts = [[len(enc.ids) for enc in encs] for encs in full]
    cuts = [[prefix(part[i], enc, keep) if n > keep else None for i, enc, n in zip(long, encs, ns)]
            for part, encs, ns in zip(parts, full, counts)]
    after = [list(ns) for ns in counts]
    for encs, cut, ns in zip(full, cuts, after):
        changed = [k for k, value in enumerate(cut) if value is not None]
        for k, enc in zip(changed, encode([cut[k] for k in changed])):
            if enc.ids[:max_length] == encs[k].ids[:max_length]:
                ns[k] = len(enc.ids)
            else:
                cut[k] = None
    if pairs is not None:
        for k in range(len(long)):
            order = (counts[0][k] > counts[1][k]) - (counts[0][k] < counts[1][k])
            if (after[0][k] > after[1][k]) - (after[0][k] < after[1][k]) != order:
                cuts[0][k] = cuts[1][k] = None
    for part, cut in zip(parts, cuts):
        for i, value in zip(long, cut):
            if value is not None:
                part[i] = value
    return parts[0], parts[1] if pairs is not None else None


BOUND = 64  # characters (or words) per token that a text is first cut to, growing until it has its tokens


def bounded(value, tokens: int, encode, whole):
    """`value` (a text or a list of words) cut to a prefix of more than `tokens` tokens that ends where a word
    ends (a text: `whole` drops its last pre-token), so its tokens are the whole value's; or the whole value.
    (Cut inside a word, a WordPiece [UNK] of a word over 100 characters became its piece's sub-tokens. Of a pair,
    `tokens` is past what the other text can have: 4 tokens per character, a byte-level BPE's most.)"""
    limit = BOUND * tokens
    while len(value) > limit:
        prefix = value[:limit] if isinstance(value, list) else whole(value[:limit])
        if len(encode([prefix])[0].ids) > tokens + 16:
            return prefix
        limit *= 4
    return value


def whole_words(tokenizer, text: str) -> str:
    """`text` up to the start of its last word as the tokenizer's pre-tokenizer splits it (else at spaces)."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is not None:
        words = pre.pre_tokenize_str(text)
        return text[:words[-1][1][0]] if len(words) > 1 else ""
    end = len(text)
    while end and not text[end - 1].isspace():
        end -= 1
    return text[:end]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def labelled_cross_entropy(logits, targets, ignore_index: int):
    """Cross-entropy averaged over the targets that are not ignore_index, and 0 (not NaN, as PyTorch's mean
    gives) when there are none: e.g. a batch of sentences whose words the tokenizer turned into nothing."""
    from torch.nn import functional as F

    total = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    return total / (targets != ignore_index).sum().clamp(min=1)  # on the device: no host sync


# what `label_weights: balanced` lacks on a streamed training split
STREAMED_BALANCED = ("balanced needs the training split's label counts, which a streamed split does not give: "
                     "give a weight per label ({label: weight})")


def weights_per_label(setting, labels: list[str], counts: np.ndarray | None, balanced) -> list[float] | None:
    """`label_weights` as one weight per label: a mapping (labels it leaves out weigh 1), or "balanced":
    balanced(counts), `counts` the training examples of each label. ValueErrors say what is wrong."""
    if setting is None:
        return None
    if setting == "balanced":
        if counts is None:
            raise ValueError(STREAMED_BALANCED)
        return [float(f"{w:.6g}") for w in balanced(counts)]  # 6 digits in config.json; never 0
    unknown = [label for label in setting if label not in labels]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a label of the task (its labels: {', '.join(labels)})")
    return [float(setting.get(label, 1.0)) for label in labels]


def label_figures(gold, predicted, labels: list[str]) -> dict[str, dict]:
    """Each label's precision, recall, F1 and support (its count in `gold`), as sklearn's classification_report
    gives them (0 where nothing divides), for the labels a macro average takes. gold, predicted: a label id per
    example (an id not in `labels`, e.g. -1, is a wrong answer): the labels in either (sklearn's macro F1); or
    0/1 rows (multi-label): every label (macro_f1 counts a label in neither as F1 0)."""
    from sklearn.metrics import precision_recall_fscore_support

    gold, predicted, ids = np.asarray(gold), np.asarray(predicted), list(range(len(labels)))
    seen = set(ids) if gold.ndim == 2 else set(gold.tolist()) | set(predicted.tolist())
    if gold.ndim == 2 and gold.shape[1] == 1:  # one label: sklearn would read the column as two classes
        gold, predicted, ids, seen = gold[:, 0], predicted[:, 0], [1], {1}
    figures = precision_recall_fscore_support(gold, predicted, labels=ids, zero_division=0)
    return {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for i, label, p, r, f, n in zip(ids, labels, *figures) if i in seen}


def check_label_weights(name: str, task, fail) -> None:
    if task.label_weights == "balanced" and task.data.streaming:  # said before anything is loaded
        fail(f"tasks.{name}.label_weights", STREAMED_BALANCED)


@functools.lru_cache(maxsize=64)
def on_device(values: tuple[float, ...], device) -> torch.Tensor:
    """A config list (label_weights) as a tensor on the logits' device, made once: not a copy per step."""
    import torch

    with torch.inference_mode(False):  # made under inference_mode, it could not be saved for a backward pass
        return torch.tensor(values, dtype=torch.float32, device=device)


def label_name(row: Row, label, spec: DataSpec, what: str = "label") -> str:
    """A label as the model will name it: up to data.label_sep, renamed by data.label_names."""
    value = row.name(what, label)
    if spec.label_sep:
        value = value.split(spec.label_sep)[0].strip()
        if not value:
            row.fail(f"{what} {row.show(str(label).strip())} is empty before data.label_sep {spec.label_sep!r}")
    return rename(row, value, label, spec, what)


def rename(row: Row, value: str, raw, spec: DataSpec, what: str = "label") -> str:
    if spec.label_names:
        if value not in spec.label_names:
            numbered = all(key.lstrip("-").isdecimal() for key in spec.label_names) and not value.lstrip("-").isdecimal()
            row.fail(f"{what} {row.show(value)} is not in data.label_names ({', '.join(spec.label_names)})" + (
                ": its keys are numbers and the labels are not (a hub data set's ClassLabel ids are read as their "
                "names): key it by the labels as the data gives them" if numbered else ""))
        value = spec.label_names[value].strip()
        if not value:
            row.fail(f"data.label_names maps {what} {row.show(raw)} to an empty name")
    return value


def valid_unicode(value) -> bool:
    """Whether a text (or every text in an object or a list) is valid Unicode: JSON escapes such as \\ud800
    and command-line bytes that are not UTF-8 give lone surrogates, which no tokenizer takes."""
    pending = [value]  # not recursive: a served request may nest lists 900 deep (below json's own limit)
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(value, dict):  # keys too: error messages name them, and predict echoes them
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return True


def column(dataset, name: str) -> list:
    """A tokenised split's column as a list, converted by Arrow: `dataset[name]` (datasets 4+) builds it
    a row at a time, 5 s per million rows."""
    return dataset.with_format("arrow")[name].to_pylist()


def sort_labels(values: set[str]) -> list[str]:
    numeric = all(re.fullmatch(r"-?[0-9]{1,30}", v) for v in values)  # not isdigit(): int("²") fails
    return sorted(values, key=lambda v: (int(v), v) if numeric else (0, v))


def label_shares(names: list[str], examples: int | None = None) -> dict:
    """The count of labels and the largest and smallest one's share: of the labels given, or (multi-label:
    `examples`) of the examples that carry it."""
    counts = Counter(names)
    if not counts:
        return {"labels": 0}
    total = examples or len(names)
    (top, top_n), (low, low_n) = counts.most_common()[0], counts.most_common()[-1]
    return {"labels": len(counts), "largest": [top, top_n / total], "smallest": [low, low_n / total]}
