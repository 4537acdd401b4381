"""A task's data: label alignment with the real MiniLM tokenizer, load_task, the tokenisation cache, collate."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from conftest import DATA, minilm_path
from mtnlp.cache import cache_dir
from mtnlp.data import collate, load_task
from mtnlp.tasks.tagging import align_labels
from mtnlp.errors import UserError
from conftest import read_examples
from mtnlp.recipe import load_recipe
from mtnlp.spec import DataSpec

NER_LABELS = ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]


def new_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def tokenizer():
    return new_tokenizer()


class RefusingTokenizer:
    """Wraps a tokenizer (same vocabulary, same fingerprint) but fails if asked to tokenise."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, *args, **kwargs):
        raise AssertionError("tokenizer called: the tokenisation cache was not used")


def write_recipe(tmp_path, tasks, seed=42, name="recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "t", "tasks": tasks, "training": {"seed": seed}}), encoding="utf-8")
    return path


def tasks_spec(**extra):
    return {
        "ner": {"type": "tagging",
                "data": {"train": str(DATA / "ner_sample.conll"), "validation": str(DATA / "ner_sample_dev.conll")}},
        "question": {"type": "classification",
                     "data": {"train": str(DATA / "trec_sample.csv"), "validation_from_train": 0.2,
                              "text_column": "question"}},
        **extra,
    }


def load(tmp_path, task, tokenizer, max_length=64, seed=42, tasks=None, **kwargs):
    recipe = load_recipe(write_recipe(tmp_path, tasks or tasks_spec(), seed=seed, name=f"r{seed}.yaml"))
    return load_task(recipe, task, recipe.tasks[task], tokenizer, max_length, **kwargs)


# ---------------------------------------------------------------- align_labels


def test_align_labels_pure():
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, -100, 6, 7, -100, -100]
    assert align_labels([None, None], []) == [-100, -100]
    # a sentence pair: word 0 of the second sequence follows a special token and is labelled again
    assert align_labels([None, 0, 1, None, 0, 1, None], [3, 4]) == [-100, 3, 4, -100, 3, 4, -100]


def test_tagging_words_without_a_token_keep_later_words_aligned(tokenizer):
    """A zero-width space or a soft hyphen is a word the tokenizer turns into nothing: it gets no
    prediction and is left out of scoring, as predict leaves it out; the words after it are scored
    against their own tags. A word max_length cuts off counts as O."""
    import datasets
    import torch

    from mtnlp.tasks import task_type

    kind, labels = task_type("tagging"), ["O", "B-PER", "B-LOC", "I-LOC"]
    batch = {"tokens": [["\u200b", "Anna", "\u00ad", "Paris", "x"], ["Anna", "x"], ["New", "\u200b", "York", "\u200b"],
                        ["x"] * 20 + ["Paris"]],
             "tags": [["B-LOC", "B-PER", "O", "B-LOC", "O"], ["B-PER", "O"], ["B-LOC", "I-LOC", "I-LOC", "O"],
                      ["O"] * 20 + ["B-LOC"]]}
    enc = kind.encode(batch, tokenizer, 16, {label: i for i, label in enumerate(labels)})
    assert enc["word_index"][:3] == [[1, 3, 4], [0, 1], [0, 2]]
    width = max(map(len, enc["labels"]))
    gold = kind.collate_labels([{"labels": row} for row in enc["labels"]], width)
    logits = torch.nn.functional.one_hot(gold.clamp(min=0), len(labels)).float()  # a perfect model
    rows = {"word_index": enc["word_index"], "tags": batch["tags"], "truncated": [False, False, False, True],
            "cut_start": [False] * 4}
    predictions = kind.predictions(logits, gold, {}, rows)
    assert predictions[:3] == [[None, 1, None, 2, 0], [1, 0], [2, None, 3, None]]
    assert predictions[3] == [0] * 14 + [-1] * 7  # 14 words fit in 16 tokens
    scores = kind.score(batch["tags"][:3], predictions[:3], ["token_accuracy", "seqeval"], labels)
    assert scores["token_accuracy"] == 1.0 and scores["f1"] == 1.0  # New York is one entity, as predict gives it
    scores = kind.score(batch["tags"], predictions, ["seqeval"], labels)
    assert scores["recall"] == 4 / 5 and scores["precision"] == 1.0  # the cut-off Paris is missed
    # the majority baseline is scored on the same words: those with no token left out
    target = datasets.Dataset.from_dict({"tags": batch["tags"], "word_index": enc["word_index"],
                                         "truncated": rows["truncated"], "cut_start": rows["cut_start"]})
    train = datasets.Dataset.from_dict({"tags": [["O", "O"]]})
    baseline = kind.baseline(train, target, labels)
    assert [[k for k, p in enumerate(row) if p is None] for row in baseline] == [[0, 2], [], [1, 3], []]
    assert kind.score(batch["tags"], baseline, ["token_accuracy"], labels)["token_accuracy"] == 22 / 28


def test_align_labels_with_minilm_word_pieces(tokenizer):
    words = ["Kowalczyk", "joined", "Northwind", "unaffable", "."]
    tags = [3, 8, 2, 1, 8]
    enc = tokenizer(words, is_split_into_words=True)
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    word_ids = enc.word_ids()
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    # several words really split into several word pieces
    multi = [w for w in range(len(words)) if word_ids.count(w) > 1]
    assert set(multi) >= {0, 2, 3}
    assert pieces[1:5] == ["ko", "##wal", "##cz", "##yk"]
    labels = align_labels(word_ids, tags)
    assert len(labels) == len(pieces)
    assert labels == [-100, 3, -100, -100, -100, 8, 2, -100, 1, -100, -100, 8, -100]
    for i, (piece, label) in enumerate(zip(pieces, labels)):
        if piece in ("[CLS]", "[SEP]") or piece.startswith("##"):
            assert label == -100, (i, piece)
        else:
            assert label == tags[word_ids[i]], (i, piece)
    assert [label for label in labels if label != -100] == tags


def test_tagging_labels_in_tokenised_dataset(tmp_path, tokenizer):
    data = load(tmp_path, "ner", tokenizer)
    assert data.labels == NER_LABELS
    examples = read_examples(DATA / "ner_sample.conll", DataSpec(), "tagging")
    train = data.splits["train"]
    assert len(train) == len(examples) == 25
    split_words = 0
    for row, ex in zip(train, examples):
        enc = tokenizer(ex["tokens"], is_split_into_words=True, truncation=True, max_length=64)
        assert row["input_ids"] == enc["input_ids"]
        assert row["length"] == len(row["input_ids"])
        assert [label for label in row["labels"] if label != -100] == [NER_LABELS.index(t) for t in ex["tags"]]
        assert row["labels"][0] == -100 and row["labels"][-1] == -100
        split_words += len(row["input_ids"]) - 2 > len(ex["tokens"])
    assert split_words > 5


