"""Property-based tests (hypothesis) of mtnlp's user-input boundaries: whatever a user sends, a clear error naming
the field (or file and line, or key) or a result of the documented shape; never a traceback, a 500 or a hang.

- `mtnlp serve`: POST /predict with any JSON body (and bodies that are not JSON, UTF-8 or valid Unicode);
- the pipeline (`MultiTaskPipeline.__call__`) on arbitrary Python inputs, tasks and options;
- `mtnlp predict --input FILE.jsonl` on arbitrary lines;
- recipe overrides `key=value` (load_recipe), a valid setting round-tripping;
- hub ids and URLs (repo_id_problem, url_problem, HUB_PAGE, hub_id) on arbitrary strings.

Deterministic (derandomize) and fast: every test has a small max_examples; MTNLP_PROPS_SCALE=25 searches longer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import NER_LABELS, REPO, save_model
from test_serve import assert_same

# MTNLP_PROPS_SCALE=25: 25 times the examples, random (not derandomized): a longer search for a bug, by hand
SCALE = int(os.environ.get("MTNLP_PROPS_SCALE", "1"))
PROPS = settings(max_examples=40 * SCALE, deadline=None, derandomize=SCALE == 1, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large, HealthCheck.filter_too_much])
FEW = settings(PROPS, max_examples=10 * SCALE)
# what the generated inputs make mtnlp say besides: long inputs truncated, a setting the strategy does not read
pytestmark = [pytest.mark.filterwarnings("ignore:.*were truncated"), pytest.mark.filterwarnings("ignore:.*not read")]

# one head of every task type, and a head trained on text pairs
TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"], "dropout": 0.1},
    "nli": {"type": "classification", "labels": ["entailment", "neutral", "contradiction"], "dropout": 0.1,
            "text_pair": True},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": NER_LABELS, "dropout": 0.1},
    "topics": {"type": "multilabel", "labels": ["art", "food", "sport"], "dropout": 0.1},
    "mc": {"type": "multiple_choice", "labels": [], "dropout": 0.1},
    "qa": {"type": "extractive_qa", "labels": [], "dropout": 0.1, "doc_stride": 8, "max_answer_length": 10,
           "allow_unanswerable": True},
}
NAMES = list(TASKS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_encoder):
    return save_model(tmp_path_factory.mktemp("props-inputs-model"), tiny_encoder, TASKS)


@pytest.fixture(scope="module")
def pipe(model_dir):
    from mtnlp import MultiTaskPipeline

    return MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")


@contextlib.contextmanager
def time_limit(seconds: int):
    """A TimeoutError in the main thread after `seconds`: a hang fails the example instead of the run."""
    if not hasattr(signal, "SIGALRM"):  # (Windows)
        yield
        return

    def alarm(*_):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- generated inputs

# texts: mostly words, some Unicode of any kind (lone surrogates too, which JSON escapes as \ud800), blanks
WORDS = ["John", "Smith", "works", "in", "New", "York", ".", "Paris", "?", "café", "東京", "🇫🇷", "e\u0301", "U.S.",
         "don't", "3.14", "\u200b", "\u00a0", " ", "", "\t", "\n"]
text = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
    st.text(max_size=12),  # any code point, lone surrogates included
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(["", " ", "\u200b", "x" * 300]),
)
huge_int = st.integers(min_value=-(10 ** 30), max_value=10 ** 30) | st.sampled_from([2 ** 63, -(2 ** 63) - 1,
                                                                                    10 ** 400])
json_leaf = st.none() | st.booleans() | huge_int | st.floats(allow_nan=False, allow_infinity=False) | text
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.sampled_from(["text", "text_pair", "words", "choices", "question",
                                                             "context", "inputs", "predictions", "x"]) | text, inner,
                                                            max_size=4),
                          max_leaves=12)
# inputs of every form a served head reads, some with a field of a wrong type or one too many
FORMS = {
    "text": lambda t: t["a"],
    "text_object": lambda t: {"text": t["a"]},
    "pair": lambda t: {"text": t["a"], "text_pair": t["b"]},
    "words": lambda t: {"words": t["words"]},
    "choices": lambda t: {"text": t["a"], "choices": t["choices"]},
    "choices_question": lambda t: {"text": t["a"], "choices": t["choices"], "question": t["b"]},
    "qa": lambda t: {"question": t["b"], "context": t["a"]},
}
parts = st.fixed_dictionaries({"a": text, "b": text, "words": st.lists(text, max_size=6),
                               "choices": st.lists(text, max_size=4)})


@st.composite
def an_input(draw):
    form = draw(st.sampled_from(list(FORMS) + ["json"]))
    if form == "json":
        return draw(json_value)
    value = FORMS[form](draw(parts))
    if isinstance(value, dict) and draw(st.integers(0, 4)) == 0:  # a field of another type, or one too many
        value[draw(st.sampled_from(list(value) + ["text", "extra", "id"]))] = draw(json_value)
    return value


shown = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=20).filter(str.strip)
valid_parts = st.fixed_dictionaries({"a": shown, "b": shown, "words": st.lists(shown, min_size=1, max_size=5),
                                     "choices": st.lists(shown, min_size=2, max_size=3)})


inputs = st.one_of(an_input(), st.lists(an_input(), min_size=0, max_size=5))
task_list = st.one_of(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), json_value,
                      st.lists(st.sampled_from(NAMES) | text, max_size=3))


@st.composite
def body(draw) -> tuple[bytes, int | None]:
    """A /predict body (bytes), and how many inputs it holds when it is a request of the right shape."""
    payload = {}
    if draw(st.integers(0, 9)):
        payload["inputs"] = draw(inputs)
    if draw(st.booleans()):
        payload["tasks"] = draw(task_list)
    if draw(st.booleans()):
        payload["all_scores"] = draw(st.booleans() | json_value)
    if draw(st.integers(0, 9)) == 0:
        payload[draw(text.filter(bool))] = draw(json_value)
    if draw(st.integers(0, 19)) == 0:
        payload = draw(json_value)
        if isinstance(payload, dict):  # (a key "" of the request is named as the field "": see props2.md)
            payload.pop("", None)
    raw = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    how = draw(st.integers(0, 19))
    if how == 0 and isinstance(payload, dict) and payload:  # a key given twice
        key = draw(st.sampled_from(list(payload)))
        raw = raw[:-1] + f", {json.dumps(key)}: {json.dumps(payload[key])}}}"
    elif how == 1:  # cut short
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == 2:  # NaN, Infinity, a float out of range, an int of too many digits
        bad = draw(st.sampled_from(["NaN", "-Infinity", "1e400", "9" * 5000]))
        raw = raw[:1] + f'"all_scores": {bad}, ' + raw[1:] if raw.startswith("{") and raw != "{}" else raw
    data = raw.encode("utf-8", "surrogatepass")  # (ensure_ascii=False: a lone surrogate is then bytes UTF-8 refuses)
    if how == 3:
        data = draw(st.binary(max_size=40))
    count = None
    if isinstance(payload, dict) and "inputs" in payload:
        count = 1 if isinstance(payload["inputs"], (str, dict)) else len(payload["inputs"]) \
            if isinstance(payload["inputs"], list) else None
    return data, count


# ---------------------------------------------------------------- serve


def serving(pipe, limits):
    from fastapi.testclient import TestClient

    from mtnlp.serve import create_app

    return TestClient(create_app(pipe, limits=limits), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(pipe):
    """A server whose limits every valid input the tests make fits."""
    from mtnlp.serve import Limits

    with serving(pipe, Limits(max_body_bytes=6000, max_inputs=24, max_chars=200)) as c:
        yield c


@pytest.fixture(scope="module")
def tight(pipe):
    """A server with limits that many requests the tests make pass."""
    from mtnlp.serve import Limits

    with serving(pipe, Limits(max_body_bytes=600, max_inputs=6, max_chars=20)) as c:
        yield c


def check_answer(response, count, tasks=None):
    """A 4xx JSON error naming the field, or a 200 with one prediction per input, of the tasks asked (all of them when
    the request named them, in its order), and no scores unless asked."""
    assert response.status_code == 200 or 400 <= response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    if response.status_code != 200:
        assert set(answer) == {"error", "field"}, answer
        from mtnlp.readers import Row
        from mtnlp.serve import EMPTY_KEY

        named = Row.printable(answer["field"]) if answer["field"] else EMPTY_KEY  # (what does not show, escaped)
        assert answer["error"].startswith(f"{named}: "), answer
        assert "Traceback" not in answer["error"], answer  # (a key given with a line break is echoed: JSON escapes it)
        return
    assert count is not None and len(answer["predictions"]) == count, (count, answer)
    for prediction in answer["predictions"]:
        assert isinstance(prediction, dict) and prediction and set(prediction) <= set(NAMES), prediction
        if tasks is not None:
            assert list(prediction) == list(dict.fromkeys(tasks)), (tasks, prediction)
    assert set(answer) <= {"predictions", "truncated"}
    assert all(0 <= i < count for i in answer.get("truncated", [])), answer


@PROPS
@given(body(), st.booleans())
def test_serve_answers_any_body_with_predictions_or_a_4xx_naming_the_field(client, tight, case, limited):
    """Any body (JSON of any shape, keys given twice, NaN, bad UTF-8, lone surrogates, cut short), to a server with
    roomy or tight limits: a 200 with one prediction per input, or a 4xx JSON error naming the field; never a 500."""
    data, count = case
    with time_limit(60):
        response = (tight if limited else client).post("/predict", content=data,
                                                        headers={"content-type": "application/json"})
    try:
        tasks = json.loads(data).get("tasks")
    except (ValueError, AttributeError):
        tasks = None
    event(f"status {response.status_code}")
    check_answer(response, count, tasks)


@FEW
@given(st.lists(st.sampled_from(list(FORMS)), min_size=1, max_size=4), st.data())
def test_serve_answers_every_valid_input_form(client, forms, data):
    """Inputs of the served heads' forms, with texts that show something: a 200 with one prediction each."""
    items = [FORMS[form](data.draw(valid_parts)) for form in forms]
    all_scores = data.draw(st.booleans())
    response = client.post("/predict", json={"inputs": items, "all_scores": all_scores})
    assert response.status_code == 200, response.text
    check_answer(response, len(items))
    if not all_scores:
        assert not any("scores" in p or "candidates" in p for answer in response.json()["predictions"]
                       for p in answer.values() if isinstance(p, dict)), response.text


