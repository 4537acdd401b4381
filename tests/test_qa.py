"""type: extractive_qa end to end — SQuAD reading and its errors, windows of long contexts, training on
a generated set, the pipeline's character offsets, `mtnlp predict` and `evaluate`, export to every
family's AutoModelForQuestionAnswering, the hub, and a QA head beside a classification head."""

import json
import random

import numpy as np
import pytest
import torch
import yaml
from conftest import DATA, minilm_path, write_jsonl, write_recipe
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.cli import main
from mtnlp.data import load_task, read_task, tokenize
from mtnlp.errors import UserError
from mtnlp.export import export_folder
from conftest import read_examples
from mtnlp.recipe import load_recipe
from mtnlp.spec import DataSpec
from mtnlp.tasks import task_type
from mtnlp.tasks.extractive_qa import window_spans

QA = task_type("extractive_qa")

FIRST = "Anna Ben Carla David Elena Felix Greta Hugo Ines Jonas Klara Lukas Maria Nils Olga Paul Rosa Simon".split()
LAST = "Berg Costa Dahl Eder Falk Gruber Haas Iversen Jansen Keller Lang Moser Novak Ortiz Pohl Roth Sauer Vogel".split()
CITIES = "Bratislava Lisbon Oslo Vienna Porto Krakow Dublin Zagreb Tallinn Riga Ghent Basel Lyon Turin Seville".split()
JOBS = "baker pilot nurse teacher lawyer painter farmer chemist sailor tailor dentist architect".split()
FILLER = ["The weather was mild that year.", "Many people like the old town.", "The river runs through the valley.",
          "Trains leave every hour.", "The museum opens at nine.", "A new bridge was built later.",
          "The market sells fresh bread.", "Winters there are long and dark."]