# ---------------------------------------------------------------- load_task


def test_label_set_comes_from_train(tmp_path, tokenizer):
    text = (DATA / "ner_sample.conll").read_text(encoding="utf-8").split("\n")
    tags = {line.split()[-1] for line in text if line.strip() and not line.startswith("-DOCSTART-")}
    data = load(tmp_path, "ner", tokenizer)
    assert data.type == "tagging" and data.name == "ner"
    assert data.labels == sorted(tags) == NER_LABELS
    assert set(data.splits) == {"train", "validation"} and len(data.splits["validation"]) == 8

    question = load(tmp_path, "question", tokenizer)
    assert question.labels == sorted({ex["label"] for ex in read_examples(
        DATA / "trec_sample.csv", DataSpec(text_column="question"), "classification")})
    train = question.splits["train"]
    assert all(0 <= y < len(question.labels) for y in train["labels"])
    assert [question.labels[y] for y in train["labels"]] == train["label"]


def test_numeric_labels_sorted_as_numbers(tmp_path, tokenizer):
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                      "text_column": "sentence"}}}
    data = load(tmp_path, "s", tokenizer, tasks=tasks)
    assert data.labels == ["0", "1"]
    assert data.splits["train"]["labels"] == [int(x) for x in data.splits["train"]["label"]]


def test_unseen_label_in_validation(tmp_path, tokenizer):
    bad = tmp_path / "dev.csv"
    bad.write_text("question,label\nWho wrote Hamlet ?,HUM\nWhat is 2+2 ?,MATH\n", encoding="utf-8")
    tasks = {"q": {"type": "classification", "data": {"train": str(DATA / "trec_sample.csv"),
                                                      "validation": str(bad), "text_column": "question"}}}
    with pytest.raises(UserError) as info:
        load(tmp_path, "q", tokenizer, tasks=tasks)
    message = str(info.value)
    assert f"{bad}:3:" in message and "'MATH'" in message and "training split" in message


def test_unseen_tag_in_tagging_validation(tmp_path, tokenizer):
    bad = tmp_path / "dev.conll"
    bad.write_text("Paris NNP B-NP B-LOC\nis VBZ B-VP O\n\nThe DT B-NP O\nWorld NNP I-NP B-EVENT\n"
                   "Cup NNP I-NP I-EVENT\n", encoding="utf-8")
    tasks = {"ner": {"type": "tagging", "data": {"train": str(DATA / "ner_sample.conll"), "validation": str(bad)}}}
    with pytest.raises(UserError) as info:
        load(tmp_path, "ner", tokenizer, tasks=tasks)
    assert str(info.value).startswith(f"{bad}:4: label 'B-EVENT' (word 2 of the sentence, 'World') does not occur")


@pytest.mark.parametrize("bare", ["MISC", "ORG"])  # seqeval read MISC as an entity of type ISC, ORG as outside
def test_a_tag_without_a_prefix_beside_entity_tags_is_refused_where_it_first_is(tmp_path, tokenizer, bare):
    train = tmp_path / "train.conll"
    train.write_text(f"Ann NNP B-NP B-PER\nLee NNP I-NP I-PER\n\nShe PRP B-NP O\nlikes VBZ B-VP O\n"
                     f"Linux NNP B-NP {bare}\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load(tmp_path, "ner", tokenizer, tasks={"ner": {"type": "tagging", "data": {"train": str(train)}}})
    assert str(info.value) == (f"{train}:4 (word 3 of the sentence, 'Linux'): tag {bare!r} has no B-/I- prefix, beside "
                               "entity tags such as 'B-PER': seqeval would misread it and predict's entity spans leave it "
                               f"out; tag it O, or as an entity (B-{bare}, I-{bare}; data.label_names can rename tags)")


def test_a_comment_line_in_a_conll_file_is_named_by_the_tag_it_would_make(tmp_path, tokenizer):
    """MultiCoNER's `# id ... domain=en` lines have four fields: read as the word '#' tagged domain=en, which
    seqeval scored as an entity type 'omain=en'. (A '#' word is a word: the tag set tells them apart.)"""
    train = tmp_path / "train.conll"
    train.write_text("# id 8f2e domain=en\nann _ _ B-PER\nlee _ _ I-PER\n\n# _ _ O\nrome _ _ B-LOC\n",
                     encoding="utf-8")
    with pytest.raises(UserError, match=rf"^{re.escape(str(train))}:1 \(word 1 of the sentence, '#'\): tag "
                                        r"'domain=en' has no B-/I- prefix"):
        load(tmp_path, "ner", tokenizer, tasks={"ner": {"type": "tagging", "data": {"train": str(train)}}})
    train.write_text("ann _ _ B-PER\nlee _ _ I-PER\n\n# _ _ O\nrome _ _ B-LOC\n", encoding="utf-8")
    data = load(tmp_path, "ner", tokenizer, tasks={"ner": {"type": "tagging", "data": {"train": str(train)}}})
    assert data.labels == ["B-LOC", "B-PER", "I-PER", "O"]


def order_of(rows):
    return [(r["text"], r["label"]) for r in rows]


def test_validation_from_train_is_fixed_and_disjoint(tmp_path, tokenizer):
    all_rows = read_examples(DATA / "trec_sample.csv", DataSpec(text_column="question"), "classification")
    everything = sorted((r["text"], r["label"]) for r in all_rows)

    def carve(seed):
        data = load(tmp_path, "question", tokenizer, seed=seed)
        train, val = data.splits["train"], data.splits["validation"]
        return list(zip(train["text"], train["label"])), list(zip(val["text"], val["label"]))

    train, val = carve(42)
    assert len(val) == round(60 * 0.2) == 12 and len(train) == 48
    assert sorted(train + val) == everything  # a partition of the training file
    assert not set(train) & set(val)
    assert carve(42) == (train, val)  # deterministic
    assert carve(7) == (train, val)  # the same for every training seed: runs that differ by seed compare alike
    # a seeded shuffle, not the file's first or last examples
    assert val != order_of(all_rows)[:12] and val != order_of(all_rows)[-12:]
    # the validation examples keep their file order
    order = order_of(all_rows)
    assert [order.index(x) for x in val] == sorted(order.index(x) for x in val)


def test_sentence_pairs_are_tokenised_as_pairs(tmp_path, tokenizer):
    tasks = {"nli": {"type": "classification", "data": {"train": str(DATA / "pairs_sample.tsv"),
                                                        "text_column": "premise", "text_pair_column": "hypothesis"}}}
    data = load(tmp_path, "nli", tokenizer, tasks=tasks)
    assert data.labels == ["contradiction", "entailment", "neutral"]
    row = data.splits["train"][0]
    assert row["input_ids"] == tokenizer("A man is riding a bicycle down a hill.", "A person is on a bike.")["input_ids"]
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2 and 1 in row["token_type_ids"]


# ---------------------------------------------------------------- tokenisation cache


def test_tokenisation_cache_is_reused(tmp_path, monkeypatch, tokenizer):
    cache = tmp_path / "hf-datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                      "text_column": "sentence"}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    files = sorted((cache / "mtnlp").glob("tokenized-*.arrow"))
    assert len(files) == 1
    # a second run: a new tokenizer that refuses to tokenise; the cached arrow file is read instead
    second = load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks)
    assert second.splits["train"]["input_ids"] == first.splits["train"]["input_ids"]
    assert second.splits["train"]["labels"] == first.splits["train"]["labels"]
    assert sorted((cache / "mtnlp").glob("tokenized-*.arrow")) == files
    # a different max_length is a different cache entry
    with pytest.raises(AssertionError, match="tokenizer called"):
        load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), max_length=16, tasks=tasks)
    # so is a split an mtnlp that encoded rows otherwise tokenised (a QA target's tokens changed): not read
    from mtnlp import data

    monkeypatch.setattr(data, "CACHE_VERSION", data.CACHE_VERSION + 1)
    with pytest.raises(AssertionError, match="tokenizer called"):
        load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks)


