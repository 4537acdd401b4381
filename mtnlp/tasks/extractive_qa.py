"""type: extractive_qa — the answer to a question is a span of its context (SQuAD).

Data: SQuAD v1.1/v2.0 JSON ({"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}: one article row gives many
examples) or flat JSON/JSONL rows as in the hub's `squad` ({"id"?, "question", "context",
"answers": {"text": [...], "answer_start": [...]}}). Every answer_start must point at its answer's
text; questions without an answer need `allow_unanswerable: true` (SQuAD 2.0).

A context longer than model.max_length is read in overlapping windows (`doc_stride` tokens shared
by consecutive windows), each window one row: question + part of the context. The head gives a start
and an end logit per token (the family's own *ForQuestionAnswering layout); the targets are the
answer's first and last token, or the first token ([CLS]) for a window without the answer; the loss
is the mean of the start and end cross-entropies, as transformers computes it.

Decoding is transformers' question-answering post-processing: per window, a softmax over the context
tokens and the first token for start and end; a span's score is p(start) * p(end) (start <= end, at
most `max_answer_length` tokens), the span widened to whole words; the example's answer is its best
window's best span, or no answer ("") when unanswerable questions are allowed and the smallest
no-answer score p(start=[CLS]) * p(end=[CLS]) of its windows is higher. Evaluation and the pipeline
decode the same way; the metrics are SQuAD's exact match and F1 (mtnlp/metrics/squad.py).
"""

from __future__ import annotations

import bisect
import functools
import unicodedata
from collections import Counter
from typing import Literal

import regex

from ..errors import UserError, at
from ..spec import Count, TaskSpec, TextData, unread
from .base import SHOWN, InputError, TaskType, column, labelled_cross_entropy, valid_unicode

NULL = 0  # the position a window without the answer points at: the first token ([CLS], <s>)
CANDIDATES = 5  # spans per input in the pipeline's return_all_scores output


class QAData(TextData):
    """An extractive QA task's data section: the columns are SQuAD's own (question, context, answers)."""

    _not_qa = unread("text_column", "text_pair_column", "label_column", "label_names", "label_sep",
                     why="does not apply to extractive_qa, which reads SQuAD's question, context and answers")


