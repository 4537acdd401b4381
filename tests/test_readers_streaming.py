"""Files are read as a stream: every format's reader holds a bounded part of the file, JSON arrays are
parsed an item at a time across chunk boundaries, and errors still name the line."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtnlp.errors import UserError
from mtnlp.readers import JsonArray, iter_examples, read_lines
from mtnlp.spec import DataSpec

ROWS = 60_000  # about 5 MB per file: far above what a streaming reader holds at once
SENTENCE = "a streamed sentence of modest length that repeats {i}"


def big_file(tmp_path, fmt: str):
    """A file of ROWS examples in `fmt`, its spec and task type."""
    path = tmp_path / f"big.{fmt}"
    rows = range(ROWS)
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        text = f"text{sep}label\n" + "".join(f"{SENTENCE.format(i=i)}{sep}{i % 2}\n" for i in rows)
    elif fmt == "jsonl":
        text = "".join(json.dumps({"text": SENTENCE.format(i=i), "label": i % 2}) + "\n" for i in rows)
    elif fmt == "json":
        text = json.dumps({"version": "1", "data": [{"text": SENTENCE.format(i=i), "label": i % 2} for i in rows]},
                          indent=1)
    elif fmt == "label_text":
        text = "".join(f"L{i % 2} {SENTENCE.format(i=i)}\n" for i in rows)
    elif fmt == "conll":
        text = "".join(f"word{i} O\nother B-X\n\n" for i in rows)
    elif fmt == "conllu":
        text = "".join(f"# sent_id = {i}\n1\tword{i}\t_\tNOUN\t_\t_\t0\troot\t_\t_\n\n" for i in rows)
    path.write_text(text, encoding="utf-8")
    tagging = fmt in ("conll", "conllu")
    return path, DataSpec(format=fmt), "tagging" if tagging else "classification"


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "label_text", "conll", "conllu"])
def test_reading_holds_a_small_part_of_the_file(tmp_path, fmt):
    path, spec, kind = big_file(tmp_path, fmt)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_examples(path, spec, kind))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == ROWS
    assert peak < size / 3, (size, peak)  # reading whole would peak above the file size


def test_lines_files_are_read_side_by_side(tmp_path):
    text, labels = tmp_path / "text.txt", tmp_path / "labels.txt"
    text.write_text("".join(SENTENCE.format(i=i) + "\n" for i in range(ROWS)))
    labels.write_text("".join(f"{i % 3}\n" for i in range(ROWS)))
    tracemalloc.start()
    try:
        rows = read_lines({"text": text, "labels": labels}, DataSpec(), "classification")
        count = sum(1 for _ in rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == ROWS and peak < text.stat().st_size / 3


def chunks_of(text: str, size: int):
    return (text[i:i + size] for i in range(0, len(text), size))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=6),
       indent=st.sampled_from([None, 0, 2]), under_data=st.booleans(), size=st.integers(1, 40))
def test_json_array_items_across_any_chunk_boundaries(items, indent, under_data, size):
    document = {"meta": [1.5, 12345], "data": items, "after": {"x": 10}} if under_data else items
    text = json.dumps(document, indent=indent)
    parsed = [item for item, _ in JsonArray("f.json", chunks_of(text, size)).items()]
    assert parsed == items


@pytest.mark.parametrize("text", [
    '[{"a": 1},\n {"a": 2}\n {"a": 3}]',  # a missing comma
    '[{"a": 1},\n {"a": tru}]',  # a bad literal
    '[\n{"a": 1}\n,\n{"a": "unterminated\n}]',  # a line break in a string
    '{"version": 1,\n "data": [{"a": 1}],\n "x" 2}',  # a bad key: value after the data
    '[{"a": 1}]\n\n[]',  # extra data
])
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_json_errors_name_the_line_and_column_json_gives(text, size):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(UserError) as info:
        list(JsonArray("f.json", chunks_of(text, size)).items())
    line, column = expected.value.lineno, expected.value.colno
    assert str(info.value).startswith(f"f.json:{line}: invalid JSON: ")
    assert str(info.value).endswith(f"(column {column})")


@pytest.mark.parametrize("text", ['{"version": 1}', '{"data": {"a": 1}}', '"text"', '12'])
def test_json_without_an_array_of_items(text):
    with pytest.raises(UserError, match="expected a JSON array of objects"):
        list(JsonArray("f.json", chunks_of(text, 2)).items())


def test_a_bad_byte_far_into_the_file_names_its_line(tmp_path):
    # the file is decoded again 1 MiB at a time to find the line: a two-byte character straddles the
    # first chunk boundary, and the bad byte is in the second chunk
    line = "x" * 97 + "\t1\n"
    before = b"text\tlabel\n" + (line * ((1 << 20) // len(line))).encode()
    before = before[: (1 << 20) - 1] + "\u00e9\t1\n".encode()
    path = tmp_path / "big.tsv"
    path.write_bytes(before + b"bad \xff byte\t1\n")
    with pytest.raises(UserError) as info:
        list(iter_examples(path, DataSpec(), "classification"))
    bad_line = before.count(b"\n") + 1
    assert str(info.value).startswith(f"{path}:{bad_line}: byte 0xff is not valid utf-8")