@pytest.mark.parametrize("instance", ["same", "new"])
def test_tokenisation_cache_second_load_of_all_splits(tmp_path, monkeypatch, tokenizer, instance):
    # load a task with train and validation, then load it again (in the same process with the same tokenizer,
    # or as a second run with a new one): nothing needs tokenising the second time.
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tok = new_tokenizer()
    first = load(tmp_path, "ner", tok)
    again = RefusingTokenizer(tok if instance == "same" else new_tokenizer())
    second = load(tmp_path, "ner", again)
    for split in ("train", "validation"):
        assert second.splits[split]["input_ids"] == first.splits[split]["input_ids"]
        assert second.splits[split]["labels"] == first.splits[split]["labels"]


def _copy_sst2(tmp_path) -> Path:
    copy = tmp_path / "data" / "sst2.jsonl"
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes((DATA / "sst2_sample.jsonl").read_bytes())
    return copy


def _refuse_reading(monkeypatch):
    from mtnlp import data

    def refuse(*args, **kwargs):
        raise AssertionError("a data file was read: the cache was not used")
    monkeypatch.setattr(data, "iter_examples", refuse)


def test_unchanged_files_are_not_read_again(tmp_path, monkeypatch):
    from mtnlp.data import read_task_unless_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = _copy_sst2(tmp_path)
    tasks = {"s": {"type": "classification",
                   "data": {"train": str(train), "validation_from_train": 0.2, "text_column": "sentence"}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    recipe = load_recipe(write_recipe(tmp_path, tasks))
    with monkeypatch.context() as m:  # a second run: neither read nor tokenised (what `mtnlp train` does)
        _refuse_reading(m)
        assert read_task_unless_cached(recipe, "s", recipe.tasks["s"]) is None
        second = load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks)
        assert second.labels == first.labels
        for split in ("train", "validation"):
            assert second.splits[split]["input_ids"] == first.splits[split]["input_ids"]
        os.utime(train, ns=(1, 1))  # a new mtime, the same content: hashed again, still a hit
        assert load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks).splits["train"]["labels"] == \
            first.splits["train"]["labels"]
        # a setting that changes the examples (the carved fraction) is a different entry
        tasks["s"]["data"]["validation_from_train"] = 0.25
        with pytest.raises(AssertionError, match="a data file was read"):
            load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    tasks["s"]["data"]["validation_from_train"] = 0.2
    with train.open("a") as f:  # changed content: read again, with the new example
        f.write('{"sentence": "an added line", "label": 0}\n')
    assert read_task_unless_cached(recipe, "s", recipe.tasks["s"]) is not None
    third = load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    assert len(third.splits["train"]) + len(third.splits["validation"]) == 61


def test_a_label_sets_warnings_are_said_again_when_the_files_come_from_the_cache(tmp_path, monkeypatch):
    """Labels that differ only in case, or a label column naming the text, were said by the first run only: a
    second run loaded the cache and trained on the same labels without a word."""
    from mtnlp.data import read_task_unless_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = tmp_path / "t.csv"
    train.write_text("label,text\n" + "".join(f"{label},{'x' * (i % 3 + 1)}\n" for i, label in enumerate(
        [f"this is sentence {i}" for i in range(30)] + ["Pos", "pos"] * 4)))
    tasks = {"s": {"type": "classification", "data": {"train": str(train), "validation_from_train": 0.2}}}
    recipe = load_recipe(write_recipe(tmp_path, tasks))
    said = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = read_task_unless_cached(recipe, "s", recipe.tasks["s"])  # as `mtnlp train` does
            load_task(recipe, "s", recipe.tasks["s"], new_tokenizer(), 64, raw=raw)
        said.append([str(w.message) for w in caught if "labels" in str(w.message)])
    assert said[0] == said[1] == [f"{train}: labels 'Pos' and 'pos' differ only in case: they are 2 labels (write them "
                                  "alike if they are one)",
                                  f"{train}: 32 labels for 38 examples: is tasks.s.data.label_column ('label') the "
                                  "text's column?"]
    # the same files under another task name and folder share the cache entry; its warnings name this recipe's
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "t.csv"
    other.write_bytes(train.read_bytes())
    recipe = load_recipe(write_recipe(tmp_path / "b", {"mood": {**tasks["s"], "data": {**tasks["s"]["data"],
                                                                                        "train": str(other)}}}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_task_unless_cached(recipe, "mood", recipe.tasks["mood"]) is None
    assert [str(w.message) for w in caught if "labels" in str(w.message)] == [
        text.replace(str(train), str(other)).replace("tasks.s.", "tasks.mood.") for text in said[0]]


def test_swapping_the_files_of_format_lines_is_a_new_cache_entry(tmp_path, monkeypatch):
    """The same two files under swapped keys are other examples: the cache must not return the old ones."""
    from mtnlp.data import read_task_unless_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("good movie\nbad movie\ngreat fun\nawful\n")
    b.write_text("pos\nneg\npos\nneg\n")

    def labels(**files):  # the keys in this order in the YAML
        split = "{" + ", ".join(f"{role}: {path}" for role, path in files.items()) + "}"
        path = tmp_path / "recipe.yaml"
        path.write_text(f"name: t\ntasks:\n  s:\n    type: classification\n    data:\n"
                        f"      train: {split}\n      validation: {split}\n")
        recipe = load_recipe(path)
        if read_task_unless_cached(recipe, "s", recipe.tasks["s"]) is None:  # as `mtnlp train` does
            return "cached"
        return load_task(recipe, "s", recipe.tasks["s"], new_tokenizer(), 64).labels

    # a user's slip, read as given, then fixed by swapping the keys: the files are in the same order
    assert labels(text=b, labels=a) == ["awful", "bad movie", "good movie", "great fun"]
    assert labels(labels=b, text=a) == ["neg", "pos"]  # read again, not the cached slip
    assert labels(labels=b, text=a) == "cached"


def test_mtnlp_train_reads_data_up_front_once_and_only_in_the_first_process(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mtnlp.cli import train_recipe

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    recipe = write_recipe(tmp_path, {"s": {"type": "classification", "data": {
        "train": str(_copy_sst2(tmp_path)), "text_column": "sentence"}}})
    seen = []

    def fake_train(recipe, raw):  # what the training loop would be given
        seen.append(raw)
        return SimpleNamespace(accelerator=SimpleNamespace(is_main_process=False), run_dir=None)

    args = SimpleNamespace(recipe=str(recipe), overrides=[])
    monkeypatch.setenv("RANK", "1")  # a DDP process other than the first: it maps the first one's cache
    assert train_recipe(fake_train, args) == 0 and seen[-1] == {}
    monkeypatch.setenv("RANK", "0")
    assert train_recipe(fake_train, args) == 0 and len(seen[-1]["s"].examples["train"]) == 60
    load(tmp_path, "s", new_tokenizer(), tasks=yaml.safe_load(recipe.read_text())["tasks"])  # fills the cache
    _refuse_reading(monkeypatch)  # a second run: nothing read up front (the loop then uses the cache)
    assert train_recipe(fake_train, args) == 0 and seen[-1] == {"s": None}


def test_a_label_set_given_from_a_model_is_not_remembered_as_the_files_own(tmp_path, monkeypatch):
    from mtnlp.data import read_task, read_task_unless_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification", "data": {
        "train": str(_copy_sst2(tmp_path)), "validation_from_train": 0.2, "text_column": "sentence"}}}))
    spec = recipe.tasks["s"]
    # what `mtnlp evaluate` does: the model's labels, here one more than the training split has
    read_task(recipe, "s", spec, splits=("validation",), labels=["0", "1", "2"])
    assert read_task_unless_cached(recipe, "s", spec) is not None  # not taken as read and checked
    assert read_task(recipe, "s", spec).labels == ["0", "1"]
    assert read_task_unless_cached(recipe, "s", spec) is None