class ExtractiveQA(TaskType):
    name = "extractive_qa"
    metrics = ("squad_f1", "squad_exact_match")
    head_kind = "span"
    min_labels = 0  # spans, not labels
    export_class = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    one_row_per_example = False  # a long context gives several windows
    carve_by = "context"  # a paragraph's questions on both sides would make validation optimistic
    prediction_columns = ("offsets", "context", "context_start")
    input_fields = ("question", "context")
    example_input = {"question": "Who founded the town?", "context": "The town was founded by Osric Fenn in 1620."}

    class Spec(TaskSpec):
        type: Literal["extractive_qa"]
        data: QAData
        doc_stride: Count | None = None  # tokens consecutive windows share; default: a third of model.max_length
        max_answer_length: Count = 30  # tokens
        allow_unanswerable: bool = False  # SQuAD 2.0: questions without an answer (is_impossible)

    def check_recipe(self, recipe, name, task, fail):
        from ..readers import SUFFIX_FORMATS

        max_length = recipe.model.max_length
        if task.doc_stride is None:  # recorded in the model's config (model_spec)
            task.doc_stride = default_stride(max_length)
            task.model_fields_set.discard("doc_stride")  # not the recipe's: evaluate keeps the model's (evaluated_as)
        elif recipe._training and task.doc_stride > (limit := stride_limit(max_length)):  # (evaluate: evaluated_as)
            fail(f"tasks.{name}.doc_stride", f"must be at most {limit} at model.max_length {max_length}, got "
                                            f"{task.doc_stride}: a window holds the question and more context than it "
                                            f"shares with the next{earlier_stride(task.doc_stride, max_length)}")
        data = task.data
        for split in ("train", "validation", "test"):
            source = getattr(data, split)
            if source is None or data.hub:
                continue
            fmt = data.format or (SUFFIX_FORMATS.get("." + source.rsplit(".", 1)[-1].lower())
                                  if isinstance(source, str) and "." in source else "lines")
            if isinstance(source, dict):
                fmt = "lines"
            if fmt not in (None, "json", "jsonl"):
                fail(f"tasks.{name}.data.{split}" if data.format is None else f"tasks.{name}.data.format",
                     f"an extractive_qa task reads SQuAD json or jsonl files, not {fmt}")

    # ---------------------------------------------------------------- reading

    def examples(self, row, spec):
        if "paragraphs" not in row.values:
            return [self.example(row, spec)]
        paragraphs = row.values["paragraphs"]  # a SQuAD article
        if not isinstance(paragraphs, list):
            row.fail(f"'paragraphs' must be a list of {{\"context\": ..., \"qas\": [...]}} objects, got "
                     f"{row.show(paragraphs)}")
        out = []
        for p, paragraph in enumerate(paragraphs):
            where = f"paragraph {p}"
            if not isinstance(paragraph, dict):
                row.fail(f"{where}: expected an object with \"context\" and \"qas\", got {row.show(paragraph)}")
            context = checked_context(row, paragraph.get("context"), where)
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                row.fail(f"{where}: 'qas' must be a list of questions, got {row.show(qas)}")
            for q, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    row.fail(f"{where}, question {q}: expected an object with \"question\" and \"answers\", "
                             f"got {row.show(qa)}")
                if "answers" not in qa and qa.get("is_impossible") is not True:  # a misspelt key is not "no answer"
                    keys = ", ".join(repr(k)[:40] for k in list(qa)[:8])
                    row.fail(f"{where}, question {q}: no 'answers' (SQuAD gives every question a list, [] for "
                             f"none; this one has: {keys})")
                out.append(question_example(row, qa, context, qa.get("answers", []), f"{where}, question {q}"))
        return out

    def example(self, row, spec):
        """A flat row: {"id"?, "question", "context", "answers": {"text": [...], "answer_start": [...]}}."""
        context = checked_context(row, row.column("context"), None)
        row.column("question")
        return question_example(row, row.values, context, row.column("answers"), None)

    def checked(self, examples, task, source):
        for ex in examples:
            if not ex["answers"] and not task.allow_unanswerable:
                raise UserError(f"{at(source, ex['_line'])}: question {ex['id']!r} has no answer; for unanswerable questions "
                                "(SQuAD 2.0) set allow_unanswerable: true in the task's section")
            yield ex


    def model_spec(self, spec):
        return {"doc_stride": spec.doc_stride, "max_answer_length": spec.max_answer_length,
                "allow_unanswerable": spec.allow_unanswerable}

    def evaluated_as(self, recipe, name, head, max_length):
        """The recipe's windows and decoding settings where it gives them and they differ from the model's (what
        it leaves out is the model's: a default of the recipe's own, e.g. a third of a max_length it does not set,
        is not). A doc_stride of the recipe's above what windows of `max_length` share is used as they share it,
        with a warning (an earlier mtnlp took more). The recipe's section gets the doc_stride used, which
        load_task tokenises the windows with, and allow_unanswerable, which reading checks the answers by."""
        spec = recipe.tasks[name]
        given = {key: value for key, value in self.model_spec(spec).items() if key in spec.model_fields_set}
        if given.get("doc_stride", 0) > (limit := stride_limit(max_length)):
            import warnings

            key = f"tasks.{name}.doc_stride"
            warnings.warn(f"{recipe.where(key)}: {key}: {given['doc_stride']} is more than windows of max_length "
                          f"{max_length} share: {limit} is used{earlier_stride(given['doc_stride'], max_length)}",
                          stacklevel=2)
            given["doc_stride"] = limit
        changed = {key: value for key, value in given.items() if head.get(key) != value}
        used = {**head, **changed} if changed else head
        spec.doc_stride = used.get("doc_stride")  # (None, a config written by hand: span_settings' default)
        spec.allow_unanswerable = used.get("allow_unanswerable", spec.allow_unanswerable)  # (reading checks it)
        return used

    # ---------------------------------------------------------------- tokenising

    def encode(self, batch, tokenizer, max_length, label_ids, options=None):
        """One row per window: model inputs, labels [start, end], and what evaluation reads (the
        example's id, the window's number, the part of the context it covers and where that starts, the gold
        answers, each context token's word offsets). Not the whole context per window: a long context's
        windows would hold it as many times as they are (quadratic in its length)."""
        enc, cut = windows(tokenizer, batch["question"], batch["context"], max_length,
                           span_settings(options or {}, max_length)[0])
        out = {key: enc[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in enc}
        out.update(labels=[], example=[], window=[], context=[], context_start=[], answers=[], offsets=[],
                   truncated=[])
        previous, window = None, 0
        bounds, words = window_words(enc, batch["context"])
        for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
            window = window + 1 if sample == previous else 0
            previous = sample
            sequence = enc.sequence_ids(i)
            texts, starts = batch["answers"][sample], batch["answer_starts"][sample]
            out["labels"].append(span_target(bounds[i], sequence, starts[0] if starts else None,
                                             len(texts[0]) if texts else 0))
            out["example"].append(batch["id"][sample])
            out["window"].append(window)
            spans = words[i]
            covered = [span for span in spans if span is not None]
            start, end = (min(s for s, _ in covered), max(e for _, e in covered)) if covered else (0, 0)
            out["context"].append(batch["context"][sample][start:end])
            out["context_start"].append(start)
            out["answers"].append(texts)
            out["offsets"].append(spans)
            out["truncated"].append(cut[sample])
        return out

    # ---------------------------------------------------------------- the head

    def num_outputs(self, labels):
        return 2  # start, end

    def loss(self, logits, labels, spec):
        """transformers' QA loss: the mean of the start and end cross-entropies (positions beyond the
        sequence are ignored)."""
        start, end = logits.float().unbind(-1)
        ignored = start.shape[1]
        first, last = labels[:, 0].clamp(0, ignored), labels[:, 1].clamp(0, ignored)
        return (labelled_cross_entropy(start, first, ignored) + labelled_cross_entropy(end, last, ignored)) / 2

    # ---------------------------------------------------------------- evaluation

    def predictions(self, logits, labels, spec, rows=None):
        """Per window: its best span's text and score, and its no-answer score (None unless allowed)."""
        out = []
        for k, window_logits in enumerate(logits):
            offsets, context, start = rows["offsets"][k], rows["context"][k], rows["context_start"][k]
            spans, null = window_spans(window_logits[:len(offsets)].float().numpy(), offsets,
                                       *span_settings(spec)[1:])
            best = spans[0] if spans else None
            out.append({"text": context[best[1] - start:best[2] - start] if best else "",
                        "score": best[0] if best else None, "null": null})
        return out

    def references(self, dataset):
        return [{"window": w, "answers": a} for w, a in zip(column(dataset, "window"), column(dataset, "answers"))]

    def score(self, references, predictions, metrics, labels):
        from ..metrics import compute

        answers, golds = [], []
        for refs, preds in per_example(references, predictions):
            spans = [p for p in preds if p["score"] is not None]
            best = max(spans, key=lambda p: p["score"]) if spans else None
            nulls = [p["null"] for p in preds if p["null"] is not None]
            empty = best is None or (nulls and min(nulls) > best["score"])
            answers.append("" if empty else best["text"])
            golds.append(refs[0]["answers"])
        return {name: compute(name, answers, golds) for name in metrics}

    def baseline(self, train, target, labels):
        """Always the most frequent training answer ("" if most questions have none)."""
        first = [a[0] if a else "" for a, w in zip(column(train, "answers"), column(train, "window")) if w == 0]
        top = Counter(first).most_common(1)[0][0]
        return [{"text": top, "score": 1.0, "null": None}] * len(target)

    def facts(self, dataset, labels):
        """Of questions, not windows: how many, the share with and without an answer (the larger first), how
        many max_length cut (a context is read in windows: only a question can be cut); and the windows, the
        questions whose context takes more than one and the answers no window holds whole."""
        windows_, answers = column(dataset, "window"), column(dataset, "answers")
        questions, cut = questions_cut(dataset)
        answered = sum(bool(answers[k]) for k in questions) / len(questions)
        larger, smaller = sorted([["answer", answered], ["no answer", 1 - answered]], key=lambda share: -share[1])
        return {"examples": len(questions), "unit": "questions", "labels": "-", "largest": larger, "smallest": smaller,
                "over_max_length": cut, "windows": len(windows_), "longer_than_window": sum(w == 1 for w in windows_),
                "answers_in_no_window": answers_in_no_window(dataset)[1]}

    def truncation_note(self, dataset, max_length, options=None):
        questions, cut = questions_cut(dataset)
        answered, lost = answers_in_no_window(dataset)
        notes = []
        if cut:
            notes.append(f"{cut:,} of {len(questions):,} questions were cut to fit max_length={max_length} tokens (a "
                         "question takes at most three quarters of a window's tokens past doc_stride, so that the "
                         "windows of a long context move on by at least a quarter)")
        if lost:
            stride = min(span_settings(options or {}, max_length)[0], stride_limit(max_length))  # (as windows())
            notes.append(f"{lost:,} of {answered:,} answers (a question's first) fit in no window whole (longer than "
                         f"doc_stride={stride} tokens, they cross a window boundary): all their windows target no "
                         "answer, and a prediction can only match another gold answer of the question, if it has "
                         "one; raise doc_stride or max_length")
        return "; ".join(notes) or None

    # ---------------------------------------------------------------- pipeline and export

    def check_input(self, value):
        for field in self.input_fields:
            if not isinstance(value[field], str) or not value[field].strip():
                raise InputError(f'"{field}" must be a non-empty string', f".{field}")

    def pipeline(self, pipe, task, inputs, all_scores):
        """{"answer", "start", "end", "score"} per {"question", "context"}: character offsets into the
        context (no answer: "", 0, 0 and the no-answer score); all_scores adds the best `candidates`."""
        import torch

        from ..modeling import to_device

        stride, max_answer_length, allow_unanswerable = span_settings(pipe.tasks[task], pipe.max_length)
        contexts = [value["context"] for value in inputs]
        questions = [value["question"].strip() for value in inputs]  # as training read them
        enc, cut = windows(pipe.tokenizer, questions, contexts, pipe.max_length, stride)
        words = window_words(enc, contexts)[1]
        keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in enc]
        found = [[] for _ in inputs]  # per input: its windows' spans (score, start, end)
        nulls = [[] for _ in inputs]
        topk = CANDIDATES if all_scores else 1
        for start in range(0, len(enc["input_ids"]), pipe.batch_size):
            rows = range(start, min(start + pipe.batch_size, len(enc["input_ids"])))
            batch = pipe.tokenizer.pad([{key: enc[key][i] for key in keys} for i in rows], padding_side="right",
                                       return_tensors="pt")  # as training pads
            with torch.no_grad(), pipe.precision.autocast():
                logits = pipe.model(**to_device(dict(batch), pipe.device), task=task).logits.float().cpu()
            for j, i in enumerate(rows):
                sample = enc["overflow_to_sample_mapping"][i]
                window = logits[j, :len(words[i])]  # without the padding
                spans, null = window_spans(window.numpy(), words[i], max_answer_length, allow_unanswerable, topk)
                found[sample] += spans
                if null is not None:
                    nulls[sample].append(null)
        out = []
        for k, context in enumerate(contexts):
            best = {}
            for score, s, e in sorted(found[k], key=lambda span: -span[0]):
                best.setdefault((s, e), score)  # a span in two overlapping windows: its better score
            answers = [{"answer": context[s:e], "start": s, "end": e, "score": score} for (s, e), score in best.items()]
            if nulls[k]:  # allow_unanswerable: no answer is a candidate with the smallest no-answer score
                answers.append({"answer": "", "start": 0, "end": 0, "score": min(nulls[k])})
                answers.sort(key=lambda a: -a["score"])  # stable: a span wins a tie with no answer
            if not answers:  # an empty context
                answers = [{"answer": "", "start": 0, "end": 0, "score": 0.0}]
            result = dict(answers[0])
            if all_scores:
                result["candidates"] = answers[:CANDIDATES]
            out.append(result)
        return out, [k for k, was_cut in enumerate(cut) if was_cut]

    cut_effect = ("a question of more than three quarters of a window's tokens past doc_stride is cut (so that a "
                  "long context's windows move on)")

    def export_config(self, config, spec):
        config.num_labels = 2
        config.id2label, config.label2id = {0: "start", 1: "end"}, {"start": 0, "end": 1}
        # transformers has no fields for them: kept for whoever windows and decodes as training did (the
        # tokenizer's model_max_length is the max_length)
        config.update({key: spec[key] for key in ("doc_stride", "max_answer_length", "allow_unanswerable") if key in spec})

    def describe_labels(self, spec):
        return "(answer spans)"