any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
nonblank = any_text.filter(str.strip)
any_parts = st.fixed_dictionaries({"a": nonblank, "b": nonblank, "words": st.lists(nonblank, min_size=1, max_size=5),
                                   "choices": st.lists(nonblank, min_size=2, max_size=3)})


@PROPS
@given(st.lists(st.tuples(st.sampled_from(list(FORMS)), any_parts, any_text), min_size=1, max_size=5), st.booleans(),
       st.none() | st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
def test_serve_takes_every_valid_input_and_answers_as_the_pipeline(client, pipe, items, all_scores, tasks):
    """Inputs of the served heads' forms, of any Unicode (a plain text blank or not), maybe for named tasks: the
    pipeline's answer (every task that reads an input; each named one, in the request's order), or, where the
    pipeline refuses an input as no named task (or not every one) reads it, a 422 naming that input."""
    inputs = [plain if form == "text" else FORMS[form](parts) for form, parts, plain in items]
    with time_limit(60):
        response = client.post("/predict", json={"inputs": inputs, "all_scores": all_scores,
                                                 **({"tasks": tasks} if tasks else {})})
    try:
        expected = json.loads(json.dumps(pipe(inputs, tasks=tasks, return_all_scores=all_scores)))
    except ValueError as e:
        assert tasks is not None, e  # valid input is never refused
        assert response.status_code == 422, response.text
        field = response.json()["field"]
        assert str(e).startswith(f"{field}: "), (str(e), response.text)
        return
    assert response.status_code == 200, response.text
    check_answer(response, len(inputs), tasks)
    assert_same(response.json()["predictions"], expected)


# ---------------------------------------------------------------- pipeline

python_value = st.recursive(
    json_leaf | st.binary(max_size=4) | st.floats() | st.sampled_from([object(), int, ..., set(), frozenset({"a"})])
    | st.lists(text, max_size=3).map(np.array) | st.sampled_from([np.array([["a"]]), np.float32(1), np.str_("a")]),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.sampled_from(["text", "text_pair", "words", "choices", "question", "context"]) | text
                      | st.integers(), inner, max_size=3),
    max_leaves=8)