@pytest.mark.parametrize("split", ["validation", "train"])
def test_a_split_with_a_label_the_model_lacks_is_an_error_naming_its_line(tmp_path, monkeypatch, split):
    """mtnlp evaluate gives the model's labels: a carved validation split (or the training split) holding
    another label was not checked against them, and tokenising it failed with a KeyError."""
    from mtnlp.data import read_task

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = _copy_sst2(tmp_path)
    recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification", "data": {
        "train": str(train), "validation_from_train": 0.2, "text_column": "sentence"}}}))
    with pytest.raises(UserError, match=rf"^{re.escape(str(train))}:\d+: label '[01]' is not one of the model's "
                                        r"labels \(known: negative, positive\)$"):
        read_task(recipe, "s", recipe.tasks["s"], splits=(split,), labels=["negative", "positive"])
    assert read_task(recipe, "s", recipe.tasks["s"], splits=(split,), labels=["0", "1"]).examples[split].num_rows


def test_an_unseen_label_among_many_lists_the_first_known_ones_only():
    from mtnlp.data import check_labels
    from mtnlp.tasks import task_type
    import pyarrow as pa

    labels = [f"class_{i:04d}" for i in range(2000)]
    examples = pa.Table.from_pylist([{"text": "a", "label": "class_9999", "_line": 3}])
    with pytest.raises(UserError) as info:
        check_labels(examples, labels, task_type("classification"), "dev.tsv")
    assert str(info.value) == ("dev.tsv:3: label 'class_9999' does not occur in the training split (known: "
                               + ", ".join(labels[:20]) + ", ... (2000 in all))")


def test_a_files_hash_is_computed_once_per_version(tmp_path, monkeypatch):
    from mtnlp.cache import file_hash

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = _copy_sst2(tmp_path)
    real = file_hash(train)
    (memo,) = (cache_dir() / "file-hashes").iterdir()
    assert memo.read_text() == real
    memo.write_text("ab" * 32)  # the remembered value is what a second call returns: no re-hash
    assert file_hash(train) == "ab" * 32
    os.utime(train, ns=(2, 2))  # a new version (mtime): hashed again
    assert file_hash(train) == real


def test_large_splits_tokenise_in_parallel_with_the_same_rows(tmp_path, monkeypatch, capsys):
    from mtnlp import data

    monkeypatch.setattr(data, "PARALLEL_FROM", 10)
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                      "text_column": "sentence"}}}

    def loaded(cache, num_proc, tokenizer):
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / cache))
        path = write_recipe(tmp_path, tasks)
        recipe = load_recipe(path, [f"training.num_proc={num_proc}"])
        return load_task(recipe, "s", recipe.tasks["s"], tokenizer, 64).splits["train"]

    spills = []
    real_spill = data.spill
    monkeypatch.setattr(data, "spill", lambda table, path: spills.append(path) or real_spill(table, path))
    one, two = loaded("one", 1, new_tokenizer()), loaded("two", 2, new_tokenizer())
    # minutes for millions of examples: said (datasets' bars are off), once per run that tokenises
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tokenizing tasks")]
    assert said == [f"tokenizing tasks.s train: {one.num_rows:,} examples, cached in {tmp_path / 'one' / 'mtnlp'} "
                    "for the next runs", f"tokenizing tasks.s train: {one.num_rows:,} examples in 2 processes, "
                    f"cached in {tmp_path / 'two' / 'mtnlp'} for the next runs"]
    assert len(two.cache_files) == 2  # one Arrow file per process
    # a large split is mapped from a file (not pickled to each process), removed after
    assert len(spills) == 2 and not any(path.exists() for path in spills)
    assert not [f for f in two.cache_files if ".examples-" in f["filename"]]
    assert two["input_ids"] == one["input_ids"] and two["labels"] == one["labels"]
    again = loaded("two", 2, RefusingTokenizer(new_tokenizer()))  # the shards are the cache entry
    assert again["input_ids"] == one["input_ids"] and "tokenizing tasks" not in capsys.readouterr().err


def test_examples_become_one_arrow_table_across_chunks_of_different_inferred_types():
    from mtnlp.data import to_arrow

    examples = [{"text": "a", "text_pair": None, "label": 1, "tags": [], "_line": 1},
                {"text": "b", "text_pair": "x", "label": 2.5, "tags": ["t"], "_line": 2}]
    table = to_arrow(iter(examples), chunk=1)  # each chunk alone infers null / int64 / list<null>
    assert table.to_pylist() == [{"text": "a", "text_pair": None, "label": 1.0, "tags": [], "_line": 1},
                               {"text": "b", "text_pair": "x", "label": 2.5, "tags": ["t"], "_line": 2}]
    assert len(to_arrow([])) == 0
    assert not list(cache_dir().glob(".reading-*"))  # the chunk files are gone; the table maps them
    big = to_arrow(({"text": str(i), "_line": i} for i in range(25)), chunk=10)
    assert big.column("text").to_pylist() == [str(i) for i in range(25)] and not list(cache_dir().glob(".reading-*"))
    with pytest.raises(UserError, match=r"^data.jsonl: a field holds values of different kinds"):
        to_arrow([{"text": "a", "id": 3}, {"text": "b", "id": "q7"}], "data.jsonl")