def qa_rows(n: int, seed: int, unanswerable: float = 0.0, filler=(0, 5)) -> list[dict]:
    """Flat SQuAD rows (as the hub's `squad`): where and when a person was born and (mostly) their job,
    among filler sentences; a question asks for one of them. With `unanswerable`, that share of the
    contexts without a job are asked for it (SQuAD 2.0)."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        city, year, job = rng.choice(CITIES), str(rng.randint(1900, 2005)), rng.choice(JOBS)
        facts = {"born": f"{name} was born in {city} in {year}.", "job": f"{name.split()[0]} worked as a {job}."}
        present = ["born"] + (["job"] if rng.random() < 0.7 else [])
        sentences = [facts[f] for f in present] + rng.sample(FILLER, rng.randint(*filler))
        rng.shuffle(sentences)
        context = " ".join(sentences)
        questions = [(f"Where was {name} born?", city, "born"), (f"When was {name} born?", year, "born"),
                     (f"In which year was {name} born?", year, "born"), (f"What did {name} work as?", job, "job")]
        if "job" not in present and rng.random() < unanswerable:
            rows.append({"id": f"s{seed}-{k}", "question": questions[-1][0], "context": context,
                         "answers": {"text": [], "answer_start": []}})
            continue
        question, answer, fact = rng.choice([q for q in questions if q[2] in present])
        start = context.index(facts[fact]) + facts[fact].index(answer)
        rows.append({"id": f"s{seed}-{k}", "question": question, "context": context,
                     "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def squad_json(rows: list[dict], per_article: int = 10) -> dict:
    """The same questions as SQuAD v2.0 JSON: articles of paragraphs of questions."""
    articles = []
    for a in range(0, len(rows), per_article):
        paragraphs = [{"context": r["context"], "qas": [{
            "id": r["id"], "question": r["question"], "is_impossible": not r["answers"]["text"],
            "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
            for r in rows[a:a + per_article]]
        articles.append({"title": f"article {a // per_article}", "paragraphs": paragraphs})
    return {"version": "v2.0", "data": articles}


def read(path, **spec):
    return read_examples(path, DataSpec(**spec), "extractive_qa")


# ---------------------------------------------------------------- reading


def test_reads_squad_articles_and_flat_rows_alike(tmp_path):
    rows = qa_rows(12, 0, unanswerable=1.0)
    nested = tmp_path / "train.json"
    nested.write_text(json.dumps(squad_json(rows, per_article=5), indent=1))
    flat = write_jsonl(tmp_path / "train.jsonl", rows)
    a, b = read(nested), read(flat)
    assert len(a) == len(b) == 12  # three articles give twelve questions
    strip = lambda ex: {k: v for k, v in ex.items() if k != "_line"}  # noqa: E731
    assert [strip(ex) for ex in a] == [strip(ex) for ex in b]
    articles = [n for n, line in enumerate(nested.read_text().splitlines(), 1) if line == "  {"]  # "data" items
    assert [ex["_line"] for ex in b] == list(range(1, 13)) and a[6]["_line"] == f"{articles[1]}: item 1"
    answered = next(ex for ex in a if ex["answers"])
    start = answered["answer_starts"][0]
    assert answered["context"][start:start + len(answered["answers"][0])] == answered["answers"][0]
    assert any(not ex["answers"] for ex in a)  # unanswerable questions read as no answers
    hub_style = write_jsonl(tmp_path / "list.jsonl", [{"question": "Who?", "context": " Ann came. ",
                                                      "answers": [{"text": "Ann", "answer_start": 1}]}])
    (ex,) = read(hub_style)
    assert ex["context"] == " Ann came. " and ex["answers"] == ["Ann"] and ex["id"] == "1"  # context kept as is


def test_whitespace_around_an_answer_is_stripped_and_its_start_moved(tmp_path, tokenizer):
    context = "The town on the river  Ure was founded by Osric Fenn  founded nothing else."
    rows = [{"id": "a", "question": "Which river?", "context": context,
             "answers": {"text": [" Ure"], "answer_start": [context.index(" Ure")]}},
            {"id": "b", "question": "Who founded it?", "context": context,
             "answers": {"text": ["Osric Fenn "], "answer_start": [context.index("Osric")]}}]
    examples = read(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [(ex["answers"], ex["answer_starts"]) for ex in examples] == [
        (["Ure"], [context.index("Ure")]), (["Osric Fenn"], [context.index("Osric")])]
    data = tokenize(examples, "extractive_qa", [], tokenizer, 64, {"doc_stride": 8})
    targets = [tokenizer.decode(row["input_ids"][row["labels"][0]:row["labels"][1] + 1]) for row in data]
    assert targets == ["ure", "osric fenn"] and data["answers"] == [["Ure"], ["Osric Fenn"]]  # gold answers alike


@pytest.mark.parametrize("invisible", ["\u200b", "\u00ad", "\ufeff", "\u200e"])  # ZWSP, soft hyphen, BOM, LRM
def test_an_invisible_character_at_an_answers_edge_is_stripped_as_whitespace_is(tmp_path, tokenizer, invisible):
    """The tokenizer gives these characters no token: kept, the target took in the word or mark beside it."""
    rows = []
    for k, answer in enumerate([invisible + "Agnes Holt", "Agnes Holt" + invisible, "Agnes" + invisible + "Holt"]):
        context = f"Its founder was {answer}. The mill stands."
        rows.append({"id": str(k), "question": "Who?", "context": context,
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    examples = read(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [ex["answers"] for ex in examples] == [["Agnes Holt"], ["Agnes Holt"], ["Agnes" + invisible + "Holt"]]
    assert all(ex["context"][ex["answer_starts"][0]:].startswith("Agnes") for ex in examples)
    data = tokenize(examples, "extractive_qa", [], tokenizer, 64, {"doc_stride": 16})
    targets = [tokenizer.convert_ids_to_tokens(row["input_ids"][row["labels"][0]:row["labels"][1] + 1]) for row in data]
    assert targets[:2] == [["agnes", "holt"]] * 2 and targets[2] == tokenizer.tokenize("Agnes" + invisible + "Holt")


def test_a_gold_answer_keeps_the_invisible_characters_of_its_graphemes(tmp_path):
    """Stripped character by character, ❤️ lost its U+FE0F and a Malayalam chillu its ZWJ, which decoding keeps
    (both are part of the grapheme before them): exact match 0 for a right answer."""
    rows = []
    for k, answer in enumerate(["\u2764\ufe0f", "അവന്\u200d", "\u200bAnn\u200b"]):
        context = f"He said {answer} today."
        rows.append({"id": str(k), "question": "Who?", "context": context,
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    examples = read(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [ex["answers"] for ex in examples] == [["\u2764\ufe0f"], ["അവന്\u200d"], ["Ann"]]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_answer_start_that_misses_its_text_names_file_and_question(tmp_path, fmt):
    rows = qa_rows(3, 1)
    rows[1]["answers"]["answer_start"][0] += 2
    where = "1: item 0: question 's1-1'" if fmt == "json" else "2: question 's1-1'"  # json: one line
    path = tmp_path / f"bad.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(squad_json(rows)))
    else:
        write_jsonl(path, rows)
    with pytest.raises(UserError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{where}: answer_start")
    assert "not at the answer" in message and "(the answer's text starts at" in message and "\n" not in message


@pytest.mark.parametrize("row, fragment", [
    ({"question": "Q?", "context": "Ann came.", "answers": {"text": ["Bob"], "answer_start": [0]}},
     "(the answer's text is not in the context)"),
    ({"question": "Q?", "context": "Ann came.", "answers": {"text": ["Ann"], "answer_start": ["0"]}},
     "answer_start must be a character position"),
    ({"question": "Q?", "context": "\u200bAnn came.", "answers": {"text": ["\u200b"], "answer_start": [0]}},
     "the answer text must be a string with a visible character, got '\\u200b'"),
    ({"question": "Q?", "context": "Ann came.", "answers": {"text": ["Ann", "x"], "answer_start": [0]}},
     "lists of the same length"),
    ({"question": "", "context": "Ann came.", "answers": {"text": [], "answer_start": []}}, "'question' must be"),
    ({"question": "Q?", "context": 5, "answers": {"text": [], "answer_start": []}}, "'context' must be text"),
    ({"question": "Q?", "context": "Ann came."}, "missing column 'answers' (found: question, context)"),
    ({"paragraphs": [{"context": "Ann came.", "qas": [{"id": "x", "question": "Who?", "is_impossible": True,
                                                        "answers": [{"text": "Ann", "answer_start": 0}]}]}]},
     "question 'x': is_impossible is true, but the question has 1 answer(s)"),
    ({"paragraphs": [{"context": "Ann came.", "qas": {"id": "x"}}]}, "paragraph 0: 'qas' must be a list"),
])
def test_malformed_questions_are_one_line_errors(tmp_path, row, fragment):
    path = write_jsonl(tmp_path / "bad.jsonl", [qa_rows(1, 0)[0], row])
    with pytest.raises(UserError) as info:
        read(path)
    assert str(info.value).startswith(f"{path}:2: ") and fragment in str(info.value), str(info.value)


def test_a_json_object_without_a_data_array_says_what_a_squad_file_holds(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"version": "v1.1", "articles": squad_json(qa_rows(2, 0))["data"]}))
    with pytest.raises(UserError) as info:
        read(path)
    assert str(info.value) == (f'{path}: expected a JSON array of objects, or an object holding one under "data" as a '
                               'SQuAD file does ({"data": [...]}); the top-level object has no "data" array (its keys: '
                               "'version', 'articles') (or use format jsonl)")


def test_unanswerable_questions_need_allow_unanswerable(tmp_path, tiny_encoder):
    rows = qa_rows(20, 2, unanswerable=1.0)
    first = next(i for i, r in enumerate(rows) if not r["answers"]["text"])
    tasks = {"qa": {"type": "extractive_qa", "data": {"train": str(write_jsonl(tmp_path / "t.jsonl", rows))}}}
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks))
    with pytest.raises(UserError) as info:
        read_task(recipe, "qa", recipe.tasks["qa"])
    assert str(info.value) == (f"{tmp_path / 't.jsonl'}:{first + 1}: question '{rows[first]['id']}' has no answer; for "
                               "unanswerable questions (SQuAD 2.0) set allow_unanswerable: true in the task's section")
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks), ["tasks.qa.allow_unanswerable=true"])
    assert len(read_task(recipe, "qa", recipe.tasks["qa"]).examples["train"]) == 20


def test_validation_from_train_keeps_the_questions_of_a_context_together(tmp_path, tiny_encoder):
    rows = []
    for k, row in enumerate(qa_rows(30, 4)):  # three questions per context
        for q in range(3):
            rows.append({**row, "id": f"{k}-{q}"})
    tasks = {"qa": {"type": "extractive_qa", "data": {"train": str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                                      "validation_from_train": 0.2}}}
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks))
    raw = read_task(recipe, "qa", recipe.tasks["qa"]).examples
    train, validation = raw["train"].to_pylist(), raw["validation"].to_pylist()
    assert len(train) + len(validation) == 90 and 18 <= len(validation) <= 20
    assert not {ex["context"] for ex in train} & {ex["context"] for ex in validation}
    one_context = write_jsonl(tmp_path / "one.jsonl", [{**rows[0], "id": str(k)} for k in range(5)])
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks), [f"tasks.qa.data.train={one_context}"])
    with pytest.raises(UserError, match=r"leaves none to train on \(examples with the same context stay together: "
                                        r"1 group\(s\)\)"):
        read_task(recipe, "qa", recipe.tasks["qa"])


def test_recipe_keys_of_the_type(tmp_path, tiny_encoder):
    tasks = {"qa": {"type": "extractive_qa", "data": {"train": "t.json"}}}
    path = write_recipe(tmp_path, tiny_encoder, tasks=tasks)
    recipe = load_recipe(path)
    assert recipe.tasks["qa"].doc_stride == 64 // 3 and recipe.tasks["qa"].max_answer_length == 30
    assert QA.model_spec(recipe.tasks["qa"]) == {"doc_stride": 21, "max_answer_length": 30, "allow_unanswerable": False}
    problems = {"tasks.qa.doc_stride=30": "tasks.qa.doc_stride: must be at most 29 at model.max_length 64, got 30",
                "tasks.qa.data.train=t.csv": "tasks.qa.data.train: an extractive_qa task reads SQuAD json or jsonl "
                                             "files, not csv",
                "tasks.qa.metrics=[accuracy]": "metric 'accuracy' does not apply to a extractive_qa task",
                "tasks.qa.threshold=0.5": "unknown key 'tasks.qa.threshold'",
                "tasks.qa.data.text_column=question": "tasks.qa.data.text_column: does not apply to extractive_qa, "
                                                      "which reads SQuAD's question, context and answers",
                "tasks.qa.data.label_column=answers": "tasks.qa.data.label_column: does not apply to extractive_qa"}
    for override, message in problems.items():
        with pytest.raises(UserError) as info:
            load_recipe(path, [override])
        assert message in str(info.value), str(info.value)
        assert str(info.value).startswith(str(path))


def test_a_doc_stride_past_what_windows_share_is_refused_for_training_and_used_as_they_share_it_in_evaluation(
        tmp_path, tiny_encoder):
    """An earlier mtnlp took a doc_stride up to half of max_length and read windows sharing less: its run's
    recipe.yaml must still evaluate, with a warning; an evaluation recipe without max_length reads at the
    model's length (not 128), where its doc_stride is checked."""
    tasks = {"qa": {"type": "extractive_qa", "data": {"train": "t.json", "validation": "v.json"}}}
    path = write_recipe(tmp_path, tiny_encoder, tasks=tasks)
    with pytest.raises(UserError, match=r"tasks.qa.doc_stride: must be at most 29 at model.max_length 64, got 31: .* "
                                        r"\(an mtnlp before 2026-12-08 took up to 31 and read windows sharing 29: give "
                                        r"29 for the same windows\)$"):
        load_recipe(path, ["tasks.qa.doc_stride=31"])
    head = {"type": "extractive_qa", "labels": [], "doc_stride": 16, "max_answer_length": 30, "allow_unanswerable": False}
    recipe = load_recipe(path, ["tasks.qa.doc_stride=31"], training=False)
    with pytest.warns(UserWarning, match=rf"^{path} \(command-line override\): tasks.qa.doc_stride: 31 is more than "
                                         r"windows of max_length 64 share: 29 is used \(an mtnlp before"):
        assert QA.evaluated_as(recipe, "qa", head, 64) == {**head, "doc_stride": 29}
    assert QA.model_spec(recipe.tasks["qa"])["doc_stride"] == 29  # what load_task tokenises the windows with
    bare = tmp_path / "bare.yaml"  # no model.max_length: evaluate reads at the model's, which may take 100
    bare.write_text(yaml.safe_dump({"model": {"encoder": tiny_encoder}, "tasks": {"qa": {
        "type": "extractive_qa", "doc_stride": 100, "data": {"validation": "v.json"}}}}))
    assert QA.evaluated_as(load_recipe(bare, training=False), "qa", head, 256) == {**head, "doc_stride": 100}
    recipe = load_recipe(bare, training=False)
    with pytest.warns(UserWarning, match=rf"^{bare}:\d+: tasks.qa.doc_stride: 100 is more than windows of max_length 48 "
                                         r"share: 21 is used$"):  # (no note: no mtnlp took 100 at 48)
        assert QA.evaluated_as(recipe, "qa", head, 48) == {**head, "doc_stride": 21}
    assert QA.model_spec(recipe.tasks["qa"])["doc_stride"] == 21


