"""type: tagging — a label per word (NER, POS); each word's first sub-token carries it.

Entity tags (IOB1, IOB2 or IOBES prefixes: B-, I-, E-, S-; BILOU's L- and U- as E- and S-) are read into
entities by conlleval's rules,
the same in evaluation (seqeval's default mode) and in the pipeline's spans: an I- or E- tag that does
not continue an entity of its type starts one, so an ill-formed sequence still has its entities."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..spec import TagData, TaskSpec
from .base import (TaskType, column, label_figures, label_name, label_shares, labelled_cross_entropy, softmax,
                   truncating)

ENTITY_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")
BILOU = {"L": "E", "U": "S"}  # spaCy's BILOU tags are IOBES under other names: Last = End, Unit = Single
IGNORE = -100  # positions the loss and the metrics skip: special tokens and later sub-tokens of a word


class Tagging(TaskType):
    name = "tagging"

    class Spec(TaskSpec):
        type: Literal["tagging"]
        data: TagData

    metrics = ("seqeval", "token_accuracy")
    metric_notes = dict.fromkeys(("precision", "recall", "f1"), "of whole entities (seqeval, conlleval's rules), "
                                                                 "micro-averaged over the entity types")
    prediction_columns = ("word_index", "tags", "truncated", "cut_start")
    token_level = True
    head_kind = "token"
    export_class = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"

    def default_metrics(self, labels):
        return ["seqeval"] if is_iob(labels) else ["token_accuracy"]

    config_keys = ("text_pair",)

    def model_spec(self, spec):
        """Trained on single sentences: a pair's first text, read beside a second one it never saw in
        training, would get tags that depend on that second text. The pipeline gives it single texts only."""
        return {"text_pair": False}

    def metrics_problem(self, metrics, labels):
        if "seqeval" in metrics and not is_iob(labels):
            shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
            lower = [label for label in labels if label[:2].upper() in ENTITY_PREFIXES and label[:1].islower()]
            return (f"seqeval scores entities, but the tags ({shown}) have no B-/I- prefixes: use token_accuracy"
                    + (f" (their prefixes are upper case: {lower[0]!r} as {lower[0][:1].upper() + lower[0][1:]!r}; "
                       "data.label_names can rename them)" if lower else ""))
        return None

    def label_set_problem(self, labels):
        """An entity tag set (some tag has a B-/I-/... prefix) with a tag that has none (MISC): seqeval reads a
        tag's first letter as its prefix (MISC: an entity of type ISC; ORG: outside), predict's spans leave it out."""
        bare = [label for label in labels if label != "O" and not label.startswith(ENTITY_PREFIXES)]
        if not is_iob(labels) or not bare:
            return None
        entity = next(label for label in labels if label.startswith(ENTITY_PREFIXES))
        return bare[0], (f"tag {bare[0]!r} has no B-/I- prefix, beside entity tags such as {entity!r}: seqeval would "
                         "misread it and predict's entity spans leave it out; tag it O, or as an entity "
                         f"(B-{bare[0]}, I-{bare[0]}; data.label_names can rename tags)")

    def example(self, row, spec):
        tokens, tags = row.column(spec.token_column or "tokens", "token_column"), row.column(spec.tag_column or "tags", "tag_column")
        if not (isinstance(tokens, list) and isinstance(tags, list)):
            row.fail("tagging needs lists of tokens and tags (json/jsonl)")
        if len(tokens) != len(tags):
            row.fail(f"{len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            row.fail("empty token list")
        return {"tokens": [row.name("token", t) for t in tokens],
                "tags": [label_name(row, t, spec, "tag") for t in tags], "_line": row.line}

    def labels_of(self, example):
        return example["tags"]

    def encode(self, batch, tokenizer, max_length, label_ids, options=None):
        enc = truncating(tokenizer, batch["tokens"], max_length=max_length, words=True)
        word_ids = [enc.word_ids(i) for i in range(len(batch["tags"]))]
        enc["labels"] = [align_labels(ids, [label_ids[t] for t in tags]) for ids, tags in zip(word_ids, batch["tags"])]
        # which word each labelled token starts: a word the tokenizer turns into nothing (a zero-width
        # space, a lone combining accent) has no token, and later words must not shift onto its tag
        enc["word_index"] = [first_words(ids) for ids in word_ids]
        enc["cut_start"] = [tokenizer.truncation_side == "left"] * len(word_ids)  # what a cut takes: the first words
        return enc

    def collate_labels(self, rows, width):
        import torch

        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, :len(r["labels"])] = torch.tensor(r["labels"])
        return labels

    def loss(self, logits, labels, spec):
        return labelled_cross_entropy(logits.float().flatten(0, 1), labels.flatten(), IGNORE)

    def loss_items(self, labels):
        return (labels != IGNORE).sum()  # the labelled tokens

    def predictions(self, logits, labels, spec, rows):
        """Per word, the label id of its first sub-token; -1 for a word max_length cut off; None for a word
        the tokenizer turns into nothing (see encode), which predict leaves out too."""
        return [per_word(words, row[gold != IGNORE].argmax(-1).tolist(), len(tags), cut, start)
                for row, gold, words, tags, cut, start in zip(logits, labels, rows["word_index"], rows["tags"],
                                                              rows["truncated"], rows["cut_start"])]

    def references(self, dataset):
        return column(dataset, "tags")

    def score(self, references, predictions, metrics, labels):
        from ..metrics import compute

        references, predicted = scored_words(references, predictions, labels)
        results = {}
        for name in metrics:
            if name == "seqeval":
                r = seqeval(references, predicted)
                results.update(precision=r["overall_precision"], recall=r["overall_recall"], f1=r["overall_f1"])
            else:  # token_accuracy
                ids = {label: i for i, label in enumerate(labels)}
                results[name] = compute(name, [ids.get(t, -1) for p in predicted for t in p],
                                        [ids[t] for g in references for t in g])
        return {k: float(v) for k, v in results.items()}

    def per_label(self, references, predictions, metrics, labels, spec):
        """Per entity type (seqeval's, by conlleval's rules) when the task is scored by seqeval, else per tag."""
        references, predicted = scored_words(references, predictions, labels)
        if "seqeval" in metrics:
            return {kind: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1"], "support": r["number"]}
                    for kind, r in sorted(seqeval(references, predicted).items()) if isinstance(r, dict)}
        ids = {label: i for i, label in enumerate(labels)}
        return label_figures([ids[t] for g in references for t in g], [ids.get(t, -1) for p in predicted for t in p],
                             labels)

    def baseline(self, train, target, labels):
        from collections import Counter

        top = labels.index(Counter(t for tags in column(train, "tags") for t in tags).most_common(1)[0][0])
        # scored on the words the model is scored on: a word with no token is left out (see predictions)
        return [[None if slot is None else top for slot in per_word(words, [top] * len(words), len(tags), cut, start)]
                for tags, words, cut, start in zip(column(target, "tags"), column(target, "word_index"),
                                                   column(target, "truncated"), column(target, "cut_start"))]

    def facts(self, dataset, labels):
        return label_shares([t for tags in column(dataset, "tags") for t in tags])

    def decode(self, logits, spec, all_scores, words=None, first_tokens=None, text=""):
        tags, scores = best_tags(logits, first_tokens, spec["labels"])
        if is_iob(spec["labels"]):
            return iob_spans(tags, scores, words, text)
        return [{"word": w, "tag": tag, "start": s, "end": e, "score": p}
                for (w, (s, e)), tag, p in zip(words, tags, scores)]

    def decode_words(self, logits, spec, words: list[str], first_tokens: list[tuple[int, int]]) -> list[dict]:
        """A words input's tags: one {"word", "tag", "score"} per given word, in order; a word with no token
        (one the tokenizer turns into nothing, or past max_length) has tag and score None."""
        out = [{"word": word, "tag": None, "score": None} for word in words]
        tags, scores = best_tags(logits, [position for position, _ in first_tokens], spec["labels"])
        for (_, word), tag, score in zip(first_tokens, tags, scores):
            out[word].update(tag=tag, score=score)
        return out


def best_tags(logits, positions: list[int], labels: list[str]) -> tuple[list[str], list[float]]:
    """The most probable tag, and its probability, at each of `positions` (words' first sub-tokens) of one
    input's logits."""
    first_logits = logits[positions]
    probs = softmax(first_logits)
    ids = first_logits.argmax(-1)  # as evaluation decides (two logits a rounding apart can tie as probabilities)
    return [labels[k] for k in ids.tolist()], probs[np.arange(len(ids)), ids].tolist()


def per_word(words: list[int], ids: list, count: int, cut: bool, cut_start: bool = False) -> list:
    """A sentence of `count` words as scoring reads it: `ids[k]` for word `words[k]` (the words that have a
    token, in token order), -1 for each word max_length cut off (`cut_start`: a tokenizer that truncates on the
    left cut the first words), None for a word the tokenizer turns into nothing."""
    predicted = [None] * count
    for word, i in zip(words, ids):
        predicted[word] = i
    if cut and cut_start:
        first = words[0] if words else count
        predicted[:first] = [-1] * first
    elif cut:
        last = words[-1] if words else -1
        predicted[last + 1:] = [-1] * (count - last - 1)
    return predicted


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Label the first sub-token of each word; IGNORE (-100) everywhere else."""
    out = [IGNORE] * len(word_ids)
    for position, word in first_subtokens(word_ids):
        out[position] = word_labels[word]
    return out


def first_subtokens(word_ids: list[int | None], sequence_ids: list[int | None] | None = None) -> list[tuple[int, int]]:
    """(token position, word) of each word's first sub-token (of the first text of a pair), in word
    order; a word with no token is not there."""
    out, previous = [], None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous and (sequence_ids is None or sequence_ids[position] == 0):
            out.append((position, word))
        previous = word
    return out


def first_words(word_ids: list[int | None]) -> list[int]:
    """The word of each word's first sub-token, in token order (the words that have a token)."""
    return [word for _, word in first_subtokens(word_ids)]


def scored_words(references: list, predictions: list, labels: list[str]) -> tuple[list, list]:
    """(gold tags, predicted tags) of the words a tagging task is scored on. A word max_length cut off (-1)
    counts as "O" (or wrong: None, without an O tag); a word with no token (None: a zero-width space, a lone
    accent) is left out, with its reference, as predict leaves it out."""
    fill = "O" if "O" in labels else None
    kept = [[k for k, i in enumerate(p) if i is not None] for p in predictions]
    references = [[g[k] for k in keep] for g, keep in zip(references, kept)]
    return references, [[labels[p[k]] if p[k] >= 0 else fill for k in keep] for p, keep in zip(predictions, kept)]


def seqeval(references: list, predicted: list) -> dict:
    from ..metrics import load_metric

    return load_metric("seqeval").compute(predictions=[[as_iobes(t or "O") for t in p] for p in predicted],
                                          references=[[as_iobes(t) for t in g] for g in references])


def as_iobes(tag: str) -> str:
    """A BILOU tag as its IOBES name (U-PER: S-PER), which seqeval and the span decoder read; others as they are."""
    prefix, dash, kind = tag.partition("-")
    return f"{BILOU[prefix]}-{kind}" if dash and prefix in BILOU else tag


def is_iob(labels: list[str]) -> bool:
    """Whether the tags are entity tags (IOB1, IOB2, IOBES or BILOU), which seqeval scores and predict gives as
    spans."""
    return any(label.startswith(ENTITY_PREFIXES) for label in labels)


def iobes_grouping_note(labels: list[str]) -> str | None:
    """What transformers' token-classification grouping does to a head trained on IOBES or BILOU tags."""
    if not any(label.startswith(("E-", "S-", "L-", "U-")) for label in labels):
        return None
    return ("its tags are IOBES or BILOU, and transformers' grouping reads only B- and I- tags: its entities differ from "
            "mtnlp predict's (B-PER E-PER as two, S-PER S-PER as one)")


def iob_spans(tags: list[str], scores: list[float], words, text: str) -> list[dict]:
    """Decode word tags (IOB1, IOB2, IOBES or BILOU) into entity spans with character offsets, by conlleval's
    rules as seqeval's default mode reads them: B- and S- start an entity, I- and E- continue one of
    their type (or else start one), E- and S- end it. Score = mean word score."""
    spans, current = [], None
    for tag, score, (_, (start, end)) in zip(tags, scores, words):
        prefix, _, kind = as_iobes(tag).partition("-")
        if prefix in ("I", "E") and current is not None and current["type"] == kind:
            current["end"] = end
            current["scores"].append(score)
        else:
            if current is not None:
                spans.append(current)
            current = None
            if tag.startswith(ENTITY_PREFIXES):
                current = {"type": kind, "start": start, "end": end, "scores": [score]}
        if prefix in ("E", "S") and current is not None:
            spans.append(current)
            current = None
    if current is not None:
        spans.append(current)
    return [{"type": s["type"], "text": text[s["start"]:s["end"]], "start": s["start"], "end": s["end"],
             "score": sum(s["scores"]) / len(s["scores"])} for s in spans]