def test_the_share_of_unknown_tokens_holds_no_wider_copy_of_the_ids():
    """Comparing int32 ids with a Python int cast them all to int64: 320 MB for 3 M short examples, kept by Arrow's
    memory pool for the whole run (a cache hit's too)."""
    import numpy as np
    import pyarrow as pa
    from datasets import Dataset, Features, List, Value

    from mtnlp.data import split_facts

    ids = np.arange(200_000, dtype=np.int32) % 1000  # 200 of them unknown (id 100)
    features = Features({"input_ids": List(Value("int32")), "labels": Value("int64"), "truncated": Value("bool")})
    dataset = Dataset.from_dict({"input_ids": np.split(ids, 20_000), "labels": [0] * 20_000,
                                 "truncated": [False] * 20_000}, features=features)  # int32 ids, as tokenize() stores
    default = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(default)  # counts what is allocated through it
    pa.set_memory_pool(pool)
    try:
        facts = split_facts(dataset, "classification", ["a"], unk_id=100)
    finally:
        pa.set_memory_pool(default)
    assert facts["unknown_tokens"] == 200 / 200_000
    assert pool.max_memory() < ids.nbytes  # an int64 copy is twice the ids'


# ---------------------------------------------------------------- collate


def test_collate_tagging_pads_with_pad_id_and_minus_100(tmp_path, tokenizer):
    train = load(tmp_path, "ner", tokenizer).splits["train"]
    rows = [train[i] for i in range(4)]
    lengths = [len(r["input_ids"]) for r in rows]
    assert len(set(lengths)) > 1
    pad = tokenizer.pad_token_id
    batch = collate(rows, pad, "tagging")
    width = max(lengths)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, width)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    for i, r in enumerate(rows):
        n = lengths[i]
        assert batch["input_ids"][i, :n].tolist() == r["input_ids"]
        assert batch["input_ids"][i, n:].tolist() == [pad] * (width - n)
        assert batch["labels"][i, :n].tolist() == r["labels"]
        assert batch["labels"][i, n:].tolist() == [-100] * (width - n)
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        assert batch["token_type_ids"][i, :n].tolist() == r["token_type_ids"]
        assert batch["token_type_ids"][i, n:].tolist() == [0] * (width - n)
    # a pad id other than 0 is used as given
    assert (collate(rows, 999, "tagging")["input_ids"] == 999).sum() == sum(width - n for n in lengths)