@PROPS
@given(st.one_of(an_input(), st.lists(an_input() | python_value, max_size=4), python_value,
                 st.tuples(an_input(), an_input())),
       # (tasks of another type than a name or a list of names: bug, see /tmp/reports/props2.md)
       st.none() | st.lists(st.sampled_from(NAMES) | text, max_size=3) | st.sampled_from(NAMES) | text,
       st.booleans(), st.none() | st.booleans())
def test_pipeline_answers_or_raises_a_value_or_type_error_naming_the_input(pipe, value, tasks, all_scores, strict):
    from mtnlp.errors import UserError

    try:
        with time_limit(60):
            result = pipe(value, tasks=tasks, return_all_scores=all_scores, strict=strict)
    except (ValueError, TypeError, UserError) as e:
        # (the message may echo a key of the input, line breaks and all)
        assert str(e).startswith(("inputs", "tasks")), repr(e)
        return
    asked = set(NAMES if tasks is None else [tasks] if isinstance(tasks, str) else tasks)
    results = [result] if isinstance(value, (str, dict)) else result
    assert isinstance(results, list) and len(results) == (1 if isinstance(value, (str, dict)) else len(list(value)))
    for prediction in results:
        assert isinstance(prediction, dict) and prediction and set(prediction) <= asked, prediction