def test_an_evaluation_recipe_without_doc_stride_reads_the_windows_the_model_was_trained_with(tmp_path, tokenizer):
    """Not a third of the recipe's default max_length (42, cut to 21 at 48): the model's doc_stride, 16."""
    rows = qa_rows(20, 3, filler=(6, 8))  # contexts longer than a window
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    plain = tmp_path / "eval.yaml"
    plain.write_text(yaml.safe_dump({"model": {"encoder": minilm_path()}, "tasks": {"qa": {
        "type": "extractive_qa", "data": {"test": str(test)}}}}))
    recipe = load_recipe(plain, training=False)
    head = {"type": "extractive_qa", "labels": [], "doc_stride": 16, "max_answer_length": 30, "allow_unanswerable": False}
    assert QA.evaluated_as(recipe, "qa", head, 48) is head
    data = load_task(recipe, "qa", recipe.tasks["qa"], tokenizer, 48, splits=("test",), labels=[]).splits["test"]
    expected = tokenize(read(test), "extractive_qa", [], tokenizer, 48, {"doc_stride": 16})
    assert len(data) == len(expected) > 2 * len(rows) and data["input_ids"] == expected["input_ids"]


# ---------------------------------------------------------------- windows


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def test_a_long_context_is_read_in_overlapping_windows(tokenizer):
    context = " ".join(FILLER * 2) + " Olga Roth was born in Lyon in 1931. " + " ".join(FILLER)
    start = context.index("Lyon")
    example = {"id": "long", "question": "Where was Olga Roth born?", "context": context, "answers": ["Lyon"],
               "answer_starts": [start]}
    options = {"doc_stride": 8, "max_answer_length": 30, "allow_unanswerable": False}
    data = tokenize([example], "extractive_qa", [], tokenizer, 32, options)
    assert len(data) > 5 and data["window"] == list(range(len(data))) and set(data["example"]) == {"long"}
    assert all(length <= 32 for length in data["length"]) and not any(data["truncated"])
    question = len(tokenizer("Where was Olga Roth born?", add_special_tokens=False)["input_ids"])
    for a, b in zip(data, data.select(range(1, len(data)))):  # consecutive windows share doc_stride tokens
        context_a, context_b = a["input_ids"][question + 2:-1], b["input_ids"][question + 2:-1]
        assert context_a[-8:] == context_b[:8]
    holding = [row for row in data if row["labels"] != [0, 0]]
    assert holding and all(tokenizer.decode(row["input_ids"][row["labels"][0]:row["labels"][1] + 1]) == "lyon"
                           for row in holding)
    assert holding[0]["window"] > 0  # the answer is in a later window; the others point at [CLS]
    # gold logits in every window: the answer comes back with its character offsets
    logits = torch.full((len(data), 40, 2), -10.0)
    for k, row in enumerate(data):
        logits[k, row["labels"][0], 0] = logits[k, row["labels"][1], 1] = 10.0
    rows = data.select_columns(list(QA.prediction_columns))[:]
    predictions = QA.predictions(logits, None, options, rows)
    assert QA.score(QA.references(data), predictions, ["squad_exact_match"], []) == {"squad_exact_match": 1.0}
    best = max((p for p in predictions if p["score"]), key=lambda p: p["score"])
    assert best["text"] == "Lyon"


def test_a_question_too_long_for_the_window_is_cut(tokenizer):
    example = {"id": "q", "question": "Where " * 60 + "was Olga born?", "context": "Olga was born in Lyon.",
               "answers": ["Lyon"], "answer_starts": [17]}
    data = tokenize([example], "extractive_qa", [], tokenizer, 32, {"doc_stride": 8})
    assert all(data["truncated"]) and max(data["length"]) <= 32