def test_collate_classification_and_regression():
    rows = [{"input_ids": [101, 7, 8, 102], "labels": 2}, {"input_ids": [101, 9, 102], "labels": 0}]
    batch = collate(rows, 0, "classification")
    assert batch["input_ids"].tolist() == [[101, 7, 8, 102], [101, 9, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [2, 0] and batch["labels"].dtype == torch.long
    assert "token_type_ids" not in batch
    reg = collate([{"input_ids": [1, 2], "labels": 0.25}, {"input_ids": [1], "labels": 0.75}], 5, "regression")
    assert reg["labels"].dtype == torch.float and reg["labels"].tolist() == [0.25, 0.75]
    assert reg["input_ids"].tolist() == [[1, 2], [1, 5]]


def test_regression_validation_and_test_files_need_no_label_set(tmp_path, tokenizer):
    """Scores in a separate validation/test file are not 'labels unseen in training'."""
    dev = tmp_path / "dev.csv"
    dev.write_text("text,score\nan unseen score,4.25\nanother one,0.5\n", encoding="utf-8")
    tasks = {"s": {"type": "regression", "data": {"train": str(DATA / "regression_sample.csv"), "validation": str(dev),
                                                   "test": str(dev), "label_column": "score"}}}
    data = load(tmp_path, "s", tokenizer, tasks=tasks)
    assert data.labels == [] and data.splits["validation"]["labels"] == [4.25, 0.5]
    assert data.splits["test"]["labels"] == [4.25, 0.5]


def test_an_edit_that_keeps_the_size_and_sets_the_mtime_back_is_read_again(tmp_path, monkeypatch):
    """cp -p, rsync -a and tar keep a file's mtime: its ctime (and, for a new file, its inode) still change."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = _copy_sst2(tmp_path)
    tasks = {"s": {"type": "classification", "data": {"train": str(train), "text_column": "sentence"}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["labels"]
    before = train.stat()
    train.write_text(train.read_text().replace('"label": 1}', '"label": 0}', 1))  # the same size
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert train.stat().st_size == before.st_size
    second = load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["labels"]
    assert sum(second) == sum(first) - 1


def test_the_same_bytes_as_csv_and_as_tsv_are_two_cache_entries(tmp_path):
    """Without data.format the suffix decides how a file is parsed."""
    from mtnlp.data import task_key

    keys = []
    for suffix in ("csv", "tsv"):
        (tmp_path / f"d.{suffix}").write_text("text,p\ttext\tlabel\tq,label\na,1\tb\tneg\tc,pos\n")
        recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification",
                                                           "data": {"train": str(tmp_path / f"d.{suffix}")}}}))
        keys.append(task_key(recipe, recipe.tasks["s"]))
    assert keys[0] != keys[1]


def test_tokenizer_settings_kept_beside_tokenizer_json_are_in_the_cache_key():
    from mtnlp.cache import tokenizer_fingerprint

    tokenizer = new_tokenizer()
    plain = tokenizer_fingerprint(tokenizer)
    tokenizer.truncation_side = "left"  # which end max_length cuts
    assert tokenizer_fingerprint(tokenizer) != plain
    tokenizer = new_tokenizer()
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # no token_type_ids
    assert tokenizer_fingerprint(tokenizer) != plain


def test_the_fingerprint_of_a_tokenizer_changed_after_it_was_taken_is_another():
    """Fingerprints are remembered per tokenizer state (the canonical form is slow): a token added after the first
    one was taken changes it; the truncation and padding each call sets do not."""
    from mtnlp.cache import tokenizer_fingerprint

    tokenizer = new_tokenizer()
    plain = tokenizer_fingerprint(tokenizer)
    tokenizer("a text", truncation=True, max_length=3, padding="max_length")
    assert tokenizer_fingerprint(tokenizer) == plain
    tokenizer.add_tokens(["zzyzx-token"])
    added = tokenizer_fingerprint(tokenizer)
    assert added != plain and tokenizer_fingerprint(new_tokenizer()) == plain


def test_a_damaged_cache_entry_is_tokenised_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["input_ids"]
    (part,) = (tmp_path / "hf-datasets" / "mtnlp").glob("tokenized-*.arrow")
    # cut short, as a full disk or a kill while copying leaves it (a new file: this process still maps the old one)
    (part.parent / "cut").write_bytes(part.read_bytes()[:100])
    os.replace(part.parent / "cut", part)
    with pytest.warns(UserWarning, match="a cache entry that cannot be read .*: tokenising again"):
        assert load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["input_ids"] == first
    assert load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks).splits["train"]["input_ids"] == first
    (listing,) = (tmp_path / "hf-datasets" / "mtnlp").glob("tokenized-*.json")
    listing.write_text("5")  # not a list of parts
    with pytest.warns(UserWarning, match="a cache entry that cannot be read"):
        assert load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["input_ids"] == first


def test_a_part_cut_at_the_end_of_a_record_batch_is_a_damaged_entry_too(tmp_path, monkeypatch):
    """Arrow's stream reader takes a file that ends where a record batch ends as whole: a part cut there (a copy or
    sync of the cache that stopped early) loaded as a shorter split, and training used fewer examples, silently."""
    import pyarrow as pa

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(1_500)))
    tasks = {"s": {"type": "classification", "data": {"train": str(train)}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["input_ids"]
    (part,) = (tmp_path / "hf-datasets" / "mtnlp").glob("tokenized-*.arrow")
    (listing,) = part.parent.glob("tokenized-*.json")
    assert json.loads(listing.read_text()) == {part.name: 1_500}
    with pa.memory_map(str(part)) as source:  # datasets writes batches of 1,000 rows
        pa.ipc.open_stream(source).read_next_batch()
        cut = source.tell()
    (part.parent / "cut").write_bytes(part.read_bytes()[:cut])  # (a new file: this process still maps the old one)
    os.replace(part.parent / "cut", part)
    with pytest.warns(UserWarning, match=re.escape(f"{listing}: a cache entry that cannot be read ({part.name} holds "
                                                   "1,000 rows of the 1,500 written): tokenising again")):
        assert load(tmp_path, "s", new_tokenizer(), tasks=tasks).splits["train"]["input_ids"] == first
    # a listing an older mtnlp wrote, of names only, is read (unchecked)
    listing.write_text(json.dumps([part.name]))
    assert load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks).splits["train"]["input_ids"] == first


def test_another_users_cache_entry_that_cannot_be_read_is_an_error_naming_it_and_is_kept(tmp_path, monkeypatch):
    """A shared cache where one user ran under umask 077: their entry's files are 0600. It was taken for damage
    (its listing deleted, which its owner then wrote again, for this user to delete again) and the run failed with
    "the cache folder cannot be written". The tests run as root, whom modes do not stop: the reads are refused."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    (listing,) = (tmp_path / "hf-datasets" / "mtnlp").glob("tokenized-*.json")
    (part,) = (tmp_path / "hf-datasets" / "mtnlp").glob("tokenized-*.arrow")
    refused = set()

    def refuse(read):
        def reading(path, *args, **kwargs):
            if Path(path) in refused:
                raise PermissionError(13, f"Failed to open local file '{path}'. Detail: [errno 13] Permission denied")
            return read(path, *args, **kwargs)
        return reading

    monkeypatch.setattr(Path, "read_text", refuse(Path.read_text))
    monkeypatch.setattr(datasets.Dataset, "from_file", refuse(datasets.Dataset.from_file))
    for path in (listing, part):
        path.chmod(0o600)
    # the listing; a part; a part without its listing (a run killed before writing it), which datasets' map loads
    for unreadable, gone in ((listing, None), (part, None), (part, listing)):
        refused = {unreadable}
        if gone:
            gone.unlink()
        with pytest.raises(UserError) as raised:
            load(tmp_path, "s", new_tokenizer(), tasks=tasks)
        assert re.fullmatch(re.escape(f"{unreadable}: a cache file you cannot read (owned by ") + r"\S+, mode 0600\): "
                            r"ask its owner to make it readable \(or remove it\), or set HF_DATASETS_CACHE to a "
                            r"folder of your own; users who share a cache folder each need umask 002, in a folder of "
                            r"their group with the setgid bit \(chmod 2775\)", str(raised.value)), str(raised.value)
        assert part.exists() and listing.exists() != (gone == listing)


def test_a_cache_folder_another_user_keeps_to_themselves_is_an_error_naming_it(tmp_path, monkeypatch):
    """Its owner made it under umask 077 (drwx------): looking for an entry in it was "error: <listing>: Permission
    denied", status 1. The tests run as root, whom modes do not stop: looking into it is refused here."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    folder = tmp_path / "hf-datasets" / "mtnlp"
    folder.mkdir(parents=True, mode=0o700)
    stat = Path.stat

    def unsearchable(path, *args, **kwargs):
        if path.parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", unsearchable)
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    with pytest.raises(UserError, match=re.escape(f"{folder}: a cache folder you cannot read (owned by ") +
                       r"\S+, mode 0700\): ask its owner to make it readable \(or remove it\), or set HF_DATASETS_CACHE"):
        load(tmp_path, "s", new_tokenizer(), tasks=tasks)


def test_a_file_changed_while_it_is_read_gets_no_cache_key(tmp_path, monkeypatch):
    """Its examples may be part old, part new: cached under the new content's key they would stay wrong."""
    from mtnlp import data

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = _copy_sst2(tmp_path)
    real = data.read_split

    def read_then_edit(*args, **kwargs):
        read = real(*args, **kwargs)
        with train.open("a") as f:
            f.write('{"sentence": "a late line", "label": 0}\n')
        return read

    monkeypatch.setattr(data, "read_split", read_then_edit)
    recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification",
                                                       "data": {"train": str(train), "text_column": "sentence"}}}))
    assert data.read_task(recipe, "s", recipe.tasks["s"]).key is None


def test_files_a_killed_run_left_are_removed_a_day_later_by_a_cache_hit_too(tmp_path, monkeypatch):
    """A process killed mid-way (kill -9) leaves the examples it read (.reading-*) or spilled (.examples-*) and
    datasets' unfinished tokenised parts (tmp*): up to an entry's size per kill. Only .examples-* were removed, and
    only by a run that tokenised. By age: a shared cache folder's other machines' processes cannot be seen from here,
    and a file another run is writing is newer."""
    import time

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    folder = tmp_path / "hf-datasets" / "mtnlp"
    left = [".examples-abc-123-0a1b2c3d.arrow", ".reading-123-0a1b2c3d-0.arrow", "tmpk2j3h4l5"]
    day_ago = time.time() - 86400 - 60
    for name in left:
        for path in (folder / name, folder / f"{name}.recent"):
            path.write_bytes(b"x")
        os.utime(folder / name, (day_ago, day_ago))
    load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks)  # a cache hit
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith((".", "tmp"))) == \
        sorted(f"{name}.recent" for name in left)


