"""type: multiple_choice end to end — reading and its errors, (batch, choices, length) batches, training
that learns a generated set beside a classification task, the pipeline (both heads answer their own
inputs in one call), `mtnlp predict`, export to AutoModelForMultipleChoice (logit parity for every
encoder family) and the hub round trip."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import DATA, REPO, minilm_path, write_jsonl, write_recipe
from transformers import AutoModel, AutoModelForMultipleChoice, AutoTokenizer

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.cli import main
from mtnlp.data import collate, read_task, tokenize
from mtnlp.errors import UserError
from mtnlp.export import export_head
from conftest import read_examples
from mtnlp.recipe import load_recipe
from mtnlp.tasks import TASK_TYPES
from mtnlp.tasks.multiple_choice import ChoiceData

RECIPE = REPO / "recipes" / "multiple_choice_example.yaml"
MC = TASK_TYPES["multiple_choice"]


def read(path, **spec):
    return read_examples(path, ChoiceData(**spec), "multiple_choice")


# ---------------------------------------------------------------- reading


def test_choices_as_a_list_or_columns_labels_as_index_or_text(tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "The sky is", "choices": ["blue", "loud", "salty"], "label": 0},
        {"text": "Sugar tastes", "choices": ["blue", "loud", "sweet"], "label": "sweet"},
        {"text": "Thunder is", "choices": ["blue", "loud", "salty"], "label": "1"},  # CSV-like index
        {"text": "Pick", "choices": [7, 5, 3], "label": "5"},  # the text of choice 1 (5 is no index of 3 choices)
        {"text": "2 + 1 =", "choices": ["3", "4", "5", "6"], "label": 3},  # a JSON number: an index, as in SWAG
    ])
    assert [(ex["choices"], ex["label"]) for ex in read(jsonl)] == [
        (["blue", "loud", "salty"], 0), (["blue", "loud", "sweet"], 2), (["blue", "loud", "salty"], 1),
        (["7", "5", "3"], 1), (["3", "4", "5", "6"], 3)]
    swag = tmp_path / "swag.csv"  # SWAG's columns: sent1 the context, sent2 the start of every ending
    swag.write_text("sent1,sent2,ending0,ending1,label\nShe opens the door.,Then she,walks in.,eats the door.,0\n")
    [ex] = read(swag, text_column="sent1", question_column="sent2", choices_column=["ending0", "ending1"])
    assert ex == {"text": "She opens the door.", "question": "Then she", "choices": ["walks in.", "eats the door."],
                  "label": 0, "_line": 2}
    as_json = tmp_path / "b.tsv"
    as_json.write_text('question\toptions\tanswer\nWhich is red?\t["grass", "blood"]\tB\n'
                       'Which is green?\t ["grass", "blood"]\tA\n')  # (a space before the list: still a list)
    first, second = read(as_json, text_column="question", choices_column="options", label_column="answer",
                         label_names={"A": "0", "B": "1"})
    assert (first["text"], first["choices"], first["label"]) == ("Which is red?", ["grass", "blood"], 1)
    assert (second["choices"], second["label"]) == (["grass", "blood"], 0)
    ex = first
    assert MC.label_set([ex]) == [] and MC.min_labels == 0  # choice positions, not a label set


@pytest.mark.parametrize("row, spec, fragment", [
    ({"text": "x", "choices": ["only"], "label": 0}, {}, "1 choice(s); a multiple_choice example needs at least 2"),
    ({"text": "x", "choices": ["a", "b"], "label": 2}, {}, "label 2 is out of range: 2 choices, indices 0-1"),
    ({"text": "x", "choices": ["a", "b"], "label": -1}, {}, "label -1 is out of range"),
    ({"text": "x", "choices": ["a", "b"], "label": "-1"}, {}, "label -1 is out of range"),  # as a CSV cell gives it
    ({"text": "x", "choices": ["a", "b"], "label": "c"}, {}, "label 'c' is not a choice index (0-1) nor one of the choices "
                                                             "(letter labels map to indices with data.label_names: "
                                                             "{a: \"0\", b: \"1\"})"),
    ({"text": "x", "choices": ["p", "q", "r", "s"], "label": "B"}, {},
     "label 'B' is not a choice index (0-3) nor one of the choices (letter labels map to indices with "
     "data.label_names: {A: \"0\", B: \"1\", C: \"2\", D: \"3\"})"),
    ({"text": "x", "choices": ["a", "b"], "label": "c"}, {"label_kind": "text"}, "label 'c' is not one of the choices"),
    ({"text": "x", "choices": ["a", "b"], "label": "a"}, {"label_kind": "index"}, "label 'a' is not a choice index (0-1)"),
    ({"text": "x", "choices": ["1", "0"], "label": "1"}, {}, "both the text of choice 0 and the index of another"),
    ({"text": "x", "choices": ["a", "a"], "label": "a"}, {}, "label 'a' matches choices 0 and 1"),
    ({"text": "x", "choices": ["a", "b"], "label": True}, {}, "label must be a choice's index or text"),
    ({"text": "x", "choices": ["a", "b"], "label": None}, {}, "empty label in column 'label'"),
    ({"text": "x", "choices": "a or b", "label": 0}, {}, "column 'choices' must hold a list of choices"),
    ({"text": "x", "choices": "[\"a\", ", "label": 0}, {}, "look like a JSON list but do not parse"),
    # a CSV/TSV cell's JSON list is read as strictly as a JSON file: NaN was the choice "nan", 1e400 "inf"
    ({"text": "x", "choices": "[\"a\", NaN]", "label": 0}, {}, "do not parse: NaN is not JSON (a missing value?)"),
    ({"text": "x", "choices": "[\"a\", 1e400]", "label": 0}, {}, "do not parse: 1e400 is out of a number's range"),
    ({"text": "x", "choices": ["a", " "], "label": 0}, {}, "empty choice 1"),
    ({"text": "x", "choices": ["a", {"b": 1}], "label": 0}, {}, "choice 1 must be a string or a number"),
    ({"text": "x", "label": 0}, {}, "missing column 'choices'"),
    ({"text": "", "choices": ["a", "b"], "label": 0}, {}, "empty text in column 'text'"),
    ({"text": "x", "q": 3, "choices": ["a", "b"], "label": 0}, {"question_column": "q"}, "column 'q' must be text"),
    ({"text": "x", "choices": ["a", "b"], "label": 0}, {"question_column": "q"}, "missing column 'q'"),
])
def test_bad_examples_name_file_and_line(tmp_path, row, spec, fragment):
    fine = {"text": "fine", "choices": ["a", "b"], "label": "a" if spec.get("label_kind") == "text" else 0}
    if "question_column" in spec:
        fine["q"] = "why"
    path = write_jsonl(tmp_path / "bad.jsonl", [fine, row])
    with pytest.raises(UserError) as info:
        read(path, **spec)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ") and fragment in message and "\n" not in message, message


def test_a_split_has_one_number_of_choices(tmp_path, tiny_encoder):
    rows = [{"text": "a", "choices": ["x", "y", "z"], "label": 0}, {"text": "b", "choices": ["x", "y", "z"], "label": 1},
            {"text": "c", "choices": ["x", "y"], "label": 1}]
    tasks = {"mc": {"type": "multiple_choice", "data": {"train": str(write_jsonl(tmp_path / "t.jsonl", rows))}}}
    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks))
    with pytest.raises(UserError) as info:
        read_task(recipe, "mc", recipe.tasks["mc"])
    assert str(info.value) == (f"{tmp_path / 't.jsonl'}:3: 2 choices, but {tmp_path / 't.jsonl'}:1 has 3: every example "
                               "of a split needs the same number of choices")


def test_recipe_keys_belong_to_the_type(tmp_path, tiny_encoder):
    tasks = {"mc": {"type": "multiple_choice", "data": {"train": "x.jsonl", "choices_column": ["e0", "e1"],
                                                         "question_column": "q", "label_kind": "text"}}}
    data = load_recipe(write_recipe(tmp_path, tiny_encoder, tasks=tasks)).tasks["mc"].data
    assert (data.choices_column, data.question_column, data.label_kind) == (["e0", "e1"], "q", "text")
    for key, value, fragment in [("text_pair_column", "b", "tasks.mc.data.text_pair_column: does not apply to "
                                                           "multiple_choice"),
                                 ("choice_column", "x", "unknown key 'tasks.mc.data.choice_column' (known: hub"),
                                 ("label_kind", "name", "tasks.mc.data.label_kind: unknown value 'name' "
                                                        "(expected one of: auto, index, text)")]:
        path = write_recipe(tmp_path, tiny_encoder, tasks={"mc": {"type": "multiple_choice",
                                                                  "data": {"train": "x.jsonl", key: value}}})
        with pytest.raises(UserError) as info:
            load_recipe(path)
        assert str(info.value).startswith(f"{path}:") and fragment in str(info.value), str(info.value)
    path = write_recipe(tmp_path, tiny_encoder, tasks={"s": {"type": "classification",
                                                             "data": {"train": "x.jsonl", "choices_column": "c"}}})
    with pytest.raises(UserError, match="unknown key 'tasks.s.data.choices_column'"):
        load_recipe(path)


# ---------------------------------------------------------------- tokenising and batches


def test_tokenised_rows_and_batches_are_batch_by_choices_by_length(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "The sky is", "q": "as we know,", "choices": ["blue", "a very loud and salty colour", "green"], "label": 1},
        {"text": "Sugar tastes", "q": "always", "choices": ["sweet", "sour", "of nothing at all"], "label": 0}])
    examples = read(path, question_column="q")
    dataset = tokenize(examples, "multiple_choice", [], tokenizer, max_length=12)
    hellaswag = write_jsonl(tmp_path / "h.jsonl", [{"text": "The sky is", "q": q, "choices": ["blue", "red"], "label": 0}
                                                   for q in ("", " ", None)])  # ctx_b can be empty
    empty = read(hellaswag, question_column="q")
    assert [ex["question"] for ex in empty] == ["", "", ""]
    no_question = tokenize(empty[:1], "multiple_choice", [], tokenizer, max_length=12)
    assert tokenizer.decode(no_question[0]["input_ids"][0]) == "[CLS] the sky is [SEP] blue [SEP]"
    first = dataset[0]
    assert len(first["input_ids"]) == 3 and dataset["labels"] == [1, 0]
    assert tokenizer.decode(first["input_ids"][0]) == "[CLS] the sky is [SEP] as we know, blue [SEP]"
    assert first["length"] == 3 * max(len(ids) for ids in first["input_ids"])
    assert dataset["truncated"] == [True, False]  # "as we know, a very loud and salty colour" is cut at 12 tokens
    batch = collate([dataset[0], dataset[1]], tokenizer.pad_token_id, "multiple_choice")
    width = max(len(ids) for row in dataset["input_ids"] for ids in row)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (2, 3, width), "attention_mask": (2, 3, width), "token_type_ids": (2, 3, width), "labels": (2,)}
    assert batch["attention_mask"][1, 0].sum() == len(dataset[1]["input_ids"][0])
    assert (batch["input_ids"][1, 0, len(dataset[1]["input_ids"][0]):] == tokenizer.pad_token_id).all()
    assert batch["token_type_ids"][0, 0].tolist()[:7] == [0, 0, 0, 0, 0, 1, 1]


# ---------------------------------------------------------------- training beside a classification task


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """The shipped recipe (generated categories: "A banana is a kind of" fruit / vehicle / ...) with a
    sentiment classification task added, trained briefly on the packaged MiniLM."""
    from mtnlp.recipes.multitask import train

    folder = tmp_path_factory.mktemp("mc")
    recipe = load_recipe(RECIPE, [
        f"output_dir={folder / 'run'}", "training.steps=20", "training.batch_size=8", "training.lr=4e-4",
        "training.warmup=0", "training.eval_every=null", "training.mixed_precision=fp32", "training.log_every=10",
        "sampling.strategy=round_robin",  # 10 steps (80 examples) each
        "tasks.sentiment.type=classification", f"tasks.sentiment.data.train={DATA / 'sst2_sample.jsonl'}",
        "tasks.sentiment.data.text_column=sentence", "tasks.sentiment.data.validation_from_train=0.25"])
    train(recipe)
    return folder / "run"


def test_learns_the_generated_set(mixed_run, tmp_path):
    metrics = json.loads((mixed_run / "metrics.json").read_text())
    test = metrics["tasks"]["categories"]["test"]
    assert set(test) == {"accuracy"} and test["accuracy"] >= 0.9, test  # 60 held-out examples, 4 choices
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(mixed_run / "model"), str(RECIPE), "training.mixed_precision=fp32", "--split", "test",
                 "--output", str(out)]) == 0
    assert json.loads(out.read_text())["tasks"]["categories"]["test"] == test
    assert metrics["tasks"]["categories"]["validation"]["accuracy"] >= 0.9
    assert metrics["majority_baseline"]["categories"]["test"]["accuracy"] < 0.4  # the most frequent right index
    facts = metrics["data"]["tasks"]["categories"]["train"]
    assert facts["examples"] == 240 and facts["choices"] == 4 and facts["labels"] == 4
    spec = MultiTaskModel.from_pretrained(mixed_run / "model").config.tasks
    assert spec["categories"]["type"] == "multiple_choice" and spec["sentiment"]["labels"] == ["0", "1"]
    card = (mixed_run / "model" / "README.md").read_text()
    assert "| categories | multiple_choice |" in card and '"choices": ["blue", "loud", "salty"]' in card


CHOICE_INPUTS = [{"text": "A violin is a kind of", "choices": ["fruit", "musical instrument", "sport", "vehicle"]},
                 {"text": "Everyone knows that a pear is a", "choices": ["tool", "fruit"]},  # 2 choices
                 {"text": "The tractor we saw yesterday was a",  # 5 choices, a question before each
                  "question": "as farmers say,", "choices": ["animal", "sport", "vehicle", "tool", "fruit"]}]


def test_pipeline_answers_texts_and_choices_in_one_call(mixed_run):
    pipe = MultiTaskPipeline.from_pretrained(str(mixed_run / "model"), precision="fp32")
    out = pipe(["a gorgeous , witty , seductive movie .", *CHOICE_INPUTS], return_all_scores=True)
    assert set(out[0]) == {"sentiment"} and all(set(o) == {"categories"} for o in out[1:])
    assert [o["categories"]["text"] for o in out[1:]] == ["musical instrument", "fruit", "vehicle"]
    tokenizer, model = pipe.tokenizer, pipe.model
    for item, result in zip(CHOICE_INPUTS, out[1:]):
        prediction = result["categories"]
        seconds = [f"{item['question']} {c}" if "question" in item else c for c in item["choices"]]
        enc = tokenizer([item["text"]] * len(seconds), seconds, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = model(**{k: v.unsqueeze(0) for k, v in enc.items()}, task="categories").logits.softmax(-1)[0]
        assert prediction["scores"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert prediction["choice"] == int(probs.argmax()) and prediction["score"] == pytest.approx(float(probs.max()))
        assert prediction["text"] == item["choices"][prediction["choice"]]
    assert "scores" not in pipe(CHOICE_INPUTS[0])["categories"]
    # a cut (context, choice) pair is named as a cut text is: by predict's file line, in serve's "truncated"
    from fastapi.testclient import TestClient

    from mtnlp.pipeline import truncations
    from mtnlp.serve import create_app

    long = {**CHOICE_INPUTS[0], "text": "word " * 300}
    _, cut = truncations(lambda: pipe(["fine", long, CHOICE_INPUTS[1]]))
    assert [w.indices for w in cut] == [[1]] and "(context, choice) pair" in str(cut[0])
    for at in range(3):  # with other inputs of its choice count in the batch, the cut one alone is named
        inputs = [CHOICE_INPUTS[0]] * 3
        inputs[at] = long
        assert [w.indices for w in truncations(lambda: pipe(inputs))[1]] == [[at]]
    with TestClient(create_app(pipe)) as client:
        assert client.post("/predict", json={"inputs": ["fine", long]}).json()["truncated"] == [1]
    alone = pipe(CHOICE_INPUTS[0], tasks=["categories"], return_all_scores=True)
    assert alone["categories"]["scores"] == pytest.approx(out[1]["categories"]["scores"], abs=1e-5)  # padding-free
    with pytest.raises(ValueError, match=r"\"choices\" must be a list of at least 2 choices, got \[\"x\"\]"):
        pipe({"text": "a", "choices": ["x"]})
    with pytest.raises(ValueError, match=r"choice 1 holds a lone surrogate"):
        pipe({"text": "a", "choices": ["x", "\ud800"]})
    as_tuple = {**CHOICE_INPUTS[0], "choices": tuple(CHOICE_INPUTS[0]["choices"])}  # e.g. a pandas row's cells
    assert pipe(as_tuple, tasks=["categories"], return_all_scores=True) == alone
    # two inputs of one choice count around one of another: batched by count, each answered as alone
    mixed = [CHOICE_INPUTS[0], CHOICE_INPUTS[1], {**CHOICE_INPUTS[0], "text": "A second context"}]
    together = pipe(mixed, tasks=["categories"], return_all_scores=True)
    for got, value in zip(together, mixed):
        single = pipe(value, tasks=["categories"], return_all_scores=True)["categories"]
        assert got["categories"]["choice"] == single["choice"]
        assert got["categories"]["scores"] == pytest.approx(single["scores"], abs=1e-5)
    plain = {k: v for k, v in CHOICE_INPUTS[0].items() if k != "question"}  # an empty question is none, as in training
    assert pipe({**plain, "question": " "}, return_all_scores=True) == pipe(plain, return_all_scores=True)
    # an input no head asked for reads is an error, not an empty answer
    with pytest.raises(ValueError, match=r"^inputs\[1\]: a text, but no requested task reads it "
                                         r"\(categories reads \{text, choices, question\?\}\)$"):
        pipe([CHOICE_INPUTS[0], "Who wrote Hamlet?"], tasks=["categories"])
    with pytest.raises(ValueError, match=r"^inputs\[0\]: an input of the extractive_qa type, but no task "
                                         r"reads it \(categories reads \{text, choices, question\?\}, sentiment reads single texts\)$"):
        pipe({"question": "q", "context": "c"})


def test_the_pipeline_strips_a_choice_and_the_question_as_training_does():
    """Spaces around a choice came back in the answer's text, and a byte-level BPE tokenises ' blue ' apart
    from the 'blue' training read."""
    from mtnlp.tasks.multiple_choice import read_input

    assert read_input({"text": " The sky is ", "choices": [" blue ", "loud\n"], "question": " really "}) == \
        ("The sky is", "really", ["blue", "loud"])


def test_a_choice_that_is_a_missing_value_is_refused_and_numbers_of_any_kind_are_their_text():
    """A NaN choice (pandas' missing cell) was scored as the choice "nan", and could win; inf as "inf"."""
    import numpy as np

    from mtnlp.tasks.multiple_choice import read_input

    for missing in (float("nan"), np.float64("nan"), float("-inf")):
        with pytest.raises(ValueError, match=r"^multiple-choice input: choice 1 must be a non-empty string, got -?(NaN|Infinity)$"):
            read_input({"text": "The sky is", "choices": ["blue", missing, "green"]})
    assert read_input({"text": "Pick", "choices": (np.int64(3), np.float64(2.5), 7)}) == ("Pick", None, ["3", "2.5", "7"])
    assert read_input({"text": "Pick", "choices": ["a", 10**400]})[2] == ["a", "1" + "0" * 400]  # no float: its digits
    assert read_input({"text": "Pick", "choices": np.array(["a", "b"], dtype=object)})[2] == ["a", "b"]  # a pandas cell
    for not_choices in ("ab", b"ab", {"a": 1, "b": 2}):
        with pytest.raises(ValueError, match=r'"choices" must be a list of at least 2 choices'):
            read_input({"text": "Pick", "choices": not_choices})


def test_predict_cli_takes_choice_lines(mixed_run, tmp_path, capsys):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{**CHOICE_INPUTS[0], "id": 7, "label": 1}, {"text": "a dull movie"}])
    assert main(["predict", str(mixed_run / "model"), "--input", str(inputs), "--all-scores"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["id"] == 7 and lines[0]["choices"] == CHOICE_INPUTS[0]["choices"]  # the line, passed through
    assert set(lines[0]["predictions"]) == {"categories"} and set(lines[1]["predictions"]) == {"sentiment"}
    local = MultiTaskPipeline.from_pretrained(str(mixed_run / "model"))(CHOICE_INPUTS[0], return_all_scores=True)
    assert lines[0]["predictions"]["categories"]["scores"] == pytest.approx(local["categories"]["scores"], abs=1e-5)
    bad = tmp_path / "bad.jsonl"
    for line, fragment in [('{"text": "x", "choices": ["a", 3, ""]}', 'choice 2 must be a non-empty string, got ""'),
                           ('{"text": 5, "choices": ["a", "b"]}', '"text" (the context) must be a non-empty string'),
                           ('{"text": "x", "choices": "a"}', '"choices" must be a list of at least 2 choices')]:
        bad.write_text('"fine"\n' + line + "\n")
        assert main(["predict", str(mixed_run / "model"), "--input", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {bad}:2: multiple-choice input: ") and fragment in err, err
    assert main(["predict", str(mixed_run / "model"), "--tasks", "sentiment", "--input", str(inputs)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {inputs}:1: an input of the multiple_choice type, but no "
                                               "requested task reads it (sentiment reads single texts)")
    assert main(["predict", str(mixed_run / "model"), "--tasks", "categories", "just a text"]) == 2
    assert "TEXT argument 1: a text, but no requested task reads it (categories reads {text, choices, question?})" in capsys.readouterr().err


def test_predict_the_pipeline_and_serve_refuse_an_unread_input_for_one_reason(mixed_run, tmp_path, capsys):
    """One routing rule (tasks.base.answering_tasks) behind the three front ends: the same input, the same reason."""
    from fastapi.testclient import TestClient

    from mtnlp.serve import create_app

    pipe = MultiTaskPipeline.from_pretrained(str(mixed_run / "model"), precision="fp32")
    for value, tasks in (({"question": "q", "context": "c"}, ["sentiment", "categories"]),
                         (CHOICE_INPUTS[0], ["sentiment"]), ("a text", ["categories"])):
        with pytest.raises(ValueError) as raised:
            pipe([value], tasks=tasks)
        reason = str(raised.value).removeprefix("inputs[0]: ")
        assert "but no requested task reads it" in reason
        lines = write_jsonl(tmp_path / "in.jsonl", [value])
        capsys.readouterr()
        assert main(["predict", str(mixed_run / "model"), "--tasks", ",".join(tasks), "--input", str(lines)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {lines}:1: {reason}"
        with TestClient(create_app(pipe)) as client:
            response = client.post("/predict", json={"inputs": [value], "tasks": tasks})
        assert response.status_code == 422 and response.json() == {"error": f"inputs[0]: {reason}", "field": "inputs[0]"}


def test_export_gives_the_same_scores_in_plain_transformers(mixed_run, tmp_path):
    assert main(["export", str(mixed_run / "model"), "--task", "categories", str(tmp_path / "mc")]) == 0
    exported = AutoModelForMultipleChoice.from_pretrained(tmp_path / "mc").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "mc")
    assert type(exported).__name__ == "BertForMultipleChoice" and exported.config.num_labels == 1
    ours = MultiTaskPipeline.from_pretrained(str(mixed_run / "model"), precision="fp32")(CHOICE_INPUTS,
                                                                                          return_all_scores=True)
    model = MultiTaskModel.from_pretrained(mixed_run / "model").eval()
    for item, mine in zip(CHOICE_INPUTS, ours):  # the way transformers' SWAG example feeds the model
        seconds = [f"{item['question']} {c}" if "question" in item else c for c in item["choices"]]
        enc = tokenizer([item["text"]] * len(seconds), seconds, padding=True, return_tensors="pt")
        batch = {k: v.unsqueeze(0) for k, v in enc.items()}
        with torch.no_grad():
            theirs = exported(**batch).logits
            torch.testing.assert_close(theirs, model(**batch, task="categories").logits, atol=1e-5, rtol=0)
        assert theirs.softmax(-1)[0].tolist() == pytest.approx(mine["categories"]["scores"], abs=1e-5)


def test_hub_round_trip(mixed_run, tmp_path):
    from hub_server import LocalHub, client_env
    from test_hub import close

    inputs = write_jsonl(tmp_path / "in.jsonl", [*CHOICE_INPUTS, "a dull , lifeless movie"])
    code = f"""
from mtnlp.cli import main
from mtnlp.hub import push
push({str(mixed_run / "model")!r}, "org/mc")
raise SystemExit(main(["predict", "org/mc", "--input", {str(inputs)!r}, "--all-scores"]))
"""
    with LocalHub() as hub:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=client_env(hub.url, tmp_path / "client", "hf_token_x"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "README.md" in hub.repo_files("org/mc")
    remote = [json.loads(line)["predictions"] for line in proc.stdout.splitlines()]
    local = MultiTaskPipeline.from_pretrained(str(mixed_run / "model"))([*CHOICE_INPUTS, "a dull , lifeless movie"],
                                                                        return_all_scores=True)
    assert [set(r) for r in remote] == [{"categories"}] * 3 + [{"sentiment"}]
    assert close(remote, local)  # the same choices and labels, scores to 1e-5


# ---------------------------------------------------------------- every encoder family


@pytest.fixture(scope="module")
def family_encoders(tmp_path_factory):
    from test_families import save_encoders

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    return tokenizer, save_encoders(tmp_path_factory, tokenizer)


HEADS = {"mc": {"type": "multiple_choice", "labels": [], "dropout": 0.1},
         "s": {"type": "classification", "labels": ["a", "b"], "dropout": 0.1}}
CHOICE_HEADS = {  # each family's *ForMultipleChoice layout (modules with weights)
    "bert": {"pooler": "BertPooler", "classifier": "Linear"},
    "roberta": {"pooler": "RobertaPooler", "classifier": "Linear"},
    "xlm-roberta": {"pooler": "XLMRobertaPooler", "classifier": "Linear"},
    "deberta-v2": {"pooler": "ContextPooler", "classifier": "Linear"},
    "electra": {"sequence_summary": "ElectraSequenceSummary", "classifier": "Linear"},
    "distilbert": {"pre_classifier": "Linear", "classifier": "Linear"},
    "modernbert": {"head": "ModernBertPredictionHead", "classifier": "Linear"},
}


@pytest.mark.parametrize("model_type", list(CHOICE_HEADS))
def test_export_parity_for_every_family(family_encoders, model_type, tmp_path):
    from mtnlp.export import export_folder

    tokenizer, folders = family_encoders
    model = MultiTaskModel.from_encoder(folders[model_type], HEADS)
    head = model.heads["mc"]
    assert {n: type(m).__name__ for n, m in head.named_children() if list(m.parameters())} == CHOICE_HEADS[model_type]
    if "pooler" in model.family.base_head:  # BERT, RoBERTa: the head's own copy of the pretrained pooler
        pretrained = AutoModel.from_pretrained(folders[model_type]).pooler.dense.weight
        assert torch.equal(head.pooler.dense.weight, pretrained)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    contexts, endings = ["The sky is", "A cat says"], [["blue", "green", "a very long and loud answer"], ["meow", "x", "moo"]]
    exported = AutoModelForMultipleChoice.from_pretrained(export_folder(model, tokenizer, "mc", tmp_path)).eval()
    assert type(exported).__name__.endswith("ForMultipleChoice")
    enc = AutoTokenizer.from_pretrained(tmp_path)([c for c in contexts for _ in range(3)], sum(endings, []),
                                                  padding=True, return_tensors="pt")
    batch = {k: v.view(2, 3, -1) for k, v in enc.items()}
    with torch.no_grad():
        ours = model(**batch, task="mc", labels=torch.tensor([0, 2]))
        theirs = exported(**batch, labels=torch.tensor([0, 2]))
    assert ours.logits.shape == (2, 3)
    torch.testing.assert_close(theirs.logits, ours.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.loss, ours.loss, atol=1e-5, rtol=0)


def test_soft_sharing_and_a_family_without_the_class(family_encoders, monkeypatch):
    tokenizer, folders = family_encoders
    enc = tokenizer(["a", "a", "b", "b"], ["x", "y z", "x", "y"], padding=True, return_tensors="pt")
    batch = {k: v.view(2, 2, -1) for k, v in enc.items()}
    for sharing in ({"type": "task_layers", "layers": 1},
                    {"type": "lora", "r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"]}):
        model = MultiTaskModel.from_encoder(folders["bert"], HEADS, sharing=sharing)
        torch.manual_seed(2)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(export_head(model, "mc")(**batch).logits, model(**batch, task="mc").logits,
                                       atol=1e-5, rtol=0)
    monkeypatch.setattr(type(MC), "export_class", "AutoModelForImageClassification")
    with pytest.raises(UserError, match=r"^cannot export the mc head: transformers has no "
                                        r"AutoModelForImageClassification class for BERT encoders$"):
        export_head(model, "mc")