# ---------------------------------------------------------------- mtnlp predict --input FILE.jsonl

plain_line = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=20)
byte_line = st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b)


@st.composite
def valid_line(draw) -> bytes:
    """A line every head of its form reads: a text, a pair, words, choices, a question; maybe with an id and a label."""
    item = FORMS[draw(st.sampled_from(list(FORMS)))](draw(valid_parts))
    if isinstance(item, dict) and draw(st.booleans()):
        item.update(id=draw(json_leaf), label=draw(json_leaf))  # echoed, not read
    return json.dumps(item, ensure_ascii=draw(st.booleans())).encode("utf-8")


@st.composite
def bad_line(draw) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # anything JSON, an input of a wrong shape
        item = draw(an_input() | json_value)
        if isinstance(item, dict) and draw(st.booleans()):
            item["id"] = draw(json_leaf)
        return json.dumps(item, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 1:  # plain text
        return draw(plain_line).encode("utf-8")
    if kind == 2:  # bytes
        return draw(byte_line)
    return draw(valid_line())[:-1]  # cut short


@st.composite
def jsonl_file(draw) -> tuple[bytes, int | None]:
    """The file, and the number of its one line that may be bad (None: every line is valid)."""
    lines = draw(st.lists(valid_line() | st.sampled_from([b"", b"  "]), min_size=1, max_size=5))
    bad = None
    if draw(st.integers(0, 3)) == 0 or not any(line.strip() for line in lines):
        bad = draw(st.integers(0, len(lines)))
        lines.insert(bad, draw(bad_line()))
        bad += 1
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + end.join(lines) + draw(st.sampled_from([b"", end])), bad


def run_predict(capsys, monkeypatch, model_dir, source, out, data: bytes):
    """`mtnlp predict MODEL --input SOURCE` (- : standard input, reading `data`), in this process."""
    import io
    import sys

    from mtnlp.cli import main

    if out.exists():
        out.unlink()
    if source == "-":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with time_limit(120):
        status = main(["predict", str(model_dir), "--input", str(source), "--output", str(out), "--precision", "fp32"])
    return status, capsys.readouterr()


@settings(FEW, max_examples=15 * SCALE)
@given(jsonl_file(), st.booleans())
def test_predict_input_file_gives_one_output_per_line_or_one_error_naming_file_and_line(model_dir, tmp_path_factory,
                                                                                       capsys, monkeypatch, case,
                                                                                       from_stdin):
    """Valid lines give one output line each (blank lines none), in order, each the line's object with its
    predictions; a bad line is one error line naming the file (or standard input) and that line, and nothing is
    written."""
    data, bad = case
    folder = tmp_path_factory.mktemp("predict-input")
    path, out = folder / "in.jsonl", folder / "out.jsonl"
    path.write_bytes(data)
    status, said = run_predict(capsys, monkeypatch, model_dir, "-" if from_stdin else path, out, data)
    event(f"exit {status}")
    name = "standard input" if from_stdin else str(path)
    if status == 0:
        lines = data.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
        given_lines = [json.loads(line) for line in lines if line.strip()]
        written = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n")[:-1]]
        assert len(written) == len(given_lines), (given_lines, written)
        for line, given_line in zip(written, given_lines):
            echoed = given_line if isinstance(given_line, dict) else {"text": given_line}
            assert line == {**echoed, "predictions": line["predictions"]} and line["predictions"], line
        return
    assert bad is not None, said.err  # valid input is never refused
    errors = said.err.splitlines()
    where = f"{name}: no inputs" if not data.replace(b"\xef\xbb\xbf", b"").strip() else f"{name}:{bad}: "
    assert status == 2 and len(errors) == 1 and errors[0].startswith(f"error: {where}"), said.err
    assert not out.exists()


# ---------------------------------------------------------------- recipe overrides

DEMO = REPO / "recipes" / "demo.yaml"
KEYS = ["name", "output_dir", "training.lr", "training.steps", "training.batch_size", "training.seed",
        "training.mixed_precision", "sampling.strategy", "sampling.temperature", "model.max_length", "model.encoder",
        "tasks.sentiment.type", "tasks.sentiment.data.train", "tasks.pos.metrics", "tasks.new.type", "training",
        "tasks", "model", "training.nope", "tasks.sentiment.data.label_names.0", "tasks.sentiment.data.label_names"]
key = st.one_of(st.sampled_from(KEYS), st.lists(st.sampled_from(KEYS) | text, min_size=1, max_size=3).map(".".join),
                text)
yaml_value = st.one_of(text, json_value.map(json.dumps), st.sampled_from(
    ["[a", "{a: 1", "yes", "null", "~", "1e-5", "3.0e-5", "-1", "0", ".inf", ".nan", "1_000", "0x10", "'a'", "a #b",
     "&x 1", "*x", "!!python/object:os.system ls", "[]", "{}", "---", "a: b", "- a", "|", ">", "%TAG"]))


@PROPS
@given(st.lists(st.tuples(key, yaml_value), max_size=3))
def test_recipe_overrides_give_a_recipe_or_a_user_error_naming_the_key(overrides):
    from mtnlp.errors import UserError
    from mtnlp.readers import Row
    from mtnlp.recipe import Recipe, load_recipe

    items = [f"{k}={v}" for k, v in overrides]
    try:
        recipe = load_recipe(DEMO, items)
    except UserError as e:
        message = str(e)
        def names(item: str, key: str) -> bool:  # the override, its key, or a part of it (as given or as shown: a
            return f"override '{item}'" in message or any(  # character that does not show escaped)
                part in message or Row.printable(part) in message for part in [key, *key.split(".")] if part)

        assert any(names(item, k) for item, (k, _) in zip(items, overrides)), message
        if not any("\n" in item for item in items):
            assert "\n" not in message, message
        return
    assert isinstance(recipe, Recipe)


def quoted(value: str) -> str:
    """A YAML single-quoted scalar of `value` (a quote written twice)."""
    return "'" + value.replace("'", "''") + "'"


@PROPS
@given(st.floats(min_value=1e-12, max_value=10, allow_subnormal=False), st.integers(1, 10 ** 9),
       st.integers(0, 2 ** 31 - 1), st.integers(8, 512), st.floats(min_value=0.01, max_value=1e6),
       st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(str.strip),
       st.sampled_from(["proportional", "uniform", "temperature", "annealed", "round_robin"]),
       st.booleans())
def test_a_valid_override_is_what_the_loaded_recipe_holds(lr, steps, seed, max_length, temperature, name, strategy,
                                                          as_python):
    from mtnlp.recipe import load_recipe

    number = repr if as_python else lambda v: json.dumps(v)
    recipe = load_recipe(DEMO, [f"training.lr={number(lr)}", f"training.steps={steps}", f"training.seed={seed}",
                                f"model.max_length={max_length}", f"sampling.temperature={number(temperature)}",
                                f"name={quoted(name)}", f"sampling.strategy={strategy}"])
    assert recipe.training.lr == lr and recipe.training.steps == steps and recipe.training.seed == seed
    assert recipe.model.max_length == max_length and recipe.sampling.temperature == temperature
    assert recipe.name == name and recipe.sampling.strategy == strategy


# ---------------------------------------------------------------- hub ids and URLs

id_part = st.text(st.sampled_from("abcXYZ019-_.é"), min_size=1, max_size=12)
repo_id = st.one_of(id_part, st.tuples(id_part, id_part).map("/".join), text)


def hub_valid(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


@PROPS
@given(st.one_of(repo_id, text, repo_id.map(lambda i: f"https://huggingface.co/{i}"),
                 st.tuples(repo_id, text).map(lambda p: f"https://hf.co/{p[0]}/tree/{p[1]}")))
def test_hub_id_checks_never_raise_and_take_every_valid_id(name):
    from mtnlp.encoders import HUB_PAGE, url_problem
    from mtnlp.hub import hub_id, repo_id_problem

    problem = repo_id_problem(name)
    assert problem is None or isinstance(problem, str) and name in problem
    url = url_problem(name)
    assert url is None or isinstance(url, str)
    HUB_PAGE.match(name)
    if hub_valid(name):
        assert problem is None and url is None
        assert hub_id(name) in (name, None)


@PROPS
@given(st.tuples(id_part, id_part).map("/".join) | id_part, st.none() | id_part)
def test_a_hub_pages_address_names_the_id_and_revision(name, revision):
    from mtnlp.encoders import url_problem
    from mtnlp.hub import repo_id_problem

    if not hub_valid(name):
        return
    page = f"https://huggingface.co/{name}" + (f"/tree/{revision}" if revision else "")
    assert f"give the id {name}" in url_problem(page)
    assert repo_id_problem(page).endswith(f"give the id {name}")
    if revision and revision != "main":
        assert url_problem(page).endswith(f" and the revision {revision}")