def test_a_damaged_label_set_or_file_hash_in_the_cache_is_read_again(tmp_path, monkeypatch):
    """What a crash or power loss can leave (an empty file; write_atomic does not fsync) is not trusted: an
    empty label set was a JSON traceback, an empty file hash the key of another cache entry."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    folder = tmp_path / "hf-datasets" / "mtnlp"
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    first = load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    (labels,) = folder.glob("labels-*.json")
    written = labels.read_text()
    labels.write_text("")
    again = load(tmp_path, "s", new_tokenizer(), tasks=tasks)
    assert again.labels == first.labels and again.splits["train"]["input_ids"] == first.splits["train"]["input_ids"]
    assert labels.read_text() == written  # written again
    for memo in (folder / "file-hashes").glob("*.txt"):
        memo.write_text("")
    # the same key as before (the file hashed again), so the tokenised entry is read: no tokenizer call
    cached = load(tmp_path, "s", RefusingTokenizer(new_tokenizer()), tasks=tasks)
    assert cached.splits["train"]["input_ids"] == first.splits["train"]["input_ids"]
    assert len(list(folder.glob("labels-*.json"))) == 1


def test_a_cache_that_cannot_be_written_is_one_error_naming_it(tmp_path, monkeypatch):
    import errno

    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))

    def read_only(self, *args, cache_file_name=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", cache_file_name)

    monkeypatch.setattr(datasets.Dataset, "map", read_only)
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    with pytest.raises(UserError, match=r"mtnlp: the tokenised data is cached here, and it cannot be written "
                                        r"\(Read-only file system\): set HF_DATASETS_CACHE"):
        load(tmp_path, "s", new_tokenizer(), tasks=tasks)


def test_atomic_writes_of_one_file_by_processes_with_the_same_pid_do_not_collide(tmp_path):
    """Containers sharing a cache folder each have a process 1: threads of one process stand in for them."""
    import threading

    from mtnlp.cache import write_atomic

    target, errors = tmp_path / "labels.json", []

    def writer(text):
        try:
            for _ in range(300):
                write_atomic(target, text)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(str(n) * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in {str(n) * 1000 for n in range(4)}
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]  # no temporary file left


def test_a_label_whose_every_example_is_carved_keeps_one_to_train_on(tmp_path, monkeypatch):
    """validation_from_train could carve a label's only examples: its head output never trained, the data table said
    train had fewer labels than the model, and nothing was said. Wherever the label's example stands in the file,
    it now trains; the carve is the same for training and for `mtnlp evaluate` (the model's labels)."""
    from mtnlp.data import read_task, read_task_unless_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    said = 0
    for position in range(20):
        rows = [f"text {i}\t{'ab'[i % 2]}" for i in range(20)]
        rows[position] = f"text {position}\trare"
        train = tmp_path / f"carve{position}.tsv"
        train.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
        recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification", "data": {
            "train": str(train), "validation_from_train": 0.1, "text_column": "sentence"}}}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = read_task(recipe, "s", recipe.tasks["s"])
        assert raw.labels == ["a", "b", "rare"] and "rare" in raw.examples["train"].column("label").to_pylist()
        evaluated = read_task(recipe, "s", recipe.tasks["s"], splits=("validation",), labels=raw.labels)
        assert evaluated.examples["validation"].to_pylist() == raw.examples["validation"].to_pylist()
        messages = [str(w.message) for w in caught]
        if messages:  # the example the carve took: given back, and said
            said += 1
            assert raw.examples["validation"].num_rows == 1 and messages == [
                f"{recipe.source}:7: tasks.s.data.validation_from_train: label(s) rare had every example carved out "
                f"of {train}: one of each trains instead (a head output must have one)"]
            with warnings.catch_warnings(record=True) as again:  # a later run reads the cache: said again
                warnings.simplefilter("always")
                assert read_task_unless_cached(recipe, "s", recipe.tasks["s"]) is None
            assert [str(w.message) for w in again] == messages
        else:
            assert raw.examples["validation"].num_rows == 2
    assert said == 2  # 2 of 20 rows are carved: twice the rare label was among them


def test_a_carve_whose_every_example_is_the_only_one_of_its_label_is_an_error(tmp_path, monkeypatch):
    from mtnlp.data import read_task

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    train = tmp_path / "few.tsv"
    train.write_text("sentence\tlabel\nx\ta\ny\tb\n")
    recipe = load_recipe(write_recipe(tmp_path, {"s": {"type": "classification", "data": {
        "train": str(train), "validation_from_train": 0.5, "text_column": "sentence"}}}))
    with pytest.raises(UserError, match=r"tasks.s.data.validation_from_train: every carved example of .*few.tsv is the "
                                        r"only one of its label \([ab]\): none is left to validate on$"):
        read_task(recipe, "s", recipe.tasks["s"])


def carved_before(rows: list[dict], fraction: float, kind) -> tuple[list[int], list[str]]:
    """The rows validation_from_train held out (and the labels it gave back) when it kept a Python list and set per
    row (up to a7f23e5): how a carve is computed must not change which examples it carves."""
    import random

    from mtnlp.tasks.base import sort_labels

    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[kind.carve_by] if kind.carve_by else i, []).append(i)
    groups = list(groups.values())
    random.Random(42).shuffle(groups)
    held, wanted = set(), max(1, round(len(rows) * fraction))
    for group in groups:
        if len(held) >= wanted:
            break
        held.update(group)
    of_row = [set(kind.labels_of(row)) for row in rows]
    trained = set().union(*(of_row[i] for i in range(len(rows)) if i not in held))
    missing = wanted = set().union(*(of_row[i] for i in held)) - trained
    for group in groups:
        labels = set().union(*(of_row[i] for i in group))
        if wanted & labels and group[0] in held:
            held.difference_update(group)
            wanted = wanted - labels
    return sorted(held), sort_labels(missing)