def test_a_long_questions_windows_move_on_by_a_quarter_of_what_the_stride_leaves(tokenizer):
    """A question cut to leave stride + 1 context tokens made windows that moved on by one token: a 300-token
    question over a 1,200-token context was 1,072 windows at the default max_length and doc_stride."""
    from mtnlp.tasks.extractive_qa import windows

    context = " ".join(f"word{k}" for k in range(600))  # 1,200 tokens or so
    count = lambda question, max_length=384, stride=128: [  # noqa: E731
        len(enc["input_ids"]) for enc in [windows(tokenizer, [question], [context], max_length, stride)[0]]][0]
    short = count("why?")
    for words in (100, 200, 300):
        assert count("why " * words) <= 4 * short, words
    # the cut leaves 253 - 253 // 4 = 190 question tokens at 384: 190 whole, 191 cut (a 43-token question at 128
    # is whole: 83 - 20 = 63); none may crash the tokenizer, which refuses a stride of as many tokens as a
    # window's context (a cut one token shorter did)
    for max_length, stride in ((384, 128), (128, 42), (64, 31), (64, 0), (32, 8)):
        room = max_length - 3 - min(stride, (max_length - 3) // 2 - 1)
        limit = room - max(1, room // 4)
        for length in range(limit - 1, limit + 3):
            question = " ".join(["why"] * length)
            enc, cut = windows(tokenizer, [question], [context], max_length, stride)
            assert cut == [length > limit], (max_length, stride, length)
            assert max(map(len, enc["input_ids"])) <= max_length


def test_the_data_table_and_truncation_note_count_questions_not_windows(tokenizer):
    from mtnlp.data import TaskData, split_facts
    from mtnlp.evaluation import truncation_note
    from mtnlp.report import data_table

    long_context = " ".join(FILLER * 2) + " Olga Roth was born in Lyon in 1931."
    examples = [{"id": "long", "question": "Where was Olga Roth born?", "context": long_context, "answers": ["Lyon"],
                 "answer_starts": [long_context.index("Lyon")]},
                {"id": "cut", "question": "Where " * 60 + "was Olga born?", "context": "Olga was born in Lyon.",
                 "answers": ["Lyon"], "answer_starts": [17]}]
    data = tokenize(examples, "extractive_qa", [], tokenizer, 64, {"doc_stride": 8})
    assert len(data) > 3  # the long context's windows
    facts = split_facts(data, "extractive_qa", [])
    assert facts == {"examples": 2, "unit": "questions", "labels": "-", "largest": ["answer", 1.0],
                     "smallest": ["no answer", 0.0], "over_max_length": 1, "windows": len(data), "longer_than_window": 1,
                     "answers_in_no_window": 0}
    table = data_table({"qa": {"train": facts}}, 64).splitlines()
    assert table[1].split() == ["qa", "train", "2", "questions", "-", "answer", "100.0%", "no", "answer", "0.0%", "1",
                                "(50.0%)"]
    note = truncation_note(TaskData("qa", "extractive_qa", [], {"train": data}, 64), "train")
    assert note.startswith("qa train: 1 of 2 questions were cut to fit max_length=64 tokens (")


def long_answer_row() -> dict:
    """A question whose answer (20 tokens) no window of 48 tokens with doc_stride 16 holds whole."""
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
    answer = "the founders were " + " and ".join(w.capitalize() for w in words[:8])
    context = " ".join(words) + ". Long ago " + answer + ". " + " ".join(words[8:])
    return {"id": "long", "question": "Who founded it?", "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def test_an_answer_no_window_holds_whole_is_counted_and_named(tokenizer, tmp_path):
    from mtnlp.data import TaskData, split_facts
    from mtnlp.evaluation import truncation_note

    examples = read(write_jsonl(tmp_path / "t.jsonl", [long_answer_row()] + qa_rows(2, 0)))
    data = tokenize(examples, "extractive_qa", [], tokenizer, 48, {"doc_stride": 16})
    assert [row["labels"] for row in data if row["example"] == "long"] == [[0, 0]] * 2  # every window: no answer
    assert split_facts(data, "extractive_qa", [])["answers_in_no_window"] == 1
    note = truncation_note(TaskData("qa", "extractive_qa", [], {"validation": data}, 48, options={"doc_stride": 16}),
                           "validation")
    assert note == ("qa validation: 1 of 3 answers (a question's first) fit in no window whole (longer than "
                    "doc_stride=16 tokens, they cross a window boundary): all their windows target no answer, and a "
                    "prediction can only match another gold answer of the question, if it has one; raise doc_stride "
                    "or max_length")
    wider = tokenize(examples, "extractive_qa", [], tokenizer, 64, {"doc_stride": 21})
    assert split_facts(wider, "extractive_qa", [])["answers_in_no_window"] == 0


def test_training_warns_of_answers_no_window_holds_whole(tmp_path, tiny_encoder):
    from mtnlp.recipes.multitask import train

    rows = [long_answer_row()] + qa_rows(8, 0)
    tasks = {"qa": {"type": "extractive_qa", "data": {"train": str(write_jsonl(tmp_path / "qa.jsonl", rows))}}}
    recipe = write_recipe(tmp_path, tiny_encoder, tasks=tasks, training={"steps": 1},
                          model={"encoder": tiny_encoder, "max_length": 48})
    with pytest.warns(UserWarning, match=r"^qa train: 1 of 9 answers \(a question's first\) fit in no window whole \(longer than doc_stride=16 "
                                         r"tokens.*raise doc_stride or max_length$"):
        result = train(load_recipe(recipe))
    assert result.metrics["data"]["tasks"]["qa"]["train"]["answers_in_no_window"] == 1


def test_a_dropout_the_span_head_has_none_of_is_said_to_be_unread(tmp_path, tiny_encoder, recwarn):
    """BERT's span head (transformers' BertForQuestionAnswering layout, which export keeps) has no dropout: a
    recipe's tasks.qa.dropout changed nothing, and config.json recorded it."""
    from mtnlp.recipes.multitask import train

    tasks = {"qa": {"type": "extractive_qa", "dropout": 0.3, "data": {"train": str(write_jsonl(tmp_path / "qa.jsonl",
                                                                                              qa_rows(8, 0)))}}}
    recipe = write_recipe(tmp_path, tiny_encoder, tasks=tasks, training={"steps": 1},
                          model={"encoder": tiny_encoder, "max_length": 48})
    with pytest.warns(UserWarning, match=r"tasks.qa.dropout: not read: the BERT family's extractive_qa head has no "
                                         r"dropout \(transformers' own layout, which export keeps\)"):
        train(load_recipe(recipe))
    recwarn.clear()
    train(load_recipe(recipe, ["tasks.qa.dropout=0.1", "overwrite_output_dir=true"]))  # the default: nothing said
    assert not [w for w in recwarn if "dropout" in str(w.message)]


def test_span_decoding_is_transformers_question_answering_post_processing():
    """window_spans against transformers' select_starts_ends (the post-processing of its former
    question-answering pipeline, kept for document QA): the same spans and scores."""
    from transformers.pipelines.document_question_answering import select_starts_ends

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(12, 40))
        question = int(rng.integers(2, 8))
        offsets = [None] * (question + 2) + [[3 * i, 3 * i + 2] for i in range(n - question - 3)] + [None]
        logits = rng.normal(0, 3, (n, 2)).astype(np.float32)
        p_mask = np.array([[o is None for o in offsets]], dtype=int)
        p_mask[0, 0] = 0  # the first token ([CLS]) stays unmasked, as the pipeline left it
        for impossible in (False, True):
            starts, ends, scores, null = select_starts_ends(logits[None, :, 0], logits[None, :, 1], p_mask,
                                                            np.ones((1, n), dtype=int), top_k=3,
                                                            handle_impossible_answer=impossible, max_answer_len=4)
            spans, ours = window_spans(logits, offsets, 4, impossible, topk=3)
            assert [(offsets[s][0], offsets[e][1]) for s, e in zip(starts, ends)] == [(a, b) for _, a, b in spans]
            assert [score for score, _, _ in spans] == pytest.approx(scores.tolist(), rel=1e-4)
            assert (ours is None) != impossible and (not impossible or ours == pytest.approx(null, rel=1e-4))


def test_candidates_are_distinct_answers_though_token_spans_merge_into_words():
    """Two tokens per word: many of the best token spans widen to the same words; the candidates are the
    best distinct ones, as many as asked while the context has them."""
    rng = np.random.default_rng(3)
    offsets = [None, None, None] + [[6 * (i // 2), 6 * (i // 2) + 5] for i in range(12)] + [None]
    for trial in range(10):
        logits = rng.normal(0, 3, (len(offsets), 2)).astype(np.float32)
        spans, _ = window_spans(logits, offsets, 30, False, topk=5)
        assert len(spans) == 5 and len({(a, b) for _, a, b in spans}) == 5
        assert [score for score, _, _ in spans] == sorted((score for score, _, _ in spans), reverse=True)
    one_word = [None, None, [0, 5], [0, 5], None]
    spans, _ = window_spans(rng.normal(0, 3, (5, 2)), one_word, 30, False, topk=5)
    assert [(a, b) for _, a, b in spans] == [(0, 5)]  # the context runs out


# ---------------------------------------------------------------- training on a generated set


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """MiniLM trained on 300 generated SQuAD 2.0 questions (a SQuAD JSON file; a quarter of the contexts
    are longer than max_length, 15 % of the questions have no answer), tested on 100 others (JSONL)."""
    from mtnlp.recipes.multitask import train

    folder = tmp_path_factory.mktemp("qa")
    (folder / "train.json").write_text(json.dumps(squad_json(qa_rows(300, 0, unanswerable=0.5))))
    test = write_jsonl(folder / "test.jsonl", qa_rows(100, 1, unanswerable=0.5))
    tasks = {"qa": {"type": "extractive_qa", "allow_unanswerable": True, "doc_stride": 16, "dropout": 0.0,
                    "data": {"train": str(folder / "train.json"), "test": str(test)}}}
    recipe = write_recipe(folder, minilm_path(), tasks=tasks, model={"encoder": minilm_path(), "max_length": 48},
                          training={"steps": 70, "batch_size": 16, "lr": 5e-4, "warmup": 0.0, "log_every": 10})
    result = train(load_recipe(recipe))
    return folder, recipe, result


def test_learns_the_generated_questions(qa_run):
    folder, _, result = qa_run
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    test = metrics["tasks"]["qa"]["test"]
    assert set(test) == {"squad_f1", "squad_exact_match"}
    assert test["squad_exact_match"] >= 0.9 and test["squad_f1"] >= test["squad_exact_match"], test
    assert metrics["majority_baseline"]["qa"]["test"]["squad_exact_match"] < 0.3
    facts = metrics["data"]["tasks"]["qa"]["train"]
    assert facts["examples"] == 300 and facts["windows"] > 300 and facts["longer_than_window"] > 10
    unanswered = sum(not r["answers"]["text"] for r in qa_rows(300, 0, unanswerable=0.5)) / 300
    assert facts["smallest"] == ["no answer", pytest.approx(unanswered)] and facts["over_max_length"] == 0
    spec = result.model.config.tasks["qa"]
    assert spec == {"type": "extractive_qa", "labels": [], "dropout": 0.0, "doc_stride": 16,
                    "max_answer_length": 30, "allow_unanswerable": True}


def test_pipeline_answers_with_character_offsets(qa_run):
    folder, _, _ = qa_run
    pipe = MultiTaskPipeline.from_pretrained(str(folder / "run" / "model"), precision="fp32")
    rows = qa_rows(30, 7, unanswerable=0.5)
    inputs = [{"question": r["question"], "context": r["context"]} for r in rows]
    out = pipe(inputs)
    right = 0
    for row, result in zip(rows, out):
        answer = result["qa"]
        assert set(answer) == {"answer", "start", "end", "score"} and 0 <= answer["score"] <= 1
        assert row["context"][answer["start"]:answer["end"]] == answer["answer"]
        gold = row["answers"]["text"]
        right += answer["answer"] == (gold[0] if gold else "") and (not gold or answer["start"] ==
                                                                      row["answers"]["answer_start"][0])
    assert right >= 27
    # a context far longer than max_length (48): the answer is found in a later window
    context = " ".join(FILLER) + " Olga Roth was born in Lyon in 1931. " + " ".join(reversed(FILLER))
    single = pipe({"question": "Where was Olga Roth born?", "context": context}, return_all_scores=True)
    assert single["qa"]["answer"] == "Lyon" and single["qa"]["start"] == context.index("Lyon")
    candidates = single["qa"]["candidates"]
    assert candidates[0] == {k: v for k, v in single["qa"].items() if k != "candidates"}
    assert len(candidates) > 1 and [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    nothing = pipe({"question": "What did Olga Roth work as?", "context": "Olga Roth was born in Lyon in 1931."})
    assert nothing["qa"]["answer"] == "" and (nothing["qa"]["start"], nothing["qa"]["end"]) == (0, 0)
    with pytest.raises(ValueError, match=r"inputs\[0\]"):
        pipe([{"question": 3, "context": "x"}])  # not a QA input, and not a text either


def test_predict_and_evaluate_from_the_command_line(qa_run, tmp_path, capsys):
    folder, recipe, result = qa_run
    model_dir = folder / "run" / "model"
    rows = qa_rows(3, 9)
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"question": r["question"], "context": r["context"], "id": r["id"]}
                                                 for r in rows])
    capsys.readouterr()
    assert main(["predict", str(model_dir), "--input", str(inputs), "--precision", "fp32"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in rows]
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    for line, row in zip(lines, rows):
        alone = pipe({"question": row["question"], "context": row["context"]})  # batched apart: float sums differ
        assert line["predictions"]["qa"] == {**alone["qa"], "score": pytest.approx(alone["qa"]["score"], rel=1e-5)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(inputs.read_text().splitlines()[0] + '\n{"question": "Who?"}\n')
    assert main(["predict", str(model_dir), "--input", str(bad)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f'error: {bad}:2: expected a JSON string, an object with a "text" string') \
        and '{"question", "context"} (extractive_qa)' in error and len(error.splitlines()) == 1
    assert main(["evaluate", str(model_dir), str(recipe), "--split", "test", "--output", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())["tasks"]["qa"]["test"]
    assert evaluated == pytest.approx(result.metrics["tasks"]["qa"]["test"], abs=1e-9)
    assert "instead of the model's" not in capsys.readouterr().out  # the training recipe: the model's settings
    assert main(["evaluate", str(model_dir), str(recipe), "tasks.qa.max_answer_length=1", "--split", "test"]) == 0
    assert "qa: max_answer_length 1 from the recipe, instead of the model's" in capsys.readouterr().out
    # a plain evaluation recipe (no max_length, doc_stride, max_answer_length or allow_unanswerable): the model's
    # settings, not the recipe's defaults (doc_stride was a third of the default max_length 128, 42, where the model's
    # is 16; the test file's unanswerable questions were refused: allow_unanswerable is false by default)
    plain = tmp_path / "eval.yaml"
    plain.write_text(yaml.safe_dump({"model": {"encoder": minilm_path()}, "tasks": {"qa": {
        "type": "extractive_qa", "data": {"test": str(folder / "test.jsonl")}}}}))
    assert main(["evaluate", str(model_dir), str(plain), "--split", "test", "--output", str(tmp_path / "p.json")]) == 0
    assert "instead of the model's" not in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["tasks"]["qa"]["test"] == pytest.approx(evaluated, abs=1e-9)


def test_evaluation_uses_the_recipes_decoding_settings_where_they_differ_from_the_models(tmp_path, tiny_encoder):
    tasks = {"qa": {"type": "extractive_qa", "doc_stride": 16, "data": {"train": "t.json"}}}
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks))
    head = {"type": "extractive_qa", "labels": [], "doc_stride": 16, "max_answer_length": 30, "allow_unanswerable": False}
    assert QA.evaluated_as(recipe, "qa", head, 64) is head
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks),
                         ["tasks.qa.max_answer_length=3", "tasks.qa.allow_unanswerable=true", "tasks.qa.doc_stride=8"])
    assert QA.evaluated_as(recipe, "qa", head, 64) == {**head, "max_answer_length": 3, "allow_unanswerable": True,
                                                       "doc_stride": 8}


# ---------------------------------------------------------------- export


def transformers_answers(folder, inputs: list[dict], max_length: int, stride: int, max_answer_len: int,
                         impossible: bool) -> list[dict]:
    """The answers of transformers' question-answering pipeline for an exported folder. transformers 5
    removed that pipeline; then its steps with plain transformers: the exported model's logits per
    window, the pipeline's post-processing (select_starts_ends) and its alignment to words."""
    import transformers

    try:
        qa = transformers.pipeline("question-answering", model=str(folder))
    except KeyError as e:
        assert "has been removed from transformers" in str(e)
    else:  # transformers 4
        return [qa(**value, max_seq_len=max_length, doc_stride=stride, max_answer_len=max_answer_len,
                   handle_impossible_answer=impossible) for value in inputs]
    from transformers.pipelines.document_question_answering import select_starts_ends

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    answers = []
    for value in inputs:
        enc = tokenizer(value["question"], value["context"], truncation="only_second", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
                        return_tensors="pt")
        with torch.no_grad():
            out = model(**{k: enc[k] for k in tokenizer.model_input_names if k in enc})
        found, null = [], 1e6
        for i in range(len(enc["input_ids"])):
            p_mask = np.array([[s != 1 for s in enc.sequence_ids(i)]], dtype=int)
            p_mask[0, 0] = 0
            starts, ends, scores, null = select_starts_ends(
                out.start_logits[i:i + 1].numpy(), out.end_logits[i:i + 1].numpy(), p_mask,
                enc["attention_mask"][i:i + 1].numpy(), null, 1, impossible, max_answer_len)
            for s, e, score in zip(starts, ends, scores):
                a = enc.word_to_chars(i, enc.token_to_word(i, int(s)), sequence_index=1)[0]
                b = enc.word_to_chars(i, enc.token_to_word(i, int(e)), sequence_index=1)[1]
                found.append({"score": float(score), "start": a, "end": b, "answer": value["context"][a:b]})
        if impossible:
            found.append({"score": null, "start": 0, "end": 0, "answer": ""})
        answers.append(sorted(found, key=lambda x: -x["score"])[0])
    return answers


QUESTIONS = [{"question": "Where was Olga Roth born?", "context": "Olga Roth was born in Lyon in 1931."},
             {"question": "In which year was Ben Lang born?",
              "context": " ".join(FILLER[:4]) + " Ben Lang was born in Oslo in 1950. " + " ".join(FILLER[4:])}]


def test_export_of_the_trained_head(qa_run, tmp_path):
    folder, _, _ = qa_run
    model_dir = folder / "run" / "model"
    assert main(["export", str(model_dir), "--task", "qa", str(tmp_path / "qa")]) == 0
    exported = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa").eval()
    assert type(exported).__name__ == "BertForQuestionAnswering"
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    ours = [p["qa"] for p in pipe(QUESTIONS)]
    # the export alone says how to window and decode: as trained (max_length 48, doc_stride 16, SQuAD 2.0)
    config, tokenizer = exported.config, AutoTokenizer.from_pretrained(tmp_path / "qa")
    settings = (tokenizer.model_max_length, config.doc_stride, config.max_answer_length, config.allow_unanswerable)
    assert settings == (48, 16, 30, True)
    theirs = transformers_answers(tmp_path / "qa", QUESTIONS, *settings)
    assert [o["answer"] for o in ours] == ["Lyon", "1950"]
    for o, t in zip(ours, theirs):
        assert (o["answer"], o["start"], o["end"]) == (t["answer"], t["start"], t["end"])
        assert o["score"] == pytest.approx(t["score"], abs=1e-4)


FAMILY_TYPES = ["bert", "roberta", "xlm-roberta", "deberta-v2", "electra", "distilbert", "modernbert"]


@pytest.fixture(scope="module")
def family_encoders(tmp_path_factory, tokenizer) -> dict[str, str]:
    from test_families import save_encoders

    return save_encoders(tmp_path_factory, tokenizer)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_export_parity_with_each_familys_question_answering_class(family_encoders, tokenizer, tmp_path, model_type):
    spec = {"type": "extractive_qa", "labels": [], "dropout": 0.1, "doc_stride": 8, "max_answer_length": 5,
            "allow_unanswerable": model_type in ("bert", "roberta")}
    model = MultiTaskModel.from_encoder(family_encoders[model_type], {"qa": spec})
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval().config.mtnlp = {"max_length": 32}
    head = {name for name, m in model.heads["qa"].named_children() if list(m.parameters())}
    assert head == ({"head", "classifier"} if model_type == "modernbert" else {"qa_outputs"})
    folder = export_folder(model, tokenizer, "qa", tmp_path / "qa")
    exported = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    assert type(exported).__name__.endswith("ForQuestionAnswering") and exported.config.model_type == model_type
    plain = AutoTokenizer.from_pretrained(folder)
    enc = plain([q["question"] for q in QUESTIONS], [q["context"] for q in QUESTIONS], padding=True,
                truncation="only_second", max_length=32, return_tensors="pt")
    with torch.no_grad():
        theirs = exported(**enc)
        ours = model(**enc, task="qa").logits
    torch.testing.assert_close(theirs.start_logits, ours[..., 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.end_logits, ours[..., 1], atol=1e-5, rtol=0)
    pipe = MultiTaskPipeline(model, tokenizer, precision="fp32")
    mine = [p["qa"] for p in pipe(QUESTIONS)]
    reference = transformers_answers(folder, QUESTIONS, 32, 8, 5, spec["allow_unanswerable"])
    for o, t in zip(mine, reference):
        assert (o["answer"], o["start"], o["end"]) == (t["answer"], t["start"], t["end"]), (o, t)
        assert o["score"] == pytest.approx(t["score"], abs=1e-4)


# ---------------------------------------------------------------- hub


def test_hub_round_trip(qa_run, tmp_path):
    from cli_runner import CliSession
    from hub_server import LocalHub, client_env

    folder, _, _ = qa_run
    inputs = write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
    with LocalHub() as hub, CliSession(client_env(hub.url, tmp_path / "client", "hf_token_x"), tmp_path) as mtnlp:
        push = mtnlp("push", str(folder / "run" / "model"), "org/qa")
        assert push.returncode == 0, push.stderr[-2000:]
        pulled = mtnlp("predict", "org/qa", "--input", str(inputs), "--precision", "fp32")
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        card = hub.repo_files("org/qa")["README.md"].decode()
    assert "pipeline_tag: question-answering" in card and "| qa | extractive_qa | (answer spans) |" in card
    from mtnlp.tasks import task_type

    assert f'pipe({json.dumps(task_type("extractive_qa").example_input)})   # the qa head' in card
    assert "pipe(\"Some text" not in card  # no text head: no text example
    local = MultiTaskPipeline.from_pretrained(str(folder / "run" / "model"), precision="fp32")(QUESTIONS)
    remote = [json.loads(line)["predictions"] for line in pulled.stdout.splitlines()]
    for r, loc in zip(remote, local):
        assert (r["qa"]["answer"], r["qa"]["start"], r["qa"]["end"]) == (loc["qa"]["answer"], loc["qa"]["start"],
                                                                         loc["qa"]["end"])
        assert r["qa"]["score"] == pytest.approx(loc["qa"]["score"], abs=1e-5)


# ---------------------------------------------------------------- beside other tasks


def test_a_qa_head_beside_a_classification_head(tmp_path, tiny_encoder, capsys):
    from mtnlp.recipes.multitask import train

    tasks = {"qa": {"type": "extractive_qa", "allow_unanswerable": True,
                    "data": {"train": str(write_jsonl(tmp_path / "qa.jsonl", qa_rows(40, 3, unanswerable=0.5))),
                             "validation_from_train": 0.25}},
             "sentiment": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                              "validation_from_train": 0.25, "text_column": "sentence"}}}
    recipe = write_recipe(tmp_path, tiny_encoder, tasks=tasks, training={"steps": 6})
    result = train(load_recipe(recipe))
    assert set(result.metrics["tasks"]["qa"]["validation"]) == {"squad_f1", "squad_exact_match"}
    assert set(result.metrics["tasks"]["sentiment"]["validation"]) == {"accuracy", "f1"}
    model_dir = tmp_path / "run" / "model"
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    calls = []
    pipe.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    out = pipe(["a gorgeous movie", QUESTIONS[0], "dull and slow"])
    assert len(calls) == 2  # the text heads: one pass for both texts; the QA head: one
    assert set(out[0]) == {"sentiment"} and set(out[1]) == {"qa"} and set(out[2]) == {"sentiment"}
    assert out[1]["qa"]["answer"] == QUESTIONS[0]["context"][out[1]["qa"]["start"]:out[1]["qa"]["end"]]
    assert out[0]["sentiment"] == pipe("a gorgeous movie")["sentiment"]
    # a cut question is named with the cut texts, in one warning (predict names its line, serve its request)
    from mtnlp.pipeline import truncations

    long_question = {"question": "why " * 200 + "?", "context": QUESTIONS[0]["context"]}
    _, cut = truncations(lambda: pipe(["fine", long_question, "so " * 300]))
    assert [w.indices for w in cut] == [[1, 2]]
    assert "a question of more than three quarters of a window's tokens past doc_stride is cut" in str(cut[0])
    assert "sequence heads read only what fits" in str(cut[0])
    inputs = write_jsonl(tmp_path / "mixed.jsonl", ["a gorgeous movie", QUESTIONS[0]])
    capsys.readouterr()
    assert main(["predict", str(model_dir), "--input", str(inputs), "--precision", "fp32"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(line["predictions"]) for line in lines] == [{"sentiment"}, {"qa"}]
    assert lines[1]["question"] == QUESTIONS[0]["question"]


def test_the_shipped_qa_recipe_reads_its_data():
    """recipes/qa_example.yaml: a SQuAD v2.0 file for training and flat rows for validation (shipped)."""
    from conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "qa_example.yaml")
    raw = read_task(recipe, "qa", recipe.tasks["qa"])
    assert {split: len(examples) for split, examples in raw.examples.items()} == {"train": 240, "validation": 60}
    assert sum(not ex["answers"] for ex in raw.examples["train"].to_pylist()) == 33  # is_impossible questions
    for ex in raw.examples["validation"].to_pylist():
        for text, start in zip(ex["answers"], ex["answer_starts"]):
            assert ex["context"][start:start + len(text)] == text
    assert recipe.tasks["qa"].doc_stride == 16 and recipe.tasks["question"].type == "classification"


def test_an_answer_ending_in_a_combining_mark_keeps_it():
    """An uncased tokenizer strips accents: "José" written J o s e + U+0301 has token offsets that end
    before the mark. The answer (decoding) and the training target must still cover it."""
    from mtnlp.tasks.extractive_qa import span_target, window_words, windows

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    context = "The founder was Jose\u0301. I \u2764\ufe0f NY"
    enc, _ = windows(tokenizer, ["Who?"], [context], 64, 16)
    sequence = enc.sequence_ids(0)
    offsets, words = (found[0] for found in window_words(enc, [context]))
    jose = next(k for k, span in enumerate(words) if span and context[span[0]:span[1]].startswith("Jose"))
    assert context[words[jose][0]:words[jose][1]] == "Jose\u0301"
    assert any(span and context[span[0]:span[1]] == "\u2764\ufe0f" for span in words)
    start = context.index("Jose")
    assert span_target(offsets, sequence, start, len("Jose\u0301")) == [jose, jose]  # not up to the "."


def test_answer_bounds_leave_out_the_whitespace_a_token_holds():
    """Byte-level BPE tokenizers without trim_offsets (ModernBERT's) give a word its leading space, and a run
    of spaces is a token of its own: an answer must neither start with a space nor be one."""
    from mtnlp.tasks.extractive_qa import context_offsets

    context = "Blackburn met  John"
    tokens = [(0, 9), (9, 13), (13, 14), (14, 19)]  # "Blackburn", " met", " ", " John"
    assert context_offsets(tokens, [1, 1, 1, 1], context) == [(0, 9), (10, 13), (14, 14), (15, 19)]
    assert context_offsets([(0, 3)], [0], "  a question") == [(0, 3)]  # the question's tokens are left alone


def test_answer_bounds_over_a_long_run_of_combining_marks_cost_linear_time():
    """Byte-level BPE makes a run of combining marks many tokens; each token's end scanned the rest of the run
    (8,000 marks: 14 s over a context's windows). Every token in the run ends where the run ends."""
    from conftest import cost_ratio

    from mtnlp.tasks.extractive_qa import context_offsets

    def bounds(m, runs=1):  # `runs` words of "Jose" and m marks, a token each mark
        context = ("Jose" + "\u0301" * m + " ") * runs + "end"
        tokens = [(w * (m + 5) + a, w * (m + 5) + b) for w in range(runs) for a, b in [(0, 4)] + [(4 + i, 5 + i) for i in range(m)]]
        return context_offsets(tokens + [(len(context) - 3, len(context))], [1] * (len(tokens) + 1), context)

    assert bounds(3) == [(0, 7), (4, 7), (5, 7), (6, 7), (8, 11)]
    # 64,000 marks in runs of 500 or 8,000: linear, about 1; quadratic in a run's length, about 16
    assert cost_ratio(lambda m: bounds(m, 64_000 // m), 500, 8_000) < 4


def test_each_window_keeps_only_the_part_of_the_context_it_covers(tokenizer):
    """Every window held the whole context: a long context's tokenised rows grew with the square of its length."""
    from mtnlp.tasks import task_type

    context = "The town was founded by Osric Fenn in 1620 . " * 600
    batch = {"question": ["Who founded the town?"], "context": [context], "answers": [["Osric Fenn"]],
             "answer_starts": [[24]], "id": ["q"]}
    out = task_type("extractive_qa").encode(batch, tokenizer, 64, {}, {})
    assert len(out["input_ids"]) > 100
    assert sum(map(len, out["context"])) < 2.5 * len(context)  # the windows overlap by doc_stride
    for part, start, spans in zip(out["context"], out["context_start"], out["offsets"]):
        assert context[start:start + len(part)] == part
        assert all(start <= s <= e <= start + len(part) for s, e in filter(None, spans))


def answer_words(tokenizer, context: str, question: str = "Who?", max_length: int = 64, stride: int = 16) -> set[str]:
    """The words a span's ends may widen to, over every window of one question on `context`."""
    from mtnlp.tasks.extractive_qa import window_words, windows

    enc, _ = windows(tokenizer, [question], [context], max_length, stride)
    return {context[a:b] for spans in window_words(enc, [context])[1] for a, b in filter(None, spans)}


def test_a_word_a_window_edge_cuts_is_whole():
    """A word's extent came from one window's tokens: where a window ended inside "Osric" (os ##ric) that
    window's "whole word" was "os", and an answer there was 'Os' (exact match 0.67 on 3 such questions); 6 of
    these 40 placements gave a fragment ('Fen', 'Fennimoreworth', ...)."""
    import re

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    filler = "The hills nearby are good for walking. The old mill still stands. Its church has a tall spire. "
    for shift in range(40):
        context = "Pennick lies on the river Ure. " + filler + "x " * shift + \
            "Its founder was Osric Fennimoreworthingtonshire. The town was founded in 1620."
        whole = {m.group() for m in re.finditer(r"\w+|[^\w\s]", context)}
        assert answer_words(tokenizer, context, "Who founded Pennick?") == whole, shift


@pytest.fixture(scope="module")
def byte_level_bpe(tmp_path_factory):
    from transformers import RobertaTokenizer

    from conftest import train_byte_level_bpe

    folder = train_byte_level_bpe(tmp_path_factory.mktemp("bpe"), ["The founder was José Nũñez of Bangkok.",
                                                                    "สวัสดีครับ"] * 20, vocab_size=300)
    return RobertaTokenizer.from_pretrained(folder)


def test_byte_level_bpe_answers_are_whole_words_across_combining_marks(byte_level_bpe):
    """GPT-2's pre-tokenizer makes a combining mark a word of its own: José written e + U+0301 and Thai's vowel
    signs split words, and answers came out as 'José Nũñ', a lone accent or 'ครั'."""
    import unicodedata

    context = unicodedata.normalize("NFD", "The founder was José Nũñez, สวัสดีครับ.")
    assert {"José", "Nũñez", "สวัสดีครับ", ","}.issubset({unicodedata.normalize("NFC", w) for w in
                                                            answer_words(byte_level_bpe, context)})
    assert not any(unicodedata.category(w[0]).startswith("M") for w in answer_words(byte_level_bpe, context))
    # a word ending in a mark keeps the punctuation after it out (the pre-tokenizer makes ै। one word)
    context = unicodedata.normalize("NFD", "यह भाषा है। Emily Brontë.")
    words = {unicodedata.normalize("NFC", w) for w in answer_words(byte_level_bpe, context)}
    assert {"है", "भाषा", "Brontë"}.issubset(words) and not {"है।", "Brontë."} & words, words


def test_an_answer_is_never_only_invisible_characters_and_keeps_its_graphemes(byte_level_bpe):
    """A zero-width space or DEL was an answer of its own (byte-level BPE gives it a token); a flag's tag
    characters and a closing ZWJ, which an uncased WordPiece drops, were cut off the answer's end."""
    words = answer_words(byte_level_bpe, "c\u200bd and e \x7f f")
    assert not any(w in ("\u200b", "\x7f") or w[-1] in "\u200b\x7f" or w[0] in "\u200b\x7f" for w in words), words
    flag = "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"  # Scotland's
    wordpiece = AutoTokenizer.from_pretrained(minilm_path())
    assert flag in answer_words(wordpiece, f"Its flag is {flag}.")
    assert "അവന്\u200d" in answer_words(wordpiece, "He said അവന്\u200d today.")


# ---------------------------------------------------------------- behaviour no other test pinned (mutation testing)

def test_qa_no_answer_needs_the_smallest_null_score_of_the_windows_to_win():
    from mtnlp.tasks import task_type

    qa = task_type("extractive_qa")
    refs = [{"window": 0, "answers": ["paris"]}, {"window": 1, "answers": ["paris"]}]
    # window 0 holds the answer (null 0.1 < span 0.5); window 1 does not (null 0.9): the answer stands
    preds = [{"text": "paris", "score": 0.5, "null": 0.1}, {"text": "", "score": 0.01, "null": 0.9}]
    assert qa.score(refs, preds, ["squad_exact_match"], []) == {"squad_exact_match": 1.0}


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


@pytest.fixture(scope="module")
def qa_pipe(tiny_encoder):
    from transformers import AutoTokenizer

    model = MultiTaskModel.from_encoder(tiny_encoder, {"qa": {"type": "extractive_qa", "allow_unanswerable": True}})
    return MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder), device="cpu", precision="fp32",
                             max_length=32)


def test_the_pipelines_no_answer_score_is_the_smallest_of_the_windows(qa_pipe, monkeypatch):
    from mtnlp.tasks import extractive_qa

    calls = []

    def fake(logits, offsets, max_answer_length, allow_null, topk=1):  # window 0: confident no answer; window 1: not
        calls.append(1)
        return ([(0.5, 0, 3)], 0.9) if len(calls) == 1 else ([], 0.1)

    monkeypatch.setattr(extractive_qa, "window_spans", fake)
    out = qa_pipe({"question": "who?", "context": " ".join(["word"] * 60)}, return_all_scores=True)["qa"]
    assert len(calls) >= 2
    assert out["answer"] == "wor" and out["score"] == 0.5
    assert {"answer": "", "start": 0, "end": 0, "score": 0.1} in out["candidates"]


def test_the_pipelines_qa_answer_is_the_best_span_of_all_windows(qa_pipe, monkeypatch):
    from mtnlp.tasks import extractive_qa

    calls = []

    def fake(logits, offsets, max_answer_length, allow_null, topk=1):  # the later window holds the better span
        calls.append(1)
        return ([(0.2, 0, 3)], None) if len(calls) == 1 else ([(0.7, 5, 9)], None)

    monkeypatch.setattr(extractive_qa, "window_spans", fake)
    out = qa_pipe({"question": "who?", "context": " ".join(["word"] * 60)})["qa"]
    assert len(calls) >= 2 and out == {"answer": "word", "start": 5, "end": 9, "score": 0.7}


def test_qa_evaluation_predicts_no_answer_when_every_window_is_surer_of_none():
    qa = task_type("extractive_qa")
    refs = [{"window": 0, "answers": []}, {"window": 1, "answers": []}]
    preds = [{"text": "paris", "score": 0.5, "null": 0.8}, {"text": "", "score": 0.01, "null": 0.9}]
    assert qa.score(refs, preds, ["squad_exact_match"], []) == {"squad_exact_match": 1.0}


# ---------------------------------------------------------------- pinned by mutation testing (mutation7 survivors)


def test_the_pipeline_keeps_a_spans_better_score_when_two_windows_find_it(qa_pipe, monkeypatch):
    """A span in two overlapping windows kept the score of the window that was surer of no answer: the pipeline
    answered "" though one window gave the span 0.9 against a no-answer score of 0.5."""
    from mtnlp.tasks import extractive_qa

    calls = []

    def fake(logits, offsets, max_answer_length, allow_null, topk=1):  # the same span: 0.9, then 0.2 in later windows
        calls.append(1)
        return ([(0.9, 0, 4)], 0.5) if len(calls) == 1 else ([(0.2, 0, 4)], 0.6)

    monkeypatch.setattr(extractive_qa, "window_spans", fake)
    out = qa_pipe({"question": "who?", "context": " ".join(["word"] * 60)}, return_all_scores=True)["qa"]
    assert len(calls) >= 2
    assert {key: out[key] for key in ("answer", "start", "end", "score")} == \
        {"answer": "word", "start": 0, "end": 4, "score": 0.9}


def test_questions_of_one_window_each_are_scored_each_on_its_own():
    """A question read in one window was merged with the next question: two right answers scored 0."""
    from mtnlp.tasks.extractive_qa import per_example

    refs = [{"window": 0, "answers": ["Paris"]}, {"window": 0, "answers": ["1620"]},
            {"window": 0, "answers": ["Fenn"]}, {"window": 1, "answers": ["Fenn"]}]
    preds = [{"text": "Paris", "score": 0.4, "null": None}, {"text": "1620", "score": 0.9, "null": None},
             {"text": "Fenn", "score": 0.8, "null": None}, {"text": "town", "score": 0.1, "null": None}]
    assert [len(group) for group, _ in per_example(refs, preds)] == [1, 1, 2]
    assert QA.score(refs[:2], preds[:2], ["squad_exact_match", "squad_f1"], []) == \
        {"squad_exact_match": 1.0, "squad_f1": 1.0}


def test_a_question_with_several_gold_answers_trains_on_its_first(tokenizer):
    """The target took the last answer's start with the first answer's length: 'fenn in 1620' for 'Osric Fenn'."""
    context = "The town was founded by Osric Fenn in 1620."
    batch = {"id": ["a"], "question": ["Who founded the town?"], "context": [context],
             "answers": [["Osric Fenn", "Fenn"]], "answer_starts": [[context.index("Osric"), context.index("Fenn")]]}
    out = QA.encode(batch, tokenizer, 64, {})
    s, e = out["labels"][0]
    assert tokenizer.decode(out["input_ids"][0][s:e + 1]) == "osric fenn"


def test_an_answer_at_the_very_start_or_end_of_the_context_is_a_target(tokenizer):
    """An answer starting at the context's first character or ending at its last was trained as no answer ([CLS])."""
    context = "Osric Fenn founded the town"
    batch = {"id": ["a", "b"], "question": ["Who founded the town?", "What did he found?"], "context": [context] * 2,
             "answers": [["Osric Fenn"], ["town"]], "answer_starts": [[0], [context.index("town")]]}
    out = QA.encode(batch, tokenizer, 64, {})
    assert [tokenizer.decode(ids[s:e + 1]) for ids, (s, e) in zip(out["input_ids"], out["labels"])] == \
        ["osric fenn", "town"]


def test_the_qa_loss_is_the_mean_of_the_start_and_end_cross_entropies():
    """The sum of the two was twice transformers' QA loss: the QA task weighed double against the others."""
    from torch.nn import functional as F

    torch.manual_seed(0)
    logits, labels = torch.randn(3, 12, 2), torch.tensor([[3, 5], [0, 0], [7, 7]])
    expected = (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
    assert QA.loss(logits, labels, {}).item() == pytest.approx(expected.item(), rel=1e-6)


def test_an_answer_word_does_not_start_with_an_invisible_character(byte_level_bpe):
    """Byte-level BPE makes a zero-width space and the punctuation after it one word: answers started with U+200B."""
    from mtnlp.tasks.extractive_qa import whole_words

    assert whole_words({0: (6, 11)}, "Paris \u200bFenn") == {0: [7, 11]}  # "Fenn"
    words = answer_words(byte_level_bpe, "He said \u200b(Fenn) today.")
    assert "(" in words and not any(w.startswith("\u200b") for w in words), words


def test_the_majority_baseline_counts_questions_not_windows():
    """Counted per window, one question with a long context (3 windows, "A") outvoted two questions answered "B"."""
    from datasets import Dataset

    train = Dataset.from_dict({"answers": [["A"], ["A"], ["A"], ["B"], ["B"]], "window": [0, 1, 2, 0, 0]})
    assert [p["text"] for p in QA.baseline(train, [None] * 2, [])] == ["B", "B"]


def test_training_reads_a_question_without_the_whitespace_around_it(tmp_path, byte_level_bpe):
    """With byte-level BPE a space is a token ('Ġ'): unstripped, training read another question than the pipeline."""
    context = "The founder was José Nũñez of Bangkok."
    rows = [{"id": str(k), "question": question, "context": context,
             "answers": {"text": ["Bangkok"], "answer_start": [context.index("Bangkok")]}}
            for k, question in enumerate(["Where was he from?", "  Where was he from? \n"])]
    examples = read(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [ex["question"] for ex in examples] == ["Where was he from?"] * 2
    data = tokenize(examples, "extractive_qa", [], byte_level_bpe, 64, {})
    assert data[0]["input_ids"] == data[1]["input_ids"]


def test_the_pipeline_reads_a_question_without_the_whitespace_around_it(tiny_encoder, byte_level_bpe):
    """The pipeline read ' who?' as 'Ġwho' with byte-level BPE, not the question training read: other answers."""
    assert byte_level_bpe.tokenize("  Who was it? ") != byte_level_bpe.tokenize("Who was it?")  # not vacuous
    model = MultiTaskModel.from_encoder(tiny_encoder, {"qa": {"type": "extractive_qa", "allow_unanswerable": True}})
    pipe = MultiTaskPipeline(model, byte_level_bpe, device="cpu", precision="fp32", max_length=32)
    context = "The founder was José Nũñez of Bangkok. " * 3
    clean, padded = pipe([{"question": "Who was it?", "context": context},
                          {"question": "  Who was it? \n", "context": context}], return_all_scores=True)
    assert padded["qa"]["candidates"] == clean["qa"]["candidates"]