def default_stride(max_length: int) -> int:
    return min(max_length // 3, stride_limit(max_length))


def earlier_stride(stride: int, max_length: int) -> str:
    """What an mtnlp before 2026-12-08 did with a doc_stride above stride_limit (a note for its recipes)."""
    limit = stride_limit(max_length)
    return (f" (an mtnlp before 2026-12-08 took up to {(max_length - 1) // 2} and read windows sharing {limit}: give "
            f"{limit} for the same windows)" if 2 * stride < max_length else "")


def stride_limit(max_length: int) -> int:
    """The largest doc_stride windows() uses at `max_length` for an encoder whose pairs take up to 4 special
    tokens (RoBERTa's; BERT's 3): less than half of a window's tokens."""
    return max(0, (max_length - 4) // 2 - 1)


def span_settings(spec: dict, max_length: int = 0) -> tuple[int, int, bool]:
    """A QA head's (doc_stride, max_answer_length, allow_unanswerable) from its config entry (model_spec),
    with the recipe's defaults for what it lacks (a config written by hand)."""
    defaults = ExtractiveQA.Spec.model_fields
    return (spec.get("doc_stride") or default_stride(max_length),
            spec.get("max_answer_length", defaults["max_answer_length"].default),
            spec.get("allow_unanswerable", defaults["allow_unanswerable"].default))


# ---------------------------------------------------------------- reading


def checked_context(row, context, where: str | None) -> str:
    """A context as it is (not stripped: answer_start counts its characters)."""
    at = f"{where}: " if where else ""
    if not isinstance(context, str):
        row.fail(f"{at}'context' must be text, got {row.show(context)}")
    if not context.strip():
        row.fail(f"{at}empty context")
    if not valid_unicode(context):
        row.fail(f"{at}the context holds a lone surrogate (an invalid \\u escape)")
    return context


def question_example(row, qa: dict, context: str, answers, position: str | None) -> dict:
    """The example of one question: {"id", "question", "context", "answers": [texts], "answer_starts"}."""
    qid = qa.get("id")
    if qid is not None and (isinstance(qid, (dict, list, bool)) or not str(qid).strip()):
        row.fail(f"{position + ': ' if position else ''}question id must be a string or a number, got {row.show(qid)}")
    name = f"question {str(qid)!r}" if qid is not None else (position or "question")
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        row.fail(f"{name}: 'question' must be a non-empty text, got {row.show(question)}")
    if not valid_unicode(question):
        row.fail(f"{name}: the question holds a lone surrogate (an invalid \\u escape)")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        row.fail(f"{name}: 'is_impossible' must be true or false, got {row.show(impossible)}")
    pairs = answer_pairs(row, answers, name)
    if impossible and pairs:
        row.fail(f"{name}: is_impossible is true, but the question has {len(pairs)} answer(s)")
    for k, (text, start) in enumerate(pairs):
        what = f"{name}: answer {k}" if len(pairs) > 1 else name
        if not isinstance(text, str) or shown_part(text) is None:
            row.fail(f"{what}: the answer text must be a string with a visible character, got {row.show(text)}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            row.fail(f"{what}: answer_start must be a character position (an integer >= 0), got {row.show(start)}")
        found = context[start:start + len(text)]
        if found != text:
            elsewhere = context.find(text)
            hint = (f" (the answer's text starts at {elsewhere})" if elsewhere >= 0
                    else " (the answer's text is not in the context)")
            row.fail(f"{what}: answer_start {start} points at {row.show(found)}, not at the answer "
                     f"{row.show(text)}{hint}")
    # whitespace around an answer would widen its span by a neighbouring word: strip it, as SQuAD tooling does, and
    # invisible characters (a zero-width space, soft hyphen, BOM, LRM), which the tokenizer may give no token; as
    # decoding trims a predicted answer (whole_words): by graphemes (❤️ keeps its U+FE0F, a flag its tags)
    pairs = [(text[a:b], start + a) for text, start in pairs for a, b in [shown_part(text)]]
    fallback = str(row.line) if position is None else f"{row.line}, {position}"
    return {"id": str(qid) if qid is not None else fallback, "question": question.strip(), "context": context,
            "answers": [text for text, _ in pairs], "answer_starts": [start for _, start in pairs], "_line": row.line}


def shown_part(text: str) -> tuple[int, int] | None:
    """Where `text` shows something: from its first grapheme with a character that shows to the end of its last
    one; None if none does."""
    shown = [m.span() for m in regex.finditer(r"\X", text) if SHOWN.search(m.group())]
    return (shown[0][0], shown[-1][1]) if shown else None


def answer_pairs(row, answers, name: str) -> list[tuple]:
    """(text, answer_start) pairs from SQuAD's [{"text", "answer_start"}] or the hub's {"text": [...],
    "answer_start": [...]}."""
    if isinstance(answers, dict):
        texts, starts = answers.get("text"), answers.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            row.fail(f"{name}: 'answers' must be {{\"text\": [...], \"answer_start\": [...]}} with lists of the "
                     f"same length, got {row.show(answers)}")
        return list(zip(texts, starts))
    if not isinstance(answers, list):
        row.fail(f"{name}: 'answers' must be a list of {{\"text\", \"answer_start\"}} objects, got {row.show(answers)}")
    pairs = []
    for answer in answers:
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            row.fail(f"{name}: each answer must be an object {{\"text\": ..., \"answer_start\": ...}}, "
                     f"got {row.show(answer)}")
        pairs.append((answer["text"], answer["answer_start"]))
    return pairs


# ---------------------------------------------------------------- windows and targets


def windows(tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int):
    """Question + context in windows of max_length tokens, consecutive windows sharing `stride`
    context tokens (truncation only_second, overflowing tokens kept). A question is cut to at most three
    quarters of a window's tokens past the `stride` it shares (the second value: which were cut): a window
    moves on by what its question leaves of them, so a longer question made about one window per context token."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    stride = min(stride, stride_limit(max_length), max(0, (max_length - special) // 2 - 1))  # (a shorter max_length
    # than the model's, in evaluate or the pipeline; the last: a tokenizer whose pairs take more than 4 special tokens)
    room = max_length - special - stride  # a window's tokens past the stride it shares
    limit = room - max(1, room // 4)
    questions, cut = list(questions), [False] * len(questions)
    lengths = tokenizer(questions, add_special_tokens=False)["input_ids"] if questions else []
    for i in (i for i, ids in enumerate(lengths) if len(ids) > limit):
        keep, cut[i] = limit, True
        while keep > 0:  # cut after the limit-th token (re-tokenised, a cut text may rarely come out longer)
            offsets = tokenizer(questions[i], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            if len(offsets) <= limit:
                break
            questions[i] = questions[i][:offsets[min(keep, len(offsets)) - 1][1]]
            keep -= 1
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    return enc, cut


def span_target(offsets, sequence_ids, start_char: int | None, length: int) -> list[int]:
    """[first, last] token of the answer in this window, or [NULL, NULL] when the window does not hold
    all of it (or there is no answer)."""
    context = [k for k, s in enumerate(sequence_ids) if s == 1]
    if start_char is None or not context:
        return [NULL, NULL]
    end_char = start_char + length
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return [NULL, NULL]
    # the first token that reaches past the answer's start, the last that starts before its end (run_qa's last
    # token starting at or before it and first ending at or after it give start > end where several tokens share
    # one character's offsets: byte-level BPE's bytes of an emoji or 京, XLM-R's bare "▁" before a character)
    start = next((k for k in context if offsets[k][1] > start_char), last)
    end = next((k for k in reversed(context) if offsets[k][0] < end_char), first)
    return [start, end] if start <= end else [NULL, NULL]


def context_offsets(offsets, sequence_ids, context: str) -> list[tuple[int, int]]:
    """Window tokens' character offsets as an answer's bounds: a context token's end runs on over the
    combining marks after it (a tokenizer that strips accents leaves them out: José written e + U+0301
    would end at "Jose", ❤️ lose its U+FE0F), and whitespace a token holds is left out (byte-level BPE's
    leading space, a token of spaces alone, which then bounds no answer)."""
    starts, ends = mark_runs(context)
    out = []
    for s, (a, b) in zip(sequence_ids, offsets):
        if s == 1:
            run = bisect.bisect_right(starts, b) - 1  # the run of marks at b, if any
            if run >= 0 and b < ends[run]:
                b = ends[run]
            while a < b and context[a].isspace():
                a += 1
            while b > a and context[b - 1].isspace():
                b -= 1
        out.append((a, b))
    return out


@functools.lru_cache(maxsize=32)
def mark_runs(context: str) -> tuple[list[int], list[int]]:
    """Where the context's runs of combining marks start and end: found once per context, not per token of
    each of its windows (a run of marks that a byte-level BPE makes many tokens of was rescanned by each)."""
    runs = [m.span() for m in _MARKS.finditer(context)]
    return [a for a, _ in runs], [b for _, b in runs]


_MARKS = regex.compile(r"[\p{Mn}\p{Me}]+")


def window_words(enc, contexts: list[str]) -> tuple[list[list], list[list]]:
    """(bounds, words) per window of `enc` (windows()): its tokens' answer bounds (context_offsets) and, per token,
    the character span [start, end] of its whole word in its question's context (None for the question, special
    and padding tokens, and a word of nothing shown). A span from token s to token e is
    context[words[s][0]:words[e][1]]: whole words, as transformers' QA pipeline answers (align_to_words), with a
    word's extent taken over every window of its question (a window's edge may cut it: "Os" of "Osric")."""
    samples = enc["overflow_to_sample_mapping"]
    sequences = [enc.sequence_ids(i) for i in range(len(samples))]
    word_ids = [enc.word_ids(i) for i in range(len(samples))]
    bounds = [context_offsets(enc["offset_mapping"][i], sequences[i], contexts[sample]) for i, sample in enumerate(samples)]
    extent = {sample: {} for sample in samples}  # sample -> word id -> (start, end) over the sample's windows
    for i, sample in enumerate(samples):
        for s, w, (a, b) in zip(sequences[i], word_ids[i], bounds[i]):
            if s == 1 and w is not None and a < b:
                lo, hi = extent[sample].get(w, (a, b))
                extent[sample][w] = (min(lo, a), max(hi, b))
    whole = {sample: whole_words(words, contexts[sample]) for sample, words in extent.items()}
    words = [[whole[sample].get(w) if s == 1 else None for s, w in zip(sequences[i], word_ids[i])]
             for i, sample in enumerate(samples)]
    return bounds, words


def whole_words(extent: dict[int, tuple[int, int]], context: str) -> dict[int, list[int] | None]:
    """The tokenizer's words (id -> character span) as an answer's words: widened to whole graphemes (a flag's tag
    characters, a closing ZWJ), joined where a combining mark separates them (a byte-level BPE makes José written
    e + U+0301, or Thai's vowel signs, words of their own), without the graphemes at their edges that show nothing
    (whitespace, control and invisible characters: a word of only those is None)."""
    starts = grapheme_starts(context)

    def shown(k: int) -> bool:  # whether grapheme k shows anything
        return context[starts[k]].isalnum() or SHOWN.search(context, starts[k], starts[k + 1]) is not None

    def grapheme(position: int) -> int:  # the grapheme holding the character at `position`
        return position if single else bisect.bisect_right(starts, position) - 1

    single = isinstance(starts, range)  # each character a grapheme of its own
    groups = []  # [start, end, word ids], in the context's order
    for w, (a, b) in sorted(extent.items(), key=lambda item: item[1]):
        marks = a
        while marks < b and is_mark(context[marks]):
            marks += 1
        if a < marks < b and not context[marks].isalnum():  # a byte-level BPE word of the marks ending the word
            b = marks  # before and punctuation (है। as ह + ै।): the marks join that word, the punctuation is none
        a, b = starts[grapheme(a)], starts[grapheme(b - 1) + 1]
        if groups and (a < groups[-1][1] or a == groups[-1][1] and joined_at(context, a)):
            groups[-1][1] = max(groups[-1][1], b)
            groups[-1][2].append(w)
        else:
            groups.append([a, b, [w]])
    out = {}
    for a, b, ids in groups:
        first, last = grapheme(a), grapheme(b - 1)
        while first <= last and not shown(first):
            first += 1
        while last >= first and not shown(last):
            last -= 1
        span = [starts[first], starts[last + 1]] if first <= last else None
        for w in ids:
            out[w] = span
    return out


def joined_at(context: str, i: int) -> bool:
    """Whether two words meeting at character i are one: a combining mark starts the second, or ends the first
    with a letter or digit next (Nũ|̃|ñez); not at punctuation (José|.)."""
    return i < len(context) and (is_mark(context[i]) or i > 0 and is_mark(context[i - 1]) and context[i].isalnum())


def is_mark(character: str) -> bool:
    return unicodedata.category(character).startswith("M")


@functools.lru_cache(maxsize=32)
def grapheme_starts(context: str):
    """Where each of the context's grapheme clusters starts, then len(context); found once per context, not per
    window (a range where no character joins another: most text)."""
    if not _JOINING.search(context):
        return range(len(context) + 1)
    return [m.start() for m in regex.finditer(r"\X", context)] + [len(context)]


# a character a grapheme cluster may hold beside another (UAX 29): CR LF, marks, ZWJ, regional indicators, Hangul jamo
_JOINING = regex.compile(r"[\r\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}\p{GCB=Prepend}\p{GCB=Regional_Indicator}"
                         r"\p{GCB=L}\p{GCB=V}\p{GCB=T}\p{GCB=LV}\p{GCB=LVT}]")


def questions_cut(dataset) -> tuple[list[int], int]:
    """A tokenised split's rows that are a question's first window, and how many of those questions
    max_length cut (a context is read in windows: only a question can be cut)."""
    questions = [k for k, w in enumerate(column(dataset, "window")) if w == 0]
    truncated = column(dataset, "truncated")
    return questions, sum(bool(truncated[k]) for k in questions)


def answers_in_no_window(dataset) -> tuple[int, int]:
    """How many of a tokenised split's questions have an answer, and how many of those answers no window holds
    whole (each of its windows targets no answer, as transformers' run_qa makes it)."""
    windows_, answers, labels = column(dataset, "window"), column(dataset, "answers"), column(dataset, "labels")
    bounds = [k for k, w in enumerate(windows_) if w == 0] + [len(windows_)]
    answered = [(a, b) for a, b in zip(bounds, bounds[1:]) if answers[a]]
    return len(answered), sum(all(label == [NULL, NULL] for label in labels[a:b]) for a, b in answered)


def window_spans(logits, offsets: list, max_answer_length: int, allow_null: bool, topk: int = 1):
    """The best `topk` distinct spans (of whole words) of one window as (score, start char, end char), best
    first, and its no-answer score (None unless allow_null). `logits`: (tokens, 2) start and end logits.

    transformers' QA post-processing (select_starts_ends / decode_spans): a softmax over the context
    tokens and the first token, score p(start) * p(end) with start <= end < start + max_answer_length."""
    import numpy as np

    allowed = np.array([o is not None for o in offsets], dtype=bool)
    if not allowed.any():
        return [], None
    normalised = allowed.copy()
    normalised[NULL] = True
    probs = []
    for end_point in (0, 1):  # start, end
        x = np.where(normalised, logits[:, end_point].astype(np.float64), -10000.0)
        x = np.exp(x - x.max())
        probs.append(x / x.sum())
    start, end = probs
    null = float(start[NULL] * end[NULL]) if allow_null else None
    start, end = np.where(allowed, start, 0.0), np.where(allowed, end, 0.0)
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_length - 1)
    flat = scores.ravel()
    positive = np.flatnonzero(flat > 0)
    order = [int(np.argmax(flat))] if topk == 1 else positive[np.argsort(-flat[positive], kind="stable")].tolist()
    spans, seen = [], set()
    for index in order:  # token spans widened to the same words are one span: its best score
        s, e = divmod(index, scores.shape[1])
        if len(spans) == topk or flat[index] <= 0:
            break
        if allowed[s] and allowed[e] and (offsets[s][0], offsets[e][1]) not in seen:
            seen.add((offsets[s][0], offsets[e][1]))
            spans.append((float(flat[index]), offsets[s][0], offsets[e][1]))
    return spans, null


def per_example(references: list[dict], predictions: list):
    """(references, predictions) of each example's windows: consecutive rows, a window 0 starts the next."""
    group_refs, group_preds = [], []
    for ref, pred in zip(references, predictions):
        if ref["window"] == 0 and group_refs:
            yield group_refs, group_preds
            group_refs, group_preds = [], []
        group_refs.append(ref)
        group_preds.append(pred)
    if group_refs:
        yield group_refs, group_preds
