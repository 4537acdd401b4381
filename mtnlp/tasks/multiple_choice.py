"""type: multiple_choice — a context (and optionally a question) with N candidate choices, one of them
correct (SWAG, HellaSwag, PIQA, COPA, ARC style).

Each (context, choice) pair is one sequence — with a question, (context, question + " " + choice), as
transformers' SWAG example pairs sent1 with sent2 + ending — so an example is N sequences, padded to
(batch, choices, length). The encoder family's own multiple-choice head gives each sequence one score,
a softmax over an example's scores picks its answer; cross-entropy over the choices, accuracy, and an
export to the family's AutoModelForMultipleChoice.

All examples of a split have the same number of choices (a batch is one (batch, choices, length)
tensor, as transformers' *ForMultipleChoice models take it; padding choices would need a choice mask
that the exported model does not have): a different count is an error naming its file and line. The
model itself takes any number of choices, so the pipeline answers inputs with 2, 3 or 7 choices alike.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Sequence
from typing import Literal

from ..errors import UserError, at
from ..spec import TaskSpec, TextData, unread
from .base import InputError, TaskType, column, label_shares, rename, truncating, valid_unicode


class ChoiceData(TextData):
    """A multiple-choice task's data section: DataSpec's keys (text_column is the context, or the
    question when there is no separate context) and where the choices and the question are."""

    # one column holding the choices as a list (json/jsonl: a list; csv/tsv: a JSON list as text),
    # or a list of columns with one choice each (SWAG: [ending0, ending1, ending2, ending3])
    choices_column: str | int | list[str | int] = "choices"
    # optional: a question (or the start every choice continues: SWAG's sent2), put before each choice
    question_column: str | int | None = None
    # label_column holds the correct choice: auto = a whole number is its 0-based index, other text must
    # be one of the choices (a number that is also another choice's text is an error: say which)
    label_kind: Literal["auto", "index", "text"] = "auto"

    _no_pairs = unread("text_pair_column", why="does not apply to multiple_choice (each choice is paired with the "
                                                "context; a question column is question_column)")


class MultipleChoice(TaskType):
    name = "multiple_choice"

    class Spec(TaskSpec):
        type: Literal["multiple_choice"]
        data: ChoiceData

    metrics = ("accuracy",)
    head_kind = "choice"
    min_labels = 0  # choice positions, not names
    export_class = "AutoModelForMultipleChoice"
    pipeline_tag = "multiple-choice"
    input_fields = ("text", "choices")  # {"text": context, "choices": [...], "question"?: ...}
    optional_fields = ("question",)
    example_input = {"text": "The sky on a clear day is", "choices": ["blue", "loud", "salty"]}

    # ---------------------------------------------------------------- reading

    def example(self, row, spec):
        spec = spec if isinstance(spec, ChoiceData) else ChoiceData(**dict(spec))
        example = {"text": row.text(spec.text_column, "text_column"), "_line": row.line}
        if spec.question_column is not None:  # an empty question is none (HellaSwag's ctx_b can be empty)
            question = row.column(spec.question_column, "question_column")
            empty = question is None or isinstance(question, str) and not question.strip()
            example["question"] = "" if empty else row.text(spec.question_column)
        example["choices"] = choices = self.read_choices(row, spec)
        example["label"] = self.parse_label(row, row.column(spec.label_column, "label_column"), choices, spec)
        return example

    def read_choices(self, row, spec: ChoiceData) -> list[str]:
        column = spec.choices_column
        if isinstance(column, list):  # one choice per column
            if len(column) < 2:
                row.fail(f"data.choices_column names {len(column)} column(s); a multiple_choice example "
                         "needs at least 2 choices")
            return [row.text(c, "choices_column") for c in column]
        value = row.json_list(row.column(column, "choices_column"), "choices")  # csv/tsv: a JSON list as text
        if not isinstance(value, list):
            row.fail(f"column '{row.printable(column)}' must hold a list of choices, got {row.show(value)} "
                     "(several columns with one choice each: data.choices_column: [col1, col2, ...])")
        if len(value) < 2:
            row.fail(f"{len(value)} choice(s); a multiple_choice example needs at least 2")
        return [row.name(f"choice {i}", choice) for i, choice in enumerate(value)]

    def parse_label(self, row, label, choices: list[str], spec: ChoiceData) -> int:
        """The correct choice's 0-based index from its index or its text (data.label_kind)."""
        if label is None or (isinstance(label, str) and not label.strip()):
            row.fail(f"empty label in column '{row.printable(spec.label_column)}'")
        if isinstance(label, (bool, dict, list)):
            row.fail(f"label must be a choice's index or text, got {row.show(label)}")
        if spec.label_names:
            label = rename(row, str(label).strip(), label, spec)
        number = isinstance(label, (int, float))
        index = whole_number(label)
        text = str(label).strip()
        matches = [i for i, choice in enumerate(choices) if choice == text]
        kind = spec.label_kind
        if kind == "auto":
            if number or not matches:
                kind = "index"
            elif index is not None and 0 <= index < len(choices) and matches != [index]:
                row.fail(f"label {row.show(label)} is both the text of choice {matches[0]} and the index of "
                         "another choice; set data.label_kind: index or text")
            else:
                kind = "text"
        if kind == "text":
            if not matches:
                row.fail(f"label {row.show(text)} is not one of the choices ({row.show(choices, 120)})")
            if len(matches) > 1:
                row.fail(f"label {row.show(text)} matches choices {matches[0]} and {matches[1]}")
            return matches[0]
        if index is None:
            also = "" if spec.label_kind == "index" else " nor one of the choices"
            hint = ""
            if len(text) == 1 and text.isalpha() and text.isascii() and not spec.label_names:
                letters = [chr(ord("A" if text.isupper() else "a") + i) for i in range(min(len(choices), 26))]
                mapping = ", ".join(f'{letter}: "{i}"' for i, letter in enumerate(letters))
                hint = f" (letter labels map to indices with data.label_names: {{{mapping}}})"
            row.fail(f"label {row.show(label)} is not a choice index (0-{len(choices) - 1}){also}{hint}")
        if not 0 <= index < len(choices):
            hint = f" (it is the text of choice {matches[0]}: set data.label_kind: text)" if matches else ""
            row.fail(f"label {index} is out of range: {len(choices)} choices, indices 0-{len(choices) - 1}{hint}")
        return index

    def checked(self, examples, task, source):
        first = None
        for ex in examples:
            first = first or ex
            if len(ex["choices"]) != len(first["choices"]):
                raise UserError(f"{at(source, ex['_line'])}: {len(ex['choices'])} choices, but "
                                f"{at(source, first['_line'])} has {len(first['choices'])}: every example of a "
                                "split needs the same number of choices")
            yield ex


    # ---------------------------------------------------------------- tokenising and batches

    def encode(self, batch, tokenizer, max_length, label_ids, options=None):
        firsts, seconds, counts = [], [], []
        for i, context in enumerate(batch["text"]):
            question = batch["question"][i] if "question" in batch else None
            pairs = choice_pairs(context, question, batch["choices"][i])
            firsts += [p[0] for p in pairs]
            seconds += [p[1] for p in pairs]
            counts.append(len(pairs))
        enc = truncating(tokenizer, firsts, seconds, max_length=max_length)
        cut = [bool(e.overflowing) for e in enc.encodings]  # (a fast tokenizer: the only kind mtnlp loads)
        out = {key: [] for key in enc.keys()}
        out.update(labels=list(batch["label"]), length=[], truncated=[])
        start = 0
        for n in counts:
            for key in enc.keys():
                out[key].append(enc[key][start:start + n])
            out["length"].append(n * max(len(ids) for ids in enc["input_ids"][start:start + n]))
            out["truncated"].append(any(cut[start:start + n]))
            start += n
        return out

    def collate_inputs(self, rows, pad_id):
        from ..data import pad_sequences

        counts = {len(r["input_ids"]) for r in rows}
        if len(counts) > 1:
            raise ValueError(f"a multiple-choice batch needs the same number of choices in every row, got {sorted(counts)}")
        n = counts.pop()
        keys = [k for k in ("input_ids", "token_type_ids") if k in rows[0]]
        flat = pad_sequences([{k: r[k][j] for k in keys} for r in rows for j in range(n)], pad_id)
        return {k: v.view(len(rows), n, -1) for k, v in flat.items()}

    # ---------------------------------------------------------------- the head

    def num_outputs(self, labels):
        return 1  # a score per (context, choice) sequence

    def loss(self, logits, labels, spec):
        from torch.nn import functional as F

        return F.cross_entropy(logits.float(), labels)  # over an example's choices: (batch, choices)

    # ---------------------------------------------------------------- evaluation

    def predictions(self, logits, labels, spec):
        return logits.argmax(-1).tolist()

    def facts(self, dataset, labels):
        facts = label_shares([f"choice {i}" for i in column(dataset, "labels")])
        facts["choices"] = len(dataset[0]["input_ids"]) if len(dataset) else 0
        return facts

    # ---------------------------------------------------------------- pipeline and export

    def check_input(self, value):
        read_input(value)

    def pipeline(self, pipe, task, inputs, all_scores):
        import torch

        from ..modeling import to_device

        items = [read_input(value) for value in inputs]
        pairs = [choice_pairs(*item) for item in items]
        # inputs with the same number of choices share a batch (one (batch, choices, length) tensor)
        order = sorted(range(len(items)), key=lambda i: (len(pairs[i]), -sum(len(a) + len(b) for a, b in pairs[i])))
        results, truncated, start = [None] * len(items), [], 0
        while start < len(order):
            n = len(pairs[order[start]])
            idx = [i for i in order[start:start + max(1, pipe.batch_size // n)] if len(pairs[i]) == n]
            start += len(idx)
            enc = truncating(pipe.tokenizer, [a for i in idx for a, _ in pairs[i]], [b for i in idx for _, b in pairs[i]],
                             max_length=pipe.max_length, padding=True, padding_side="right", return_tensors="pt",
                             **({} if pipe.model.uses_token_type_ids else {"return_token_type_ids": False}))
            if getattr(enc, "encodings", None):
                cut = [bool(e.overflowing) for e in enc.encodings]
                truncated += [i for j, i in enumerate(idx) if any(cut[j * n:(j + 1) * n])]
            batch = {k: v.view(len(idx), n, -1) for k, v in enc.items()}
            with torch.no_grad(), pipe.precision.autocast():
                logits = pipe.model(**to_device(batch, pipe.device), task=task).logits.float().cpu()
            for row, i in zip(logits, idx):
                results[i] = self.answer(row, items[i][2], all_scores)
        return results, sorted(truncated)

    cut_effect = "a multiple-choice head reads only what fits of a (context, choice) pair"

    def answer(self, logits, choices: list[str], all_scores: bool) -> dict:
        """{"choice": index, "text": the choice, "score": its probability, "scores": every choice's}."""
        probs = logits.float().softmax(-1)
        best = int(logits.argmax())  # as evaluation decides (two logits a rounding apart can tie as probabilities)
        out = {"choice": best, "text": choices[best], "score": float(probs[best])}
        if all_scores:
            out["scores"] = [float(p) for p in probs]
        return out

    def export_config(self, config, spec):
        config.num_labels = 1  # the classifier's one score per choice

    def describe_labels(self, spec):
        return "(one of each input's choices)"


def choice_pairs(context: str, question: str | None, choices: list[str]) -> list[tuple[str, str]]:
    """The (first, second) text of each choice's sequence, as training and the pipeline tokenise them."""
    return [(context, f"{question} {choice}" if question else choice) for choice in choices]


def read_input(value) -> tuple[str, str | None, list[str]]:
    """(context, question or None, choices) of a pipeline input {"text", "choices", "question"?} (other
    keys, e.g. an id or the gold label, are ignored); a ValueError says what is wrong."""
    def text(what: str, field: str, v, numeric: bool = False) -> str:
        if numeric and isinstance(v, numbers.Real) and not isinstance(v, bool) and (
                isinstance(v, numbers.Integral) or math.isfinite(v)):  # (10**400 is no float)
            v = str(v)  # (NaN, a missing cell, is no choice "nan")
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"multiple-choice input: {what} must be a non-empty string, got {short(v)}", field)
        if not valid_unicode(v):
            raise InputError(f"multiple-choice input: {what} holds a lone surrogate (an invalid \\u escape)", field)
        return v.strip()

    if not isinstance(value, dict):
        raise ValueError(f"multiple-choice input: expected {{\"text\": ..., \"choices\": [...]}}, got {short(value)}")
    context = text('"text" (the context)', ".text", value.get("text"))
    question = value.get("question")  # empty: no question, as an empty question_column cell in training
    question = None if question is None or isinstance(question, str) and not question.strip() else text('"question"', ".question", question)
    choices = value.get("choices")
    if type(choices).__module__ == "numpy" and getattr(choices, "ndim", None) == 1:  # a pandas cell of a list column
        choices = choices.tolist()
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or len(choices) < 2:  # a list, a tuple
        raise InputError(f"multiple-choice input: \"choices\" must be a list of at least 2 choices, got {short(choices)}",
                         ".choices")
    return context, question, [text(f"choice {i}", f".choices[{i}]", c, numeric=True) for i, c in enumerate(choices)]


def short(value, limit: int = 60) -> str:
    """A value for an error message: as JSON where it is JSON, else repr; shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def whole_number(value) -> int | None:
    """A label as a choice index: an integer, an integral float, or text of digits; else None."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
        return int(value)
    return None

