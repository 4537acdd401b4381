"""Property-based tests of the file readers: whatever bytes a data file holds, `iter_examples` either gives
well-formed examples or raises a UserError whose message starts with the file's path. Nothing else.

Well-formed means what the rest of the pipeline relies on:
- text tasks: "text" (and "text_pair") a non-empty, stripped str; "label" a non-empty stripped str
  (classification) or a finite float (regression);
- tagging: "tokens" and "tags" equal-length, non-empty lists of str, none of them empty or whitespace-only;
- every str encodable as UTF-8 (no lone surrogates: the tokenizer and Arrow refuse them).

Plain regression tests for the crashes these properties found are at the end of the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import read_examples
from mtnlp.tasks import task_type
from mtnlp.errors import UserError
from mtnlp.spec import DataSpec
from mtnlp.tasks.regression import FLOAT32_MAX

FORMATS = {"csv": ".csv", "tsv": ".tsv", "json": ".json", "jsonl": ".jsonl", "conll": ".conll",
           "conllu": ".conllu", "label_text": ".label"}
TASK_TYPES = ("classification", "regression", "tagging")
FUZZ = settings(max_examples=150, deadline=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
SMALL = settings(FUZZ, max_examples=60)

# characters that have tripped up readers: line separators str.splitlines() knows but files do not, NUL, BOM,
# CR, vertical tab / form feed / file separator (str.split() whitespace), NEL, no-break space, delimiters, quotes
SPECIALS = ["\u2028", "\u2029", "\x00", "\ufeff", "\r", "\n", "\r\n", "\t", " ", "  ", "\x0b", "\x0c", "\x1c",
            "\x85", "\xa0", "\u3000", ",", ";", '"', "'", "\\", "{", "}", "[", "]", ":", "#", "-", "_", "0", "1",
            "-1", "1e400", "nan", "NaN", "-DOCSTART-", "O", "B-PER", "label", "text", "tokens", "tags", "\U0001F600"]
CHARS = st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIALS))
TEXT = st.lists(CHARS, max_size=40).map("".join)
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@pytest.fixture(scope="module")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="mtnlp-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the property


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _good_str(value) -> bool:
    return isinstance(value, str) and value.strip() != "" and _utf8(value)


def check_example(ex: dict, task_type: str) -> None:
    assert isinstance(ex, dict), ex
    line = ex["_line"]
    assert (isinstance(line, int) and line >= 1) or isinstance(line, str), ex
    if task_type == "tagging":
        tokens, tags = ex["tokens"], ex["tags"]
        assert isinstance(tokens, list) and isinstance(tags, list), ex
        assert tokens and len(tokens) == len(tags), ex
        assert all(_good_str(t) for t in tokens), ex
        assert all(_good_str(t) for t in tags), ex
        return
    for key in ("text", "text_pair"):
        if key == "text" or key in ex:
            assert _good_str(ex[key]) and ex[key] == ex[key].strip(), ex
    label = ex["label"]
    if task_type == "regression":
        assert type(label) is float and math.isfinite(label), ex
    else:
        assert _good_str(label) and label == label.strip(), ex


def read_or_user_error(path: Path, spec: DataSpec, task_type: str):
    """The property: well-formed examples, or a UserError that starts with the path. Returns the examples/None."""
    try:
        rows = read_examples(path, spec, task_type)
    except UserError as e:
        message = str(e)
        assert message.startswith(str(path)), message
        assert "\n" not in message, message  # the CLI prints it as one line
        return None
    for ex in rows:
        check_example(ex, task_type)
    return rows or None  # (none: the data set's "no examples found", data.read_task)


def write(workdir: Path, fmt: str, data: bytes, by_suffix: bool = True) -> Path:
    path = workdir / ("data" + FORMATS[fmt] if by_suffix else "data.dat")
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- specs

SPECS = st.builds(
    DataSpec,
    text_column=st.sampled_from(["text", "sentence"]),
    text_pair_column=st.sampled_from([None, None, "text_b"]),
    label_column=st.sampled_from(["label", "label", "score"]),
    label_sep=st.sampled_from([None, None, ":", "-"]),
    label_names=st.sampled_from([None, None, {"0": "neg", "1": "pos"}, {"0": " ", "1": "pos"}]),
    token_column=st.sampled_from([None, None, 0, 1, -1, 5, "tokens"]),
    tag_column=st.sampled_from([None, None, -1, 1, 2, -7, "upos", "xpos", "tags", "deprel"]),
    encoding=st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16", "utf-8-sig", "no-such-codec"]),
)


def spec_for(fmt: str, spec: DataSpec, explicit_format: bool) -> DataSpec:
    spec.format = fmt if explicit_format else None
    return spec


# ---------------------------------------------------------------- 1. arbitrary bytes


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.binary(max_size=600), task_type=st.sampled_from(TASK_TYPES), spec=SPECS, explicit=st.booleans())
def test_arbitrary_bytes(workdir, fmt, data, task_type, spec, explicit):
    path = write(workdir, fmt, data, by_suffix=not explicit)
    read_or_user_error(path, spec_for(fmt, spec, explicit), task_type)


# ---------------------------------------------------------------- 2. arbitrary text


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(lines=st.lists(TEXT, max_size=12), end=LINE_ENDS, bom=st.booleans(), task_type=st.sampled_from(TASK_TYPES),
       spec=SPECS)
def test_arbitrary_text(workdir, fmt, lines, end, bom, task_type, spec):
    text = ("\ufeff" if bom else "") + end.join(lines)
    spec.encoding = "utf-8"
    path = write(workdir, fmt, text.encode("utf-8"))
    read_or_user_error(path, spec_for(fmt, spec, False), task_type)


# ---------------------------------------------------------------- 3. valid files, then mutated

WORD_CHARS = st.characters(codec="utf-8", exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"))
WORD = st.text(WORD_CHARS, min_size=1, max_size=8).filter(lambda w: w.strip() == w and w and w != "-DOCSTART-")
TAG = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "NOUN", "VERB", "0", "1"])
SENTENCE = st.lists(st.tuples(WORD, TAG), min_size=1, max_size=6)
ANY_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).filter(lambda t: t.strip() != "")
LABEL = st.one_of(WORD, st.sampled_from(["0", "1", "pos", "neg", "DESC:manner"]))
SCORE = st.floats(-FLOAT32_MAX, FLOAT32_MAX, allow_nan=False)  # (the float32 targets hold no larger)


def _tsv_safe(text: str) -> bool:
    return not any(c in text for c in "\t\n\r") and text.strip() != ""


def render(fmt: str, task_type: str, draw) -> tuple[str, list]:
    """A valid file for (fmt, task_type) and the examples a correct reader returns for it."""
    if fmt in ("conll", "conllu") or (task_type == "tagging" and fmt in ("json", "jsonl")):
        sentences = draw(st.lists(SENTENCE, min_size=1, max_size=5))
        if fmt == "conllu":
            sentences = [[(w.replace("\t", "x"), t) for w, t in s] for s in sentences]
        expected = [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in sentences]
        if fmt == "conll":
            blocks = ["\n".join(f"{w} POS {t}" for w, t in s) for s in sentences]
            text = "-DOCSTART- -X- O\n\n" + "\n\n".join(blocks) + "\n"
        elif fmt == "conllu":
            blocks = [f"# sent_id = {i}\n" + "\n".join(f"{j}\t{w}\t{w}\t{t}\tX\t_\t0\troot\t_\t_"
                                                          for j, (w, t) in enumerate(s, 1))
                      for i, s in enumerate(sentences)]
            text = "\n\n".join(blocks) + "\n\n"
        else:
            records = [{"tokens": e["tokens"], "tags": e["tags"]} for e in expected]
            text = (json.dumps(records, ensure_ascii=draw(st.booleans())) if fmt == "json"
                    else "".join(json.dumps(r, ensure_ascii=draw(st.booleans())) + "\n" for r in records))
        return text, expected
    regression = task_type == "regression"
    n = draw(st.integers(1, 6))
    label_strategy = SCORE if regression else LABEL
    texts = draw(st.lists(ANY_TEXT.filter(_tsv_safe) if fmt in ("tsv", "label_text") else ANY_TEXT,
                          min_size=n, max_size=n))
    labels = draw(st.lists(label_strategy, min_size=n, max_size=n))
    assume(("text", "label") not in zip(texts, labels))  # a row repeating the header is an error
    expected = [{"text": t.strip(), "label": (float(x) if regression else x)} for t, x in zip(texts, labels)]
    if fmt == "label_text":
        text = "".join(f"{x} {t}\n" for t, x in zip(texts, labels))
    elif fmt in ("csv", "tsv"):
        out = io.StringIO(newline="")
        if fmt == "csv":  # (Python 3.11's writer does not quote a field holding a bare \r for lineterminator \n)
            writer = draw(st.sampled_from([csv.writer(out, lineterminator="\r\n"),
                                           csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)]))
        else:
            writer = csv.writer(out, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None,
                                lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([(t, repr(x) if regression else x) for t, x in zip(texts, labels)])
        text = out.getvalue()
    else:
        records = [{"text": t, "label": x} for t, x in zip(texts, labels)]
        ascii_only = draw(st.booleans())
        text = (json.dumps(records, ensure_ascii=ascii_only) if fmt == "json"
                else "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records))
    return text, expected


def task_for(fmt: str, draw) -> str:
    if fmt in ("conll", "conllu"):
        return "tagging"
    if fmt in ("json", "jsonl"):
        return draw(st.sampled_from(TASK_TYPES))
    return draw(st.sampled_from(("classification", "regression")))


@pytest.mark.parametrize("fmt", FORMATS)
@SMALL
@given(data=st.data())
def test_valid_files_read_back_exactly(workdir, fmt, data):
    task_type = task_for(fmt, data.draw)
    if fmt == "label_text":
        task_type = "classification"
    text, expected = render(fmt, task_type, data.draw)
    # a file ending in a Ctrl-Z is refused (an old DOS end-of-file mark, not a value: CTRL_Z_ENDS)
    assume(not text.rstrip("\r\n").endswith("\x1a"))
    path = write(workdir, fmt, text.encode("utf-8"))
    rows = read_or_user_error(path, DataSpec(), task_type)
    assert rows is not None, text
    assert [{k: v for k, v in r.items() if k != "_line"} for r in rows] == expected


MUTATIONS = ("replace", "insert", "delete", "duplicate", "add_field", "drop_field", "special", "truncate", "blank")


@st.composite
def mutated(draw, fmt: str):
    task_type = task_for(fmt, draw)
    text, _ = render(fmt, task_type, draw)
    lines = text.split("\n")
    sep = {"csv": ",", "tsv": "\t", "conll": " ", "conllu": "\t"}.get(fmt, " ")
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            lines = [""]
        if kind == "replace":
            lines[i] = draw(TEXT)
        elif kind == "insert":
            lines.insert(i, draw(TEXT))
        elif kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "add_field":
            lines[i] += sep + draw(st.sampled_from(["", " ", "x", "\u2028", "_", "\x00"]))
        elif kind == "drop_field":
            lines[i] = lines[i].rsplit(sep, 1)[0]
        elif kind == "special":
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j] + draw(st.sampled_from(SPECIALS)) + lines[i][j:]
        elif kind == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif kind == "blank":
            lines[i] = draw(st.sampled_from(["", " ", "\t", "\u2028", "\x0c", "\xa0", "\ufeff"]))
    end = draw(LINE_ENDS)
    data = (("\ufeff" if draw(st.booleans()) else "") + end.join(lines)).encode("utf-8")
    if data and draw(st.integers(0, 4)) == 0:  # a few corrupted bytes
        raw = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        data = bytes(raw)
    return data, task_type


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data(), spec=SPECS, other_task=st.booleans())
def test_mutated_valid_files(workdir, fmt, data, spec, other_task):
    raw, task_type = data.draw(mutated(fmt))
    if other_task:  # the same file read for a task type it was not written for
        task_type = data.draw(st.sampled_from(TASK_TYPES))
    spec.encoding = data.draw(st.sampled_from(["utf-8", "utf-8", "latin-1"]))
    path = write(workdir, fmt, raw)
    read_or_user_error(path, spec_for(fmt, spec, False), task_type)


# ---------------------------------------------------------------- JSON values of every kind

NASTY = ["", " ", "\xa0", "\u2028", "\x0c", "\ud800", "a\udc80b", "x", "0", "1", "B-PER", ":", "nan", "inf", "1e400",
         10**400, -(10**309), 2**1023, None, True, float("nan"), float("inf"), 1e308]
JSON_SCALARS = st.one_of(
    st.sampled_from(NASTY), st.none(), st.booleans(), st.integers(), st.floats(), TEXT,
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["text", "label", "tokens", "tags", "x"]), inner,
                                                 max_size=4)), max_leaves=12)
KEYS = st.sampled_from(["text", "sentence", "text_b", "label", "score", "tokens", "tags", "x"])
RANDOM_RECORD = st.dictionaries(KEYS, st.one_of(JSON_VALUES, st.lists(JSON_SCALARS, max_size=4)), max_size=6)


@st.composite
def near_valid_record(draw):
    """A record every task type could read, with one or two values swapped for arbitrary JSON (or removed)."""
    n = draw(st.integers(1, 3))
    record = {"text": "a b", "sentence": "c", "text_b": "d", "label": "1", "score": 0.5,
              "tokens": ["w"] * n, "tags": ["O"] * n}
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.one_of(KEYS, st.sampled_from(["text", "label", "tokens", "tags"])))
        if isinstance(record.get(key), list) and record[key] and draw(st.booleans()):  # one element of the list
            record[key] = list(record[key])
            record[key][draw(st.integers(0, len(record[key]) - 1))] = draw(JSON_SCALARS)
        elif draw(st.integers(0, 5)) == 0:
            record.pop(key, None)
        else:
            record[key] = draw(JSON_VALUES)
    return record


RECORD = st.one_of(near_valid_record(), RANDOM_RECORD)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@FUZZ
@given(records=st.one_of(st.lists(near_valid_record(), min_size=1, max_size=2),
                         st.lists(st.one_of(RECORD, JSON_VALUES), max_size=4)), task_type=st.sampled_from(TASK_TYPES),
       spec=SPECS, wrap=st.sampled_from(["array", "data", "bare"]), ascii_only=st.booleans())
def test_json_values_of_every_kind(workdir, fmt, records, task_type, spec, wrap, ascii_only):
    spec.encoding = "utf-8"
    dump = lambda v: json.dumps(v, ensure_ascii=ascii_only, allow_nan=True)  # noqa: E731
    if fmt == "jsonl":
        text = "".join(dump(r) + "\n" for r in records)
    else:
        text = dump({"array": records, "data": {"data": records}, "bare": records[0] if records else None}[wrap])
    raw = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate becomes bytes that are not UTF-8
    path = write(workdir, fmt, raw)
    read_or_user_error(path, spec_for(fmt, spec, False), task_type)


FIELDS = {"classification": ["text", "label"], "regression": ["text", "label"], "tagging": ["tokens", "tags"]}


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("task_type", TASK_TYPES)
@FUZZ
@given(data=st.data(), value=st.one_of(st.sampled_from(NASTY), JSON_VALUES), n=st.integers(1, 3))
def test_json_one_bad_value(workdir, fmt, task_type, data, value, n):
    """Valid records but one value (or one list element) of a column the task reads is arbitrary JSON."""
    records = [{"text": "a b", "label": "1" if task_type != "regression" else 0.5, "tokens": ["w"] * n,
                "tags": ["O"] * n} for _ in range(2)]
    key = data.draw(st.sampled_from(FIELDS[task_type]))
    if task_type == "tagging" and data.draw(st.booleans()):
        records[1][key][data.draw(st.integers(0, n - 1))] = value
    else:
        records[1][key] = value
    text = (json.dumps(records) if fmt == "json" else "".join(json.dumps(r) + "\n" for r in records))
    read_or_user_error(write(workdir, fmt, text.encode()), DataSpec(), task_type)


@SMALL
@given(depth=st.integers(1, 5000), opener=st.sampled_from(["[", '{"a":', '[{"text":']),
       fmt=st.sampled_from(["json", "jsonl"]))
def test_deeply_nested_json(workdir, depth, opener, fmt):
    path = write(workdir, fmt, (opener * depth).encode())
    read_or_user_error(path, DataSpec(), "classification")


# ---------------------------------------------------------------- label sets (TaskType.label_set)


@SMALL
@given(labels=st.lists(st.one_of(TEXT.filter(lambda s: s.strip() == s and s),
                                 st.sampled_from(["0", "1", "-1", "--1", "-", "\u00b2", "\u0661", "10", "1" * 5000])),
                       min_size=1, max_size=6))
def test_label_set_never_crashes(labels):
    examples = [{"label": x} for x in labels]
    out = task_type("classification").label_set(examples)
    assert sorted(out) == sorted(set(labels))


# ---------------------------------------------------------------- regressions found by the properties above


def _raises(path, task_type="classification", **spec) -> str:
    with pytest.raises(UserError) as info:
        read_examples(path, DataSpec(**spec), task_type)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def test_regression_deeply_nested_json_is_a_user_error(tmp_path):
    for fmt in ("json", "jsonl"):
        path = tmp_path / f"deep.{fmt}"
        path.write_text("[" * 100_000)
        assert "invalid JSON" in _raises(path)


def test_regression_json_integer_with_too_many_digits(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a", "label": ' + "1" * 5000 + "}\n")
    assert "invalid JSON" in _raises(path) and f"{path}:1:" in _raises(path)


def test_regression_huge_integer_regression_label(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a", "label": 1' + "0" * 400 + "}\n")
    assert "finite number" in _raises(path, "regression")


def test_regression_lone_surrogate_in_json_text(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "bad \\ud800 text", "label": "b"}\n')
    assert f"{path}:2:" in _raises(path) and "surrogate" in _raises(path)
    path.write_text('{"tokens": ["a", "\\udc80"], "tags": ["O", "O"]}\n')
    assert "surrogate" in _raises(path, "tagging")


def test_regression_label_sep_leaves_empty_label(tmp_path):
    path = tmp_path / "q.label"
    path.write_text("DESC:manner How ?\n:odd What ?\n")
    assert f"{path}:2:" in _raises(path, label_sep=":")


def test_regression_structured_json_label_for_classification(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"text": "a", "label": ["x"]}\n')
    assert "label" in _raises(path)


def test_regression_whitespace_only_or_non_text_json_tokens(tmp_path):
    path = tmp_path / "t.jsonl"
    for tokens in (["a", " "], ["a", ""], ["a", None], ["a", ["b"]]):
        path.write_text(json.dumps({"tokens": tokens, "tags": ["O", "O"]}) + "\n")
        assert f"{path}:1:" in _raises(path, "tagging")
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O", "\u2028"]}) + "\n")
    assert f"{path}:1:" in _raises(path, "tagging")
    # numbers are accepted (JSON exports of datasets often hold class ids as tags)
    path.write_text(json.dumps({"tokens": ["a", 1999], "tags": [0, 3]}) + "\n")
    assert read_examples(path, DataSpec(), "tagging")[0]["tags"] == ["0", "3"]


def test_regression_whitespace_only_conll_token(tmp_path):
    path = tmp_path / "w.conll"
    path.write_text("EU NNP B-ORG\n\xa0 NNP O\n", encoding="utf-8")
    assert f"{path}:2:" in _raises(path, "tagging")
    path.write_text("EU NNP B-ORG\n\x0b NNP O\n", encoding="utf-8")  # \x0b is not a CoNLL column separator
    assert f"{path}:2:" in _raises(path, "tagging")
    # a line of other whitespace only (form feed, U+2028) separates sentences like a blank line
    path.write_text("EU NNP B-ORG\n\x0c\nrejects VBZ O\n", encoding="utf-8")
    rows = read_examples(path, DataSpec(), "tagging")
    assert [r["tokens"] for r in rows] == [["EU"], ["rejects"]]


def test_regression_whitespace_only_conllu_form_or_tag(tmp_path):
    path = tmp_path / "w.conllu"
    path.write_text("1\t\xa0\t_\tNOUN\tNN\t_\t0\troot\t_\t_\n", encoding="utf-8")
    assert f"{path}:1:" in _raises(path, "tagging")
    path.write_text("1\tword\t_\t \tNN\t_\t0\troot\t_\t_\n", encoding="utf-8")
    assert f"{path}:1:" in _raises(path, "tagging")


def test_regression_label_text_label_and_text_split_on_tab(tmp_path):
    path = tmp_path / "q.label"
    path.write_text("DESC\tHow did it happen ?\nHUM  Who was it ?\n")
    rows = read_examples(path, DataSpec(), "classification")
    assert [(r["label"], r["text"]) for r in rows] == [("DESC", "How did it happen ?"), ("HUM", "Who was it ?")]


def test_regression_label_set_with_non_ascii_digits_and_double_minus():
    assert task_type("classification").label_set([{"label": x} for x in ["\u00b2", "1"]]) == ["1", "\u00b2"]
    assert task_type("classification").label_set([{"label": x} for x in ["--1", "0"]]) == ["--1", "0"]
    assert task_type("classification").label_set([{"label": x} for x in ["10", "-1", "2"]]) == ["-1", "2", "10"]


def test_regression_header_only_and_empty_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("question,label\n\n")
    assert "only a header row (question, label)" in _raises(path) and f"{path}:1:" in _raises(path)
    path.write_text(",\nfine,1\n")
    assert f"{path}:1: empty header row" in _raises(path)
    path.write_text("\n\ntext,label\n")  # blank lines before the header are skipped, as by pandas and DictReader
    assert f"{path}:3: only a header row (text, label)" in _raises(path)


def test_regression_truncated_utf16(tmp_path):
    path = tmp_path / "odd.tsv"
    path.write_bytes("text\tlabel\na\t1\n".encode("utf-16") + b"\x00")
    assert "data.encoding" in _raises(path, encoding="utf-16")