@pytest.mark.parametrize("case", ["12,000 rows, rare labels", "questions of a context", "tags"])
def test_the_carve_is_the_one_a_python_list_per_row_gave_and_a_large_one_stays_mapped(tmp_path, monkeypatch, case):
    """The carve held a list and a set per row and copied the carved splits into memory: 350 MB per million rows."""
    import pyarrow as pa

    from mtnlp.data import read_split, read_task
    from mtnlp.tasks import task_type

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    if case == "12,000 rows, rare labels":  # read into chunk files: a memory-mapped table
        rows = [{"text": f"text {i}", "label": f"rare{i // 400}" if i % 400 == 7 else "ab"[i % 2]}
                for i in range(12_000)]
        spec = {"type": "classification", "data": {"train": "t.jsonl", "validation_from_train": 0.1}}
    elif case == "questions of a context":
        rows = [{"id": str(i), "question": "what?", "context": f"context {(i * 7) % 23 if i % 3 else i}",
                 "answers": {"text": ["context"], "answer_start": [0]}} for i in range(120)]
        spec = {"type": "extractive_qa", "data": {"train": "t.jsonl", "validation_from_train": 0.3}}
    else:
        spec = {"type": "tagging", "data": {"train": str(DATA / "ner_sample.conll"), "validation_from_train": 0.7}}
    if case != "tags":
        (tmp_path / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = load_recipe(write_recipe(tmp_path, {"s": spec}))
    everything, _ = read_split(recipe, "s", recipe.tasks["s"], "train")
    held, given_back = carved_before(everything.to_pylist(), spec["data"]["validation_from_train"],
                                     task_type(spec["type"]))
    assert bool(given_back) == (case != "questions of a context")  # (the case is met)
    lines = everything.column("_line").to_pylist()
    allocated = pa.total_allocated_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_task(recipe, "s", recipe.tasks["s"])
    assert raw.examples["validation"].column("_line").to_pylist() == [lines[i] for i in held]
    assert raw.examples["train"].column("_line").to_pylist() == [n for i, n in enumerate(lines) if i not in set(held)]
    assert [f"label(s) {', '.join(given_back)} had every example carved out" in str(w.message) for w in caught] \
        == [True] * bool(given_back)
    if case == "12,000 rows, rare labels":  # neither split is copied into memory
        assert pa.total_allocated_bytes() - allocated < everything.nbytes / 10


def test_a_data_file_in_the_current_folder_given_by_an_override_is_told_where_it_was_looked_for(
        make_recipe, tmp_path, monkeypatch, capsys):
    """`evaluate M R.yaml tasks.t.data.validation=mydev.tsv` with ./mydev.tsv said only "file not found" under data_dir."""
    import shutil

    from mtnlp.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "here").mkdir()
    shutil.copy(DATA / "ner_sample_dev.conll", tmp_path / "here" / "mydev.conll")
    recipe = make_recipe(data_dir="data")
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", str(recipe), "tasks.ner.data.validation=mydev.conll"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"tasks.ner.data.validation: {tmp_path / 'data' / 'mydev.conll'}: file not found; a data file is read "
        f"relative to data_dir ({tmp_path / 'data'}): for {tmp_path / 'here' / 'mydev.conll'}, give that path")


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_a_models_label_order_is_not_served_the_files_tokenised_ids(tmp_path, monkeypatch, tokenizer):
    """mtnlp evaluate gives the model's labels; a split tokenised before with the files' own order must not be reused."""
    from mtnlp.tasks.base import column

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    first = load(tmp_path, "question", tokenizer, splits=("validation",))
    model_labels = list(reversed(first.labels))
    second = load(tmp_path, "question", tokenizer, splits=("validation",), labels=model_labels)
    assert [model_labels[i] for i in column(second.splits["validation"], "labels")] == \
        [first.labels[i] for i in column(first.splits["validation"], "labels")]


def test_examples_tokenised_without_a_cache_key_are_cut_at_each_max_length(tmp_path, monkeypatch, tokenizer):
    from mtnlp.data import tokenize
    from mtnlp.tasks.base import column

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    examples = [{"text": "a rather long text with many words in it to cut", "label": "x"}]
    lengths = [column(tokenize(examples, "classification", ["x"], tokenizer, n), "length")[0] for n in (64, 8)]
    assert lengths[0] > 8 and lengths[1] == 8


def test_collate_keeps_each_rows_token_types():
    from mtnlp.data import collate

    rows = [{"input_ids": [101, 7, 102, 8, 102], "token_type_ids": [0, 0, 0, 1, 1], "labels": 1},
            {"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0], "labels": 0}]
    batch = collate(rows, 0, "classification")
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]


def test_a_streamed_batch_uses_the_heads_label_ids(tokenizer):
    from types import SimpleNamespace
    from mtnlp.data import TrainStream

    stream = TrainStream(None, SimpleNamespace(type="classification"), ["neg", "neu", "pos"], tokenizer, 16,
                         {"text_pair": False})
    rows = stream.encode([{"text": "good", "label": "pos", "_line": 1}, {"text": "bad", "label": "neg", "_line": 2}])
    assert [r["labels"] for r in rows] == [2, 0]


def test_unseen_label_in_multilabel_validation(tmp_path, tokenizer):
    """A multilabel validation label the training split lacks went unchecked: a KeyError traceback at tokenising."""
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": labels}) + "\n" for i, labels in
                             enumerate([["politics"], ["sports"], ["politics", "sports"], []] * 3)), encoding="utf-8")
    dev.write_text(json.dumps({"text": "a", "label": ["sports"]}) + "\n" +
                   json.dumps({"text": "b", "label": ["sports", "mathz"]}) + "\n", encoding="utf-8")
    tasks = {"topics": {"type": "multilabel", "data": {"train": str(train), "validation": str(dev)}}}
    with pytest.raises(UserError) as info:
        load(tmp_path, "topics", tokenizer, tasks=tasks)
    message = str(info.value)
    assert f"{dev}:2:" in message and "'mathz'" in message and "training split" in message, message


def test_tokenising_processes_default_to_the_cores_this_process_may_use(tmp_path, monkeypatch):
    """os.cpu_count() is the machine's: in a container given 2 of 64 cores it started 64 tokenising processes."""
    from mtnlp import data

    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(data, "CGROUP_CPU_MAX", quota)
    assert data.usable_cores() == 4  # no cgroup file: the affinity
    v1 = tmp_path / "cpu"
    v1.mkdir()
    monkeypatch.setattr(data, "CGROUP_V1_CPU", v1)
    for written, cores in (("max 100000\n", 4), ("200000 100000\n", 2), ("150000 100000\n", 2), ("10000 100000\n", 1),
                           ("1600000 100000\n", 4), ("nonsense\n", 4)):
        quota.write_text(written)
        assert data.usable_cores() == cores, written
    quota.unlink()  # cgroup v1: the quota in its own two files
    for written, cores in (("-1\n", 4), ("200000\n", 2)):
        (v1 / "cpu.cfs_quota_us").write_text(written)
        (v1 / "cpu.cfs_period_us").write_text("100000\n")
        assert data.usable_cores() == cores, written
    # and training tokenises in that many processes unless training.num_proc says
    seen = []
    monkeypatch.setattr(data, "usable_cores", lambda: 3)
    monkeypatch.setattr(data, "tokenize", lambda *args, **kwargs: seen.append(args[6]) or [])
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    tasks = {"s": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}}}
    recipe = load_recipe(write_recipe(tmp_path, tasks))
    load_task(recipe, "s", recipe.tasks["s"], new_tokenizer(), 64)
    assert seen == [3]
