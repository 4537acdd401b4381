"""Readers on the real sample files, and the UserError (file:line) for each kind of bad input."""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import pytest

from conftest import DATA, REPO, SHARED
from mtnlp.data import read_task, rows_of
from mtnlp.errors import UserError
from conftest import read_examples
from mtnlp.readers import read_lines
from mtnlp.recipe import load_recipe
from mtnlp.spec import DataSpec

SST_DEV = REPO / "recipes" / "data" / "sst2" / "dev.tsv"
SST_TRAIN = REPO / "recipes" / "data" / "sst2" / "train.tsv"


def read(path, task_type="classification", **spec):
    return read_examples(Path(path), DataSpec(**spec), task_type)


def write(tmp_path, name, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def raises_at(path, line, *fragments, **read_kwargs) -> str:
    """Read `path`, expect a UserError at `path:line` whose message contains all `fragments`."""
    with pytest.raises(UserError) as info:
        read(path, **read_kwargs)
    message = str(info.value)
    where = f"{path}:{line}:" if line is not None else str(path)
    assert where in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def blocks(text: str) -> list[list[str]]:
    """Blank-line separated blocks of non-blank lines (independent of the library's parser)."""
    return [[line for line in b.split("\n") if line.strip()] for b in re.split(r"\n[ \t]*\n", text) if b.strip()]


# ---------------------------------------------------------------- tsv / csv


def test_tsv_sst2_dev():
    rows = read(SST_DEV, text_column="sentence")
    assert len(rows) == 872
    assert rows[0] == {"text": "it 's a charming and often affecting journey .", "label": "1", "_line": 2}
    assert rows[1]["text"] == "unflinchingly bleak and desperate" and rows[1]["label"] == "0"
    assert rows[-1]["_line"] == 873
    labels = [r["label"] for r in rows]
    assert (labels.count("0"), labels.count("1")) == (428, 444)  # recipes/data/README.md
    # text is read literally (apostrophes, backticks, PTB tokens), only the trailing space is stripped
    raw = SST_DEV.read_text(encoding="utf-8").split("\n")[1:]
    raw = [line.split("\t")[0] for line in raw if line]
    assert [r["text"] for r in rows] == [t.strip() for t in raw]
    assert sum("'" in r["text"] for r in rows) == sum("'" in t for t in raw) > 100


def test_tsv_quote_characters_are_literal(tmp_path):
    # a TSV field that starts with '"' must not open a quoted (multi-line, tab-swallowing) field
    path = write(tmp_path, "quotes.tsv", 'text\tlabel\n"a quote that never closes\t1\n'
                                         'he said "hi" \t0\n"""triple\t1\n')
    rows = read(path)
    assert [(r["text"], r["label"], r["_line"]) for r in rows] == [
        ('"a quote that never closes', "1", 2), ('he said "hi"', "0", 3), ('"""triple', "1", 4)]


def test_a_quoted_tsv_reads_with_quoted_true(tmp_path):
    """A TSV written with quoting (pandas, datasets' to_csv): quotes are literal by default (GLUE-style files),
    data.quoted: true reads them as a CSV's are; its field count error says so."""
    import pandas as pd

    texts = ['she said "no" twice', "a tab\there", "plain"]
    path = tmp_path / "pandas.tsv"
    pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos"]}).to_csv(path, sep="\t", index=False)
    assert [r["text"] for r in read(path, quoted=True)] == texts
    message = raises_at(path, 3, "3 fields, but the header has 2")  # the quoted tab split the field
    assert message.endswith("(if the file quotes its fields, set data.quoted: true)")
    path.write_text('text\tlabel\n"quoted"\tpos\n', encoding="utf-8")
    assert read(path)[0]["text"] == '"quoted"' and read(path, quoted=True)[0]["text"] == "quoted"
    path = write(tmp_path, "q.csv", 'text,label\n"a" b,pos\n')
    assert read(path, quoted=False)[0]["text"] == '"a" b'  # a CSV whose quotes are literal
    with pytest.raises(UserError, match=r"t\.jsonl: data\.quoted applies to csv and tsv files, not jsonl"):
        read(write(tmp_path, "t.jsonl", '{"text": "a", "label": 1}\n'), quoted=True)


def test_a_csv_separated_by_semicolons_and_files_that_are_no_text_data_are_pointed_out(tmp_path):
    """Excel writes CSV with semicolons in some languages: the error was a missing column 'text' (found:
    text;label) or a field count. A .parquet file was an unknown format, though data.hub reads it."""
    path = write(tmp_path, "eu.csv", "text;label\r\ngood film;1\r\nbad, very bad;0\r\n")
    message = raises_at(path, 1, "the header is one column, 'text;label': a file separated by semicolons",
                        'Save it as "CSV UTF-8 (comma delimited)"')
    assert "\n" not in message
    quoted = write(tmp_path, "lo.csv", '"text";"label"\n"good film";"1"\n')  # LibreOffice quotes every field
    raises_at(quoted, 1, "malformed CSV", "fields separated by semicolons", 'Save it as "CSV UTF-8 (comma delimited)"')
    parquet = write(tmp_path, "train.parquet", b"PAR1\x15\x04\x15\xec")
    raises_at(parquet, None, "Parquet files are read as a data set folder", "give the folder as data.hub, with "
              "train: train (validation: validation, test: test)")
    # by its first bytes too: named .csv, or read with data.format, it was "byte 0xec is not valid utf-8; set
    # data.encoding", which reads binary as rows once followed
    renamed = write(tmp_path, "train.csv", b"PAR1\x15\x04\x15\xec")
    for path, spec in ((renamed, {}), (parquet, {"format": "csv"})):
        raises_at(path, None, "Parquet files are read as a data set folder", **spec)
    # a workbook was "a zip-compressed file; decompress it first" (.xlsx) or "byte 0xd0 is not valid utf-8" (.xls)
    import zipfile

    with zipfile.ZipFile(tmp_path / "book.xlsx", "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
    ole2 = write(tmp_path, "old.csv", bytes.fromhex("d0cf11e0a1b11ae1") + bytes(200))
    for path in (tmp_path / "book.xlsx", ole2, write(tmp_path, "book.csv", (tmp_path / "book.xlsx").read_bytes())):
        message = raises_at(path, None, "an Office file (an Excel or LibreOffice workbook?), not a text file: save it "
                                        'as CSV (Excel: "CSV UTF-8 (comma delimited)")')
        assert message.startswith(f"{path}: ")
    # a web page saved in place of the file (wget of a GitHub page): "missing column 'text' (found: <!DOCTYPE html>)"
    for name in ("page.csv", "page.jsonl", "page.json"):  # formats a web page cannot be valid in
        page = write(tmp_path, name, '\ufeff\n<!DOCTYPE html>\n<html lang="en"><body>text,label</body></html>\n')
        raises_at(page, None, "an HTML page, not a data file (a web page saved instead of the file? download the raw "
                              "file: GitHub's Raw link, the hub's resolve/main/ link)")
    # ... but text that merely starts like one is data: web pages as texts, the gene PAR1, a quoted LFS header
    headerless = {"header": False, "text_column": 0, "label_column": 1}
    pages = write(tmp_path, "pages.tsv", "<!DOCTYPE html><html><body>win money</body></html>\tspam\nhi\tham\n")
    assert [ex["text"] for ex in read(pages, **headerless)] == ["<!DOCTYPE html><html><body>win money</body></html>",
                                                                "hi"]
    web = write(tmp_path, "web.conll", "<html>\tO\nParis\tB-LOC\n")
    assert read(web, task_type="tagging")[0]["tokens"] == ["<html>", "Paris"]
    gene = write(tmp_path, "gene.tsv", "PAR1 expression rises\tpos\nnothing\tneg\n")
    assert read(gene, **headerless)[0]["text"] == "PAR1 expression rises"
    quoted = write(tmp_path, "lfs.tsv", "version https://git-lfs.github.com/spec/v1 is a header\tpos\nx\tneg\n")
    assert len(read(quoted, **headerless)) == 2
    pointer = write(tmp_path, "lfs.csv", "version https://git-lfs.github.com/spec/v1\noid sha256:"
                                         f"{'0' * 64}\nsize 52428800\n")  # a clone without git-lfs
    raises_at(pointer, None, "a Git LFS pointer, not the data: the repository was cloned without its large files "
                             "(`git lfs pull` in it fetches them)")
    archive = tmp_path / "data.csv.zip"  # any other zip is still a compressed file
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data.csv", "text,label\na,b\n")
    raises_at(archive, None, "a zip-compressed file; decompress it first", format="csv")


def read_classification_train(folder, train: str):
    """The train split of one classification task on `folder`/`train`, read as a run reads it."""
    recipe = load_recipe(write(folder, "r.yaml", json.dumps({"model": {"encoder": "bert-base-uncased"},
                                                             "data_dir": str(folder), "tasks": {"t": {
                                                                 "type": "classification", "data": {"train": train}}}})))
    return read_task(recipe, "t", recipe.tasks["t"], splits=("train",))


@pytest.mark.parametrize("rows, label, warned", [(60, "sentence number {}", True), (100, "sentence number {}", False),
                                                 (19, "sentence number {}", False), (60, "intent_{}", False),
                                                 (60, "intent {}", False), (60, "这部电影真好看{}", True),
                                                 (60, "#win{} today!", True), (60, "意图{}", False)])
def test_a_label_for_nearly_every_example_asks_whether_label_column_is_the_text(tmp_path, recwarn, rows, label, warned):
    """label_column naming the text column trained 60 labels for 60 examples without a word; a few-shot set of
    many label names (intent_17) is not asked about."""
    text = "".join(f"{'x' * (i % 3 + 1)},{label.format(i % 40)}\n" for i in range(rows))  # label: a sentence, or not
    write(tmp_path, "t.csv", "text,label\n" + text)
    raw = read_classification_train(tmp_path, "t.csv")
    said = [str(w.message) for w in recwarn if "the text's column" in str(w.message)]
    labels = len(raw.labels)
    assert said == ([f"{tmp_path / 't.csv'}: {labels} labels for {rows} examples: is tasks.t.data.label_column "
                     "('label') the text's column?"] if warned else [])


def test_labels_that_differ_only_in_case_are_pointed_out(tmp_path, recwarn):
    """'Technical' and 'technical' were two labels without a word (the table said labels 7)."""
    write(tmp_path, "t.csv", "text,label\na,Technical\nb,technical\nc,billing\nd,Billing\ne,other\n")
    raw = read_classification_train(tmp_path, "t.csv")
    assert raw.labels == ["Billing", "Technical", "billing", "other", "technical"]
    said = [str(w.message) for w in recwarn if "differ only in case" in str(w.message)]
    assert said == [f"{tmp_path / 't.csv'}: labels 'Billing' and 'billing' differ only in case: they are 2 labels "
                    "(write them alike if they are one)"]


def test_labels_that_read_alike_are_pointed_out(tmp_path, recwarn):
    """café in NFC and in NFD, a label with a right-to-left mark, a full-width one: each was a class of its own
    without a word (multilingual walk: 6 labels meant, 13 trained)."""
    write(tmp_path, "t.csv", "text,label\na,caf\u00e9\nb,cafe\u0301\nc,POS\nd,\uff30\uff2f\uff33\ne,\u200fneg\nf,neg\n"
                             "g,\u212a\nh,K\n")  # (the Kelvin sign: it differs in form, not in case)
    raw = read_classification_train(tmp_path, "t.csv")
    assert len(raw.labels) == 8  # kept as written: a warning, no normalising
    said = [str(w.message) for w in recwarn if "differ only" in str(w.message)]
    assert said == [f"{tmp_path / 't.csv'}: labels 'K' and '\\u212a' differ only in Unicode form, "
                    "invisible characters, spaces or case: they are 2 labels (write them alike if they are one)"]


@pytest.mark.parametrize("written", [("1", "1.0"), ("1", "true")])
def test_labels_that_are_one_number_written_two_ways_are_pointed_out(tmp_path, recwarn, written):
    """1 and 1.0 (or JSON's true and 1) in one training split were two labels without a word (a file joined from
    two exports trained a 4-class head for 2 classes)."""
    one, other = written
    write(tmp_path, "t.jsonl", "".join(f'{{"text": "{text}", "label": {label}}}\n' for text, label in
                                       [("a", one), ("b", "0"), ("c", other), ("d", "0"), ("e", one)]))
    raw = read_classification_train(tmp_path, "t.jsonl")
    assert len(raw.labels) == 3  # kept as written: a warning, no normalising
    said = [str(w.message) for w in recwarn if "same number" in str(w.message)]
    shown = {"1.0": "'1' and '1.0'", "true": "'1' and 'True'"}[other]
    assert said == [f"{tmp_path / 't.jsonl'}: labels {shown} are the same number: they are 2 labels (write them "
                    "alike if they are one)"]


def classification_recipe(folder, **data):
    """A recipe of one classification task "t" on `data`'s files in `folder`."""
    return load_recipe(write(folder, "r.yaml", json.dumps({"model": {"encoder": "bert-base-uncased"}, "data_dir": str(folder),
                                                           "tasks": {"t": {"type": "classification", "data": data}}})))


def test_a_label_that_reads_as_a_training_label_is_named_when_unseen(tmp_path):
    write(tmp_path, "train.csv", "text,label\na,caf\u00e9\nb,th\u00e9\n")
    write(tmp_path, "dev.csv", "text,label\na,cafe\u0301\n")
    recipe = classification_recipe(tmp_path, train="train.csv", validation="dev.csv")
    with pytest.raises(UserError, match=r"dev.csv:2: label '[^']+' \(written 'cafe\\u0301'; the training split has "
                                        r"'caf\\xe9', which reads alike: write them alike\)"):
        read_task(recipe, "t", recipe.tasks["t"])


def test_json_booleans_are_the_labels_pandas_writes_and_a_lower_case_one_gets_one_hint(tmp_path):
    """JSON's true is "True", as pandas and Python's csv module write it (and as models trained before hold): a JSONL
    split and such a CSV split share their labels. A CSV's "true" is another label: the error gave two hints, one
    calling them numbers."""
    write(tmp_path, "train.jsonl", '{"text": "a", "label": true}\n{"text": "b", "label": false}\n')
    write(tmp_path, "dev.csv", "text,label\nc,False\nd,True\n")
    write(tmp_path, "test.csv", "text,label\ne,true\n")
    recipe = classification_recipe(tmp_path, train="train.jsonl", validation="dev.csv")
    raw = read_task(recipe, "t", recipe.tasks["t"])
    assert raw.labels == ["False", "True"] and [r["label"] for r in rows_of(raw.examples["validation"])] == ["False", "True"]
    recipe.tasks["t"].data.test = str(tmp_path / "test.csv")
    with pytest.raises(UserError) as error:
        read_task(recipe, "t", recipe.tasks["t"])
    assert "test.csv:2: label 'true' (written 'true'; the training split has 'True', which reads alike: write them " \
           "alike) does not occur" in str(error.value) and "numbers" not in str(error.value)


def test_a_number_written_two_ways_is_named_when_a_label_is_unseen():
    """pandas writes an int column with a missing value as 1.0: the error named '1' unknown among 1.0, 2.0."""
    import pyarrow as pa

    from mtnlp.data import check_labels
    from mtnlp.tasks import task_type

    examples = pa.Table.from_pylist([{"text": "a", "label": "1", "_line": 4}])
    with pytest.raises(UserError, match=r"^dev.jsonl:4: label '1' \(the training split has '1.0': write the numbers "
                                        r"alike in every split\) does not occur in the training split \(known: 1.0, 2.0\)$"):
        check_labels(examples, ["1.0", "2.0"], task_type("classification"), "dev.jsonl")


def test_a_tsv_read_literally_that_looks_quoted_is_pointed_out(tmp_path):
    """GoEmotions' files: every text with a quote is wrapped in quotes, inner ones doubled; read as they are
    (the default), the quotes would be trained on. Bare quotes (SST-2) are not flagged."""
    import warnings

    path = write(tmp_path, "q.tsv", 'text\tlabel\nplain\t1\n"she said ""no"" twice"\t0\n"a ""b"""\t1\n')
    with pytest.warns(UserWarning, match=r"q\.tsv: 2 record\(s\) hold a field that looks CSV-quoted \(line 3: "
                                         r"\"she said \"\"no\"\" twice\"\), read as it is, quotes kept; .*set data.quoted: true"):
        assert read(path)[1]["text"] == '"she said ""no"" twice"'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read(path, quoted=True)[1]["text"] == 'she said "no" twice'
        assert read(path, quoted=False)[1]["text"] == '"she said ""no"" twice"'  # said so: no warning
        read(write(tmp_path, "bare.tsv", 'text\tlabel\nhe said "hi" \t0\n"""triple\t1\n"quoted"\t1\n'))


@pytest.mark.parametrize("content, line, fragment", [
    ('text,label\nfine,1\n"a quote left open,0\nmore,1\nand more,0\n', 3, "runs on to line 5"),
    ('text,label\nfine,1\n"closed" then text,0\n', 3, "',' expected after '\"'"),
    ('text,label\nfine,1\n""\nmore,1\n', 3, "1 fields, but the header has 2"),  # not a blank line
])
def test_a_malformed_csv_record_is_reported_where_it_starts(tmp_path, content, line, fragment):
    raises_at(write(tmp_path, "bad.csv", content), line, fragment)


@pytest.mark.parametrize("kind, start, name", [("gzip", b"\x1f\x8b\x08\x00", "train.csv"),
                                               ("zip", b"PK\x03\x04\x14\x00", "train.csv"),
                                               ("gzip", b"\x1f\x8b\x08\x00", "train.tsv.gz")])
def test_a_compressed_file_is_named_as_such(tmp_path, kind, start, name):
    """train.tsv.gz was first 'unknown file format .gz; set data.format', which then said it was compressed."""
    path = write(tmp_path, name, start + b"\x00" * 20)
    message = raises_at(path, None, f"a {kind}-compressed file; decompress it first", encoding="latin-1")
    assert message.startswith(f"{path}: ")


def test_csv_trec_sample_crlf():
    path = DATA / "trec_sample.csv"
    rows = read(path, text_column="question")
    assert len(rows) == 60
    assert rows[0] == {"text": "How did serfdom develop in and then leave Russia ?", "label": "DESC", "_line": 2}
    assert rows[-1]["_line"] == 61
    assert {r["label"] for r in rows} <= {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert not any("\r" in r["text"] or "\r" in r["label"] for r in rows)
    # the same questions as the first 60 rows of the demo TREC train file
    tsv = read(REPO / "recipes" / "data" / "trec" / "train.tsv")[:60]
    assert [(r["text"], r["label"]) for r in rows] == [(r["text"], r["label"]) for r in tsv]


def test_csv_regression_quoted_commas_and_float_labels():
    path = DATA / "regression_sample.csv"
    rows = read(path, "regression", label_column="score")
    assert len(rows) == 40
    assert all(type(r["label"]) is float and 0.0 <= r["label"] <= 1.0 for r in rows)
    assert rows[1] == {"text": "The best pizza I have had in years, hands down.", "label": 0.95, "_line": 3}
    must_see = [r for r in rows if "must-see" in r["text"]]
    assert must_see == [{"text": 'A "must-see" for anyone who likes quiet dramas.', "label": 0.86, "_line": 8}]
    with path.open(newline="", encoding="utf-8") as f:
        expected = [(t.strip(), float(s)) for t, s in list(csv.reader(f))[1:]]
    assert [(r["text"], r["label"]) for r in rows] == expected
    assert sum("," in r["text"] for r in rows) >= 5


# ---------------------------------------------------------------- json / jsonl


def test_json_and_jsonl_give_the_same_examples():
    a = read(DATA / "sst2_sample.json", text_column="sentence")
    b = read(DATA / "sst2_sample.jsonl", text_column="sentence")
    assert len(a) == len(b) == 60
    assert [(r["text"], r["label"]) for r in a] == [(r["text"], r["label"]) for r in b]
    assert b[0] == {"text": "are more deeply thought through than in most ` right-thinking ' films",
                    "label": "1", "_line": 1}
    assert [r["_line"] for r in b] == list(range(1, 61))
    assert a[3]["_line"] == "14: item 3"  # the line the item starts on (sst2_sample.json: 3 lines per item)
    assert {r["label"] for r in a} == {"0", "1"}  # JSON ints become label strings, like the TSV
    tsv = read(SST_TRAIN, text_column="sentence")[:60]
    assert [(r["text"], r["label"]) for r in a] == [(r["text"], r["label"]) for r in tsv]


def test_json_object_with_data_key(tmp_path):
    path = write(tmp_path, "d.json", json.dumps({"data": [{"text": "x y", "label": "a"}, {"text": "z", "label": "b"}]}))
    assert [(r["text"], r["label"]) for r in read(path)] == [("x y", "a"), ("z", "b")]


def test_jsonl_keeps_unicode_line_separator_inside_strings(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028/U+2029/U+0085 raw inside strings; they are valid JSON and
    # do not end a JSON-lines record (only \n does). Web-scraped text contains them.
    records = [{"text": "first line\u2028second line", "label": "a"}, {"text": "next\x85record", "label": "b"},
               {"text": "plain", "label": "a"}]
    path = write(tmp_path, "u.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    rows = read(path)
    assert [(r["text"], r["label"], r["_line"]) for r in rows] == [
        ("first line\u2028second line", "a", 1), ("next\x85record", "b", 2), ("plain", "a", 3)]


# ---------------------------------------------------------------- sentence pairs


def test_sentence_pairs_tsv():
    rows = read(DATA / "pairs_sample.tsv", text_column="premise", text_pair_column="hypothesis")
    assert len(rows) == 30
    assert rows[0] == {"text": "A man is riding a bicycle down a hill.", "text_pair": "A person is on a bike.",
                       "label": "entailment", "_line": 2}
    labels = [r["label"] for r in rows]
    assert {label: labels.count(label) for label in set(labels)} == {
        "entailment": 10, "neutral": 10, "contradiction": 10}
    assert all(r["text_pair"] and r["text_pair"] != r["text"] for r in rows)
    # without text_pair_column there is no text_pair
    assert "text_pair" not in read(DATA / "pairs_sample.tsv", text_column="premise")[0]


# ---------------------------------------------------------------- label_text (TREC layout)


def test_label_text_with_label_sep(tmp_path):
    path = write(tmp_path, "q.label", "DESC:manner How did serfdom develop in and then leave Russia ?\n\n"
                                      "ENTY:cremat What films featured the character Popeye Doyle ?\n")
    rows = read(path, label_sep=":")
    assert rows == [{"text": "How did serfdom develop in and then leave Russia ?", "label": "DESC", "_line": 1},
                    {"text": "What films featured the character Popeye Doyle ?", "label": "ENTY", "_line": 3}]
    assert [r["label"] for r in read(path)] == ["DESC:manner", "ENTY:cremat"]  # fine labels without label_sep
    bad = write(tmp_path, "bad.label", "DESC:manner How ?\nHUM:ind\n")
    raises_at(bad, 2, "empty text")


# ---------------------------------------------------------------- CoNLL


def conll_sentences(path: Path) -> list[list[list[str]]]:
    out = []
    for block in blocks(path.read_text(encoding="utf-8")):
        lines = [line.split() for line in block if not line.startswith("-DOCSTART-")]
        if lines:
            out.append(lines)
    return out


def test_conll_ner_sample():
    path = DATA / "ner_sample.conll"
    text = path.read_text(encoding="utf-8")
    assert not text.endswith("\n")  # the last sentence must be flushed at EOF
    expected = conll_sentences(path)
    rows = read(path, "tagging")
    assert len(rows) == len(expected) == 25
    assert sum(len(r["tokens"]) for r in rows) == 272
    assert all("-DOCSTART-" not in r["tokens"] for r in rows)
    assert [r["tokens"] for r in rows] == [[f[0] for f in s] for s in expected]
    assert [r["tags"] for r in rows] == [[f[3] for f in s] for s in expected]  # default: last column (NER)
    assert rows[0]["tokens"][:3] == ["Northwind", "Shipping", "Company"]
    assert rows[0]["tags"][:3] == ["B-ORG", "I-ORG", "I-ORG"] and rows[0]["_line"] == 3
    assert rows[-1]["tokens"][-4:] == ["Halden", "last", "year", "."]  # the unterminated last sentence
    assert {t for r in rows for t in r["tags"]} <= {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
                                                     "B-MISC", "I-MISC"}


def test_conll_columns_are_chosen():
    path = DATA / "ner_sample.conll"
    expected = conll_sentences(path)
    pos = read(path, "tagging", tag_column=1)
    assert [r["tags"] for r in pos] == [[f[1] for f in s] for s in expected]
    assert pos[0]["tags"][:4] == ["NNP", "NNP", "NNP", "VBD"]
    chunk = read(path, "tagging", tag_column=2, token_column=1)
    assert [r["tokens"] for r in chunk] == [[f[1] for f in s] for s in expected]
    assert chunk[0]["tags"][:4] == ["B-NP", "I-NP", "I-NP", "B-VP"]


def conllu_words(path: Path, column: int) -> list[tuple[list[str], list[str]]]:
    out = []
    for block in blocks(path.read_text(encoding="utf-8")):
        fields = [line.split("\t") for line in block if not line.startswith("#")]
        words = [f for f in fields if re.fullmatch(r"\d+", f[0])]
        if words:
            out.append(([f[1] for f in words], [f[column] for f in words]))
    return out


def test_conllu_skips_multiword_ranges_and_empty_nodes():
    path = DATA / "ud_sample.conllu"
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^\d+-\d+\t", text, re.M) and re.search(r"^\d+\.\d+\t", text, re.M)
    expected = conllu_words(path, 3)
    rows = read(path, "tagging")
    assert len(rows) == len(expected) == 30
    n_words = len(re.findall(r"^\d+\t", text, re.M))
    assert sum(len(r["tokens"]) for r in rows) == n_words
    assert [(r["tokens"], r["tags"]) for r in rows] == expected
    tokens = [t for r in rows for t in r["tokens"]]
    for contraction in ("Bush's", "don't", "can't"):  # multiword surface forms are not words
        assert contraction not in tokens
    assert "ca" in tokens and "n't" in tokens
    ids = [int(line.split("\t")[0]) for line in text.splitlines() if re.match(r"\d+\t", line)]
    assert len(ids) == n_words and rows[0]["_line"] == 3  # its first word, after two comment lines


def test_conllu_upos_vs_xpos():
    path = DATA / "ud_sample.conllu"
    upos = read(path, "tagging")
    xpos = read(path, "tagging", tag_column="xpos")
    assert [r["tokens"] for r in upos] == [r["tokens"] for r in xpos]
    assert [r["tags"] for r in xpos] == [t for _, t in conllu_words(path, 4)]
    assert upos[0]["tags"][:3] == ["PRON", "VERB", "PRON"]
    assert xpos[0]["tags"][:3] == ["PRP", "VBZ", "PRP"]
    assert {t for r in upos for t in r["tags"]} <= {
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"}
    with pytest.raises(UserError, match="upos' or 'xpos'"):
        read(path, "tagging", tag_column="deprel")


# ---------------------------------------------------------------- errors


def test_missing_column_tsv(tmp_path):
    path = write(tmp_path, "m.tsv", "sentence\tlabel\nhello\t1\n")
    raises_at(path, 2, "missing column 'text'", "sentence")


@pytest.mark.parametrize("task_type,content,spec,missing,key", [
    ("classification", '{"sentence": "a", "label": 1}\n', {}, "text", "text_column"),
    ("classification", '{"text": "a", "label": 1}\n', {"text_pair_column": "hypothesis"}, "hypothesis",
     "text_pair_column"),
    ("regression", '{"text": "a", "score": 1.5}\n', {}, "label", "label_column"),
    ("multilabel", '{"text": "a", "labels": ["x"]}\n', {}, "label", "label_column"),
    ("tagging", '{"words": ["a"], "tags": ["O"]}\n', {}, "tokens", "token_column"),
    ("tagging", '{"tokens": ["a"], "ner_tags": ["O"]}\n', {}, "tags", "tag_column"),
    ("multiple_choice", '{"text": "a", "options": ["x", "y"], "label": 0}\n', {}, "choices", "choices_column"),
    ("multiple_choice", '{"text": "a", "choices": ["x", "y"], "label": 0}\n', {"question_column": "q"}, "q",
     "question_column"),
    ("multiple_choice", '{"text": "a", "choices": ["x", "y"]}\n', {}, "label", "label_column"),
    ("multiple_choice", '{"text": "a", "c1": "x", "label": 0}\n', {"choices_column": ["c1", "c2"]}, "c2",
     "choices_column"),
    ("multiple_choice", '{"ctx": "a", "choices": ["x", "y"], "label": 0}\n', {}, "text", "text_column"),
    ("multilabel", '{"text": "a", "label": ["x"]}\n', {"text_pair_column": "b"}, "b", "text_pair_column"),
])
def test_a_missing_column_names_the_data_key_that_names_it(tmp_path, task_type, content, spec, missing, key):
    """'missing column text' left a user of a set whose column is "sentence" to find which key renames it."""
    from mtnlp.tasks.multiple_choice import ChoiceData

    path = write(tmp_path, "m.jsonl", content)
    with pytest.raises(UserError) as info:
        read_examples(path, (ChoiceData if task_type == "multiple_choice" else DataSpec)(**spec), task_type)
    assert str(info.value).startswith(f"{path}:1: missing column '{missing}' (found: ")
    assert str(info.value).endswith(f"; data.{key} names the column to read)"), str(info.value)


def test_a_column_name_with_spaces_is_pointed_out(tmp_path):
    path = write(tmp_path, "s.csv", "text, label\nfine,1\n")
    raises_at(path, 2, "missing column 'label': the file has ' label' (with spaces)")


def test_missing_column_jsonl(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c"}\n')
    raises_at(path, 3, "missing column 'label'")


def test_missing_column_json_array_names_line_and_item(tmp_path):
    path = write(tmp_path, "m.json", json.dumps([{"text": "a", "label": 1}, {"txt": "b", "label": 0}]))
    with pytest.raises(UserError, match=re.escape(f"{path}:1: item 1: missing column 'text'")):
        read(path)
    path = write(tmp_path, "m.json", json.dumps([{"text": "a", "label": 1}] * 3 + [{"txt": "b", "label": 0}], indent=2))
    with pytest.raises(UserError, match=re.escape(f"{path}:14: item 3: missing column 'text'")):
        read(path)


def test_wrong_field_count_tsv(tmp_path):
    path = write(tmp_path, "f.tsv", "text\tlabel\nok\t1\nalso ok\t0\ntoo\tmany\tfields\nok\t1\n")
    raises_at(path, 4, "3 fields", "header has 2")


def test_invalid_json_line_in_jsonl(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n{"text": "c",\n')
    raises_at(path, 4, "invalid JSON")


def test_non_utf8_byte_then_latin1(tmp_path):
    path = write(tmp_path, "l1.tsv", b"text\tlabel\nplain\t1\ncaf\xe9 au lait\t0\n")
    message = raises_at(path, 3, "0xe9", "data.encoding", "latin-1")
    assert "utf-8" in message
    rows = read(path, encoding="latin-1")
    assert [r["text"] for r in rows] == ["plain", "caf\u00e9 au lait"]


def test_empty_text(tmp_path):
    path = write(tmp_path, "e.tsv", "text\tlabel\nfine\t1\n   \t0\n")
    raises_at(path, 3, "empty text", "'text'")


def test_empty_label(tmp_path):
    path = write(tmp_path, "e.csv", "text,label\nfine,1\nno label,\n")
    raises_at(path, 3, "empty label")


def test_conll_latin1_file_with_byte_0x85(tmp_path):
    # A Windows-1252 file with '…' (0x85): the utf-8 error suggests latin-1, which decodes 0x85 to U+0085.
    # That is not a line break in a CoNLL file: the line must stay one token line of 3 columns.
    path = write(tmp_path, "cp.conll", b"Wait DT O\nwhat\x85 NN O\n. . O\n\nNext NN O\n")
    raises_at(path, 2, "latin-1", task_type="tagging")
    rows = read(path, "tagging", encoding="latin-1")
    assert [len(r["tokens"]) for r in rows] == [3, 1]
    assert rows[0]["tokens"][1].startswith("what") and rows[0]["tags"] == ["O", "O", "O"]
    assert [r["_line"] for r in rows] == [1, 5]


def test_docstart_ends_a_sentence_without_blank_lines(tmp_path):
    path = write(tmp_path, "d.conll", "-DOCSTART- -X- O\nEU NNP B-ORG\nrejects VBZ O\n-DOCSTART- -X- O\n"
                                      "Peter NNP B-PER\n\nBonn NNP B-LOC\n")
    rows = read(path, "tagging")
    assert [(r["tokens"], r["_line"]) for r in rows] == [(["EU", "rejects"], 2), (["Peter"], 5), (["Bonn"], 7)]


def test_conll_wrong_column_count(tmp_path):
    path = write(tmp_path, "w.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                      "German JJ B-MISC\n")
    raises_at(path, 6, "3 columns", "expected 4", task_type="tagging")


def test_conll_column_index_out_of_range(tmp_path):
    path = write(tmp_path, "w.conll", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    raises_at(path, 1, "tag_column=7", task_type="tagging", tag_column=7)


def test_conll_file_of_words_only(tmp_path):
    # was: each word its own tag (token_column 0 and tag_column -1 read the one column)
    path = write(tmp_path, "words.conll", "EU\nrejects\nGerman\n\nPeter\nwalks\n")
    raises_at(path, 1, "1 column: a CoNLL line needs a word and a tag (token_column 0 and tag_column -1 are the "
                       "same column)", task_type="tagging")
    path = write(tmp_path, "two.conll", "EU B-ORG\n")
    raises_at(path, 1, "2 columns: a CoNLL line needs a word and a tag", task_type="tagging", tag_column=-2)


def test_conllu_line_with_nine_columns(tmp_path):
    good = "1\tHello\thello\tINTJ\tUH\t_\t0\troot\t0:root\t_\n"
    bad = "2\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t1:vocative\n"  # 9 columns (MISC missing)
    path = write(tmp_path, "n.conllu", "# sent_id = 1\n# text = Hello world\n" + good + bad)
    raises_at(path, 4, "9 tab-separated columns", "10", task_type="tagging")


def test_conll_file_for_classification_task():
    with pytest.raises(UserError, match="tagging data"):
        read(DATA / "ner_sample.conll", "classification")


def test_unknown_suffix(tmp_path):
    path = write(tmp_path, "data.xlsx", "text\tlabel\na\t1\n")
    raises_at(path, None, "unknown file format '.xlsx'", "data.format")
    assert [r["text"] for r in read(path, format="tsv")] == ["a"]  # data.format overrides the suffix


def test_missing_file(tmp_path):
    raises_at(tmp_path / "nope.tsv", None, "file not found")


def test_regression_label_not_a_number(tmp_path):
    path = write(tmp_path, "r.csv", "text,score\ngood,0.9\nbad,0.1\nmeh,high\n")
    raises_at(path, 4, "'high'", "not a number", task_type="regression", label_column="score")


def test_regression_label_not_finite(tmp_path):
    path = write(tmp_path, "r.csv", "text,score\ngood,0.9\nbad,nan\n")
    raises_at(path, 3, "finite", task_type="regression", label_column="score")


# ---------------------------------------------------------------- lines: line-aligned text and labels files


def read_lines_files(tmp_path, text, labels, task_type="classification", text_pair=None, **spec):
    files = {"text": write(tmp_path, "text.txt", text), "labels": write(tmp_path, "labels.txt", labels)}
    if text_pair is not None:
        files["text_pair"] = write(tmp_path, "pair.txt", text_pair)
    return list(read_lines(files, DataSpec(**spec), task_type)), files


def lines_error(tmp_path, text, labels, task_type="classification", text_pair=None, **spec) -> str:
    with pytest.raises(UserError) as info:
        read_lines_files(tmp_path, text, labels, task_type, text_pair, **spec)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_lines_classification(tmp_path):
    # CRLF labels, a text file without a final newline: line i of one is line i of the other
    rows, files = read_lines_files(tmp_path, "a fine film\n  bad acting \nit's \"ok\", I guess\tmaybe",
                                   "pos\r\nneg\r\nneutral\r\n")
    assert rows == [{"text": "a fine film", "label": "pos", "_line": 1},
                    {"text": "bad acting", "label": "neg", "_line": 2},
                    {"text": "it's \"ok\", I guess\tmaybe", "label": "neutral", "_line": 3}]


def test_lines_blank_lines_at_the_end_are_not_examples(tmp_path):
    rows, _ = read_lines_files(tmp_path, "x\ny\n", "0\n1\n")
    assert [(r["text"], r["label"]) for r in rows] == [("x", "0"), ("y", "1")]
    # blank lines at the end of one file or both, as every other format allows
    for text, labels in [("x\ny\n\n", "0\n1\n"), ("x\ny\n", "0\n1\n \n\n"), ("x\ny\n\n", "0\n1\n\n")]:
        rows, _ = read_lines_files(tmp_path, text, labels)
        assert [(r["text"], r["label"], r["_line"]) for r in rows] == [("x", "0", 1), ("y", "1", 2)]
    # a blank last label where the text file goes on is a missing label, not an end
    message = lines_error(tmp_path, "a\nb\nc\n", "0\n1\n\n")
    assert message.startswith(f"{tmp_path / 'text.txt'}:3: no matching line in {tmp_path / 'labels.txt'}")


def test_lines_regression_with_pairs(tmp_path):
    rows, _ = read_lines_files(tmp_path, "A plane takes off.\nA man plays a flute.\n", "5.000\n3.8\n", "regression",
                               text_pair="An air plane is taking off.\nA man is playing a large flute.\n")
    assert rows == [{"text": "A plane takes off.", "text_pair": "An air plane is taking off.", "label": 5.0,
                     "_line": 1},
                    {"text": "A man plays a flute.", "text_pair": "A man is playing a large flute.", "label": 3.8,
                     "_line": 2}]
    assert all(type(r["label"]) is float for r in rows)


def test_lines_label_sep_and_label_names(tmp_path):
    rows, _ = read_lines_files(tmp_path, "How ?\nWho ?\n", "DESC:manner\nHUM:ind\n", label_sep=":")
    assert [r["label"] for r in rows] == ["DESC", "HUM"]
    rows, _ = read_lines_files(tmp_path, "sad\nhappy\nsad again\n", "0\n1\n0\n", label_names={"0": "neg", "1": "pos"})
    assert [r["label"] for r in rows] == ["neg", "pos", "neg"]
    message = lines_error(tmp_path, "sad\nhappy\nwhat\n", "0\n1\n2\n", label_names={"0": "neg", "1": "pos"})
    assert message.startswith(f"{tmp_path / 'labels.txt'}:3:") and "'2' is not in data.label_names" in message


@pytest.mark.parametrize("text_lines,label_lines", [(3, 2), (2, 3)])
def test_lines_count_mismatch_names_both_files_and_counts(tmp_path, text_lines, label_lines):
    text = "".join(f"text {i}\n" for i in range(text_lines))
    labels = "".join(f"{i % 2}\n" for i in range(label_lines))
    message = lines_error(tmp_path, text, labels)
    text_path, labels_path = tmp_path / "text.txt", tmp_path / "labels.txt"
    longer = text_path if text_lines > label_lines else labels_path
    assert message.startswith(f"{longer}:3:"), message  # the first line without a partner
    assert f"{text_path} has {text_lines}" in message and f"{labels_path} has {label_lines}" in message


def test_lines_text_pair_count_mismatch(tmp_path):
    message = lines_error(tmp_path, "a\nb\n", "0\n1\n", text_pair="only one\n")
    assert message.startswith(f"{tmp_path / 'labels.txt'}:2:")
    assert f"{tmp_path / 'pair.txt'} has 1" in message and f"{tmp_path / 'labels.txt'} has 2" in message


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_lines_empty_text_line(tmp_path, blank):
    message = lines_error(tmp_path, f"first\n{blank}\nthird\n", "0\n1\n0\n")
    assert message.startswith(f"{tmp_path / 'text.txt'}:2:") and "empty line" in message


def test_lines_empty_text_pair_line(tmp_path):
    message = lines_error(tmp_path, "a\nb\nc\n", "0\n1\n0\n", text_pair="x\n \nz\n")
    assert message.startswith(f"{tmp_path / 'pair.txt'}:2:") and "empty line" in message


def test_lines_empty_label_line(tmp_path):
    message = lines_error(tmp_path, "a\nb\nc\n", "0\n\n1\n")
    assert message.startswith(f"{tmp_path / 'labels.txt'}:2: empty line, expected the label of example 2")


@pytest.mark.parametrize("labels,second,third", [("a,b\n\nb\n", [], ["b"]), ("a,b\nb\n\n", ["b"], []),
                                                 ("a,b\nb\n\n\n\n", ["b"], []), ("a,b\n[]\nb", [], ["b"])])
def test_a_blank_labels_line_of_a_multilabel_task_is_an_example_without_a_label(tmp_path, labels, second, third):
    """As an empty cell of a csv file: it was refused, and at the file's end read as a missing line."""
    files = {"text": write(tmp_path, "text.txt", "one\ntwo\nthree\n"), "labels": write(tmp_path, "labels.txt", labels)}
    rows = list(read_lines(files, DataSpec(), "multilabel"))
    assert [(r["text"], r["label"]) for r in rows] == [("one", ["a", "b"]), ("two", second), ("three", third)]
    files["labels"] = write(tmp_path, "labels.txt", "a\n\n\nb\n")  # a label for a fourth text: the counts differ
    with pytest.raises(UserError, match=r"labels.txt:4: no matching line in .*labels.txt has 4 lines, .*text.txt has 3 "):
        list(read_lines(files, DataSpec(), "multilabel"))


def test_lines_regression_label_errors_name_the_labels_file(tmp_path):
    message = lines_error(tmp_path, "a\nb\n", "0.5\nhigh\n", "regression")
    assert message.startswith(f"{tmp_path / 'labels.txt'}:2:") and "'high'" in message and "not a number" in message


def test_lines_encoding_error_names_file_and_line(tmp_path):
    files = {"text": write(tmp_path, "text.txt", b"plain\ncaf\xe9 au lait\n"),
             "labels": write(tmp_path, "labels.txt", "0\n1\n")}
    with pytest.raises(UserError) as info:
        list(read_lines(files, DataSpec(), "classification"))
    assert str(info.value).startswith(f"{files['text']}:2:") and "0xe9" in str(info.value)
    assert "data.encoding" in str(info.value)
    rows = list(read_lines(files, DataSpec(encoding="latin-1"), "classification"))
    assert [r["text"] for r in rows] == ["plain", "caf\u00e9 au lait"]


def test_lines_missing_labels_file(tmp_path):
    files = {"text": write(tmp_path, "text.txt", "a\n"), "labels": tmp_path / "nope.txt"}
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'nope.txt'}: file not found")):
        list(read_lines(files, DataSpec(), "classification"))


def test_lines_empty_files(tmp_path):
    message = lines_error(tmp_path, "", "")
    assert message.startswith(str(tmp_path / "text.txt")) and "no examples" in message


def test_lines_is_not_for_tagging_nor_a_single_path(tmp_path):
    assert "text data" in lines_error(tmp_path, "a\n", "O\n", "tagging")
    assert "data.format is csv" in lines_error(tmp_path, "a\n", "0\n", format="csv")
    path = write(tmp_path, "train_text.txt", "a\nb\n")
    raises_at(path, None, "{text: FILE, labels: FILE}", format="lines")
    # a .txt path alone reads as CoNLL: for a text task the error points to the lines format
    raises_at(path, None, "tagging data", "{text: FILE, labels: FILE}")


def test_lines_through_a_recipe(tmp_path):
    """Relative paths resolve against the recipe's folder; validation labels unseen in train name the labels file."""
    folder = tmp_path / "emotion"
    folder.mkdir()
    write(folder, "train_text.txt", "I am so happy\nThis is awful\nyay\n")
    write(folder, "train_labels.txt", "joy\nanger\njoy\n")
    write(folder, "val_text.txt", "great\nscary\n")
    write(folder, "val_labels.txt", "joy\nfear\n")
    recipe_path = write(tmp_path, "r.yaml", textwrap.dedent("""\
        tasks:
          emotion:
            type: classification
            data:
              train: {text: emotion/train_text.txt, labels: emotion/train_labels.txt}
              validation: {text: emotion/val_text.txt, labels: emotion/val_labels.txt}
        """))
    recipe = load_recipe(recipe_path)
    raw = read_task(recipe, "emotion", recipe.tasks["emotion"], splits=("train",))
    assert raw.labels == ["anger", "joy"]
    assert [(r["text"], r["label"], r["_line"]) for r in raw.examples["train"].to_pylist()] == [
        ("I am so happy", "joy", 1), ("This is awful", "anger", 2), ("yay", "joy", 3)]
    with pytest.raises(UserError) as info:
        read_task(recipe, "emotion", recipe.tasks["emotion"])
    assert str(info.value).startswith(f"{folder / 'val_labels.txt'}:2:") and "'fear'" in str(info.value)


# ---------------------------------------------------------------- headerless csv / tsv, columns by position


STS_LIKE = ("main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.\r\n"
            "main-news\tdeft-news\t2014\t0004\t0.500\tHe said \"no\".\tShe left.\tsource note\textra\r\n"
            "\r\n"
            "main-forums\tdeft-forum\t2014\t0009\t2.25\t'quoted' text\tOther text\r\n")


def test_headerless_tsv_positions_and_extra_trailing_columns(tmp_path):
    path = write(tmp_path, "sts.csv", STS_LIKE)
    rows = read(path, "regression", format="tsv", header=False, text_column=5, text_pair_column=6, label_column=4)
    assert rows == [
        {"text": "A plane is taking off.", "text_pair": "An air plane is taking off.", "label": 5.0, "_line": 1},
        {"text": 'He said "no".', "text_pair": "She left.", "label": 0.5, "_line": 2},
        {"text": "'quoted' text", "text_pair": "Other text", "label": 2.25, "_line": 4}]
    # with a header (the default) the first row is the header and the 9-field row is an error
    raises_at(path, 2, "9 fields", "header has 7", task_type="regression", format="tsv")


def test_headerless_csv_classification(tmp_path):
    path = write(tmp_path, "t.csv", 'DESC,"How, exactly, did it happen ?"\nHUM,Who wrote Hamlet ?\n')
    rows = read(path, header=False, text_column=1, label_column=0)
    assert rows == [{"text": "How, exactly, did it happen ?", "label": "DESC", "_line": 1},
                    {"text": "Who wrote Hamlet ?", "label": "HUM", "_line": 2}]


def test_headerless_row_with_too_few_fields(tmp_path):
    path = write(tmp_path, "short.tsv", "g\tf\t2012\t1\t5.0\tA plane.\tA jet.\ng\tf\t2012\t2\t3.0\tOnly one sentence\n")
    raises_at(path, 2, "6 fields", "data.text_pair_column", "position 6", task_type="regression", header=False,
              text_column=5, text_pair_column=6, label_column=4)


def test_headerless_errors_in_values_name_file_and_line(tmp_path):
    path = write(tmp_path, "e.tsv", "x\t0\n \t1\n")
    raises_at(path, 2, "empty text", header=False, text_column=0, label_column=1)
    path = write(tmp_path, "r.tsv", "x\t0.5\ny\tmany\n")
    raises_at(path, 2, "'many'", "not a number", task_type="regression", header=False, text_column=0, label_column=1)


def test_headerless_needs_positions_and_a_delimited_file(tmp_path):
    path = write(tmp_path, "p.tsv", "a\t1\n")
    raises_at(path, None, "data.text_column", "0-based column position", header=False, label_column=1)
    jsonl = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n')
    raises_at(jsonl, None, "header: false", "csv and tsv", header=False, text_column=0, label_column=1)


# ---------------------------------------------------------------- real full data (dev machines and CI)


@pytest.mark.slow
def test_real_conll2003_train_and_ud_ewt_dev():
    if not SHARED.is_dir():
        pytest.skip(f"real data sets not present ({SHARED} does not exist; only on dev machines and CI)")
    ner = read(SHARED / "conll2003" / "train.txt", "tagging")
    assert len(ner) == 14_041
    assert sum(len(r["tokens"]) for r in ner) == 203_621
    assert ner[0]["tokens"][:3] == ["EU", "rejects", "German"] and ner[0]["tags"][:3] == ["B-ORG", "O", "B-MISC"]
    assert {t for r in ner for t in r["tags"]} == {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
                                                    "B-MISC", "I-MISC"}
    ud = read(SHARED / "ud_english_ewt" / "en_ewt-ud-dev.conllu", "tagging")
    assert len(ud) == 2_001
    assert sum(len(r["tokens"]) for r in ud) == 25_147


@pytest.mark.slow
def test_real_stsb_headerless_by_position():
    if not SHARED.is_dir():
        pytest.skip(f"real data sets not present ({SHARED} does not exist; only on dev machines and CI)")
    path = SHARED / "stsb" / "sts-train.csv"
    rows = read(path, "regression", format="tsv", header=False, text_column=5, text_pair_column=6, label_column=4)
    assert len(rows) == 5_749
    raw = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    assert sum(len(fields) > 7 for fields in raw) > 0  # rows with extra trailing columns are read
    assert [(r["text"], r["text_pair"], r["label"]) for r in rows] == [
        (f[5].strip(), f[6].strip(), float(f[4])) for f in raw]
    assert all(0.0 <= r["label"] <= 5.0 for r in rows)


def test_a_column_named_twice_in_the_header_is_an_error(tmp_path):
    path = tmp_path / "dup.tsv"
    path.write_text("text\tlabel\ttext\nreal text\t1\tid1\n")
    with pytest.raises(UserError, match=r"dup.tsv:1: column 'text' appears twice in the header \(columns 1 and 3\)"):
        read_examples(path, DataSpec(), "classification")


def test_conllu_has_no_token_column(tmp_path):
    with pytest.raises(UserError, match="ud_sample.conllu: data.token_column does not apply to CoNLL-U"):
        read(DATA / "ud_sample.conllu", "tagging", token_column=2)


def test_label_names_and_label_sep_rename_tags(tmp_path):
    path = write(tmp_path, "t.conll", "Anna B-PER\nParis B-LOC\n\nBerlin B-LOC\n")
    renamed = read(path, "tagging", label_names={"B-PER": "B-PERSON", "B-LOC": "B-PLACE"})
    assert [r["tags"] for r in renamed] == [["B-PERSON", "B-PLACE"], ["B-PLACE"]]
    assert [r["tags"] for r in read(path, "tagging", label_sep="-")] == [["B", "B"], ["B"]]
    with pytest.raises(UserError, match=r"t.conll:1: tag 'B-LOC' is not in data.label_names"):
        read(path, "tagging", label_names={"B-PER": "B-PERSON"})
    jsonl = write(tmp_path, "t.jsonl", json.dumps({"tokens": ["Anna"], "tags": ["B-PER"]}) + "\n")
    assert read(jsonl, "tagging", label_names={"B-PER": "PER"})[0]["tags"] == ["PER"]


# ---------------------------------------------------------------- silent misreadings a readers walk found


def test_a_row_repeating_the_header_is_an_error_not_an_example(tmp_path):
    joined = write(tmp_path, "joined.tsv", "sentence\tlabel\nhello\t0\nsentence\tlabel\ngood\t1\n")  # cat a.tsv b.tsv
    raises_at(joined, 3, "repeats the header (line 1)", text_column="sentence")


def test_conllu_word_ids_that_restart_without_a_blank_line_are_an_error(tmp_path):
    word = "{}\t{}\t{}\tNOUN\tNN\t_\t0\troot\t_\t_\n"
    merged = write(tmp_path, "m.conllu", "# sent_id = 1\n" + word.format(1, "Hello", "hello") + word.format(2, ".", ".")
                   + "# sent_id = 2\n" + word.format(1, "Bye", "bye") + "\n")
    raises_at(merged, 5, "word ID 1, expected 3", "blank line missing", task_type="tagging")
    skipped = write(tmp_path, "s.conllu", word.format(1, "a", "a") + word.format(3, "b", "b") + "\n")
    raises_at(skipped, 2, "word ID 3, expected 2", task_type="tagging")
    ranges = write(tmp_path, "r.conllu", "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + word.format(1, "do", "do")
                   + word.format(2, "n't", "not") + "2.1\tx\tx\tX\tX\t_\t_\t_\t_\t_\n" + word.format(3, "go", "go"))
    assert read(ranges, "tagging")[0]["tokens"] == ["do", "n't", "go"]


def test_squad_question_without_answers_key_is_an_error_not_unanswerable(tmp_path):
    context = "The Colne flows through Colchester."
    article = {"paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Colchester", "answer_start": 24}]},
        {"id": "q2", "question": "Which river?", "answer": [{"text": "Colne", "answer_start": 4}]},
        {"id": "q3", "question": "Who?", "is_impossible": True}]}]}
    path = write(tmp_path, "qa.json", json.dumps({"data": [article]}))
    raises_at(path, None, "question 1: no 'answers'", "'answer'", task_type="extractive_qa")
    article["paragraphs"][0]["qas"].pop(1)  # an impossible question may leave out its empty list
    path.write_text(json.dumps({"data": [article]}))
    assert [ex["answers"] for ex in read(path, "extractive_qa")] == [["Colchester"], []]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_json_nan_and_infinity_are_not_json(tmp_path, fmt, constant):
    rows = ['{"text": "good", "label": "pos"}', '{"text": "bad", "label": "neg"}',
            '{"text": "unlabelled", "label": %s}' % constant]  # json.dumps writes a float NaN so
    text = "\n".join(rows) + "\n" if fmt == "jsonl" else "[\n" + ",\n".join(rows) + "\n]\n"
    path = write(tmp_path, f"x.{fmt}", text)
    raises_at(path, 3 if fmt == "jsonl" else 4, f"{constant.lstrip('-')} is not JSON")
    raises_at(path, 3 if fmt == "jsonl" else 4, "is not JSON", task_type="multilabel")


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_json_number_out_of_a_floats_range_is_refused_not_read_as_inf(tmp_path, fmt):
    """1e400 was read as inf: a label "inf", or a multiple-choice choice "inf"."""
    rows = ['{"text": "good", "label": 1}', '{"text": "bad", "label": -1e400}']
    text = "\n".join(rows) + "\n" if fmt == "jsonl" else "[\n" + ",\n".join(rows) + "\n]\n"
    path = write(tmp_path, f"x.{fmt}", text)
    message = raises_at(path, 2 if fmt == "jsonl" else 3, "-1e400 is out of a number's range")
    if fmt == "json":  # placed at the number, as a NaN is
        assert message.endswith(f"(column {rows[1].index('-1e400') + 1})"), message
    path.write_text(text.replace("-1e400", "-1e30"))
    assert [ex["label"] for ex in read(path, "regression")] == [1.0, -1e30]


@pytest.mark.parametrize("cell,said", [('["x", NaN]', "NaN is not JSON"), ('["x", 1e400]', "1e400 is out of a number's range")])
def test_a_multilabel_cells_json_list_is_read_as_strictly_as_a_json_file(tmp_path, cell, said):
    """A TSV cell's NaN or 1e400 became the label "nan" or "inf"."""
    path = write(tmp_path, "ml.tsv", f"text\tlabel\nfine\tx\nbad\t{cell}\n")
    raises_at(path, 3, f"look like a JSON list but do not parse: {said}", task_type="multilabel")


def test_a_raw_tab_inside_a_json_string_is_told_how_to_write_it(tmp_path):
    for fmt, line in (("jsonl", 1), ("json", 2)):
        row = '{"text": "a\tb", "label": "pos"}'
        path = write(tmp_path, f"tab.{fmt}", row + "\n" if fmt == "jsonl" else f"[\n{row}\n]\n")
        raises_at(path, line, r"a raw control character (a tab, a line break) inside a string: write it escaped "
                              r"(\t, \n, \u0000) (column 12)")


@pytest.mark.parametrize("value", ["1_000", "true"])
def test_regression_scores_that_float_would_take(tmp_path, value):
    path = write(tmp_path, "r.jsonl", '{"text": "a", "label": 1.5}\n{"text": "b", "label": %s}\n'
                 % (json.dumps(value) if "_" in value else value))
    raises_at(path, 2, "is not a number", task_type="regression")


@pytest.mark.parametrize("value,said", [("1e39", "label 1e+39 is beyond the float32 range the model trains in"),
                                        ("-3.5e38", "label -3.5e+38 is beyond the float32 range"),
                                        ('" 3,5"', "label ' 3,5' is not a number (regression task); a decimal comma? "
                                                   "write 3.5")])
def test_a_regression_score_the_float32_targets_cannot_hold_or_written_with_a_decimal_comma(tmp_path, value, said):
    """1e39 became inf in the float32 targets (NaN losses blamed on divergence); 1e308 trained, then the mse
    baseline's square overflowed into a traceback."""
    path = write(tmp_path, "r.jsonl", '{"text": "a", "label": 3.4e38}\n{"text": "b", "label": %s}\n' % value)
    raises_at(path, 2, said, task_type="regression")


def test_a_text_longer_than_the_csv_modules_default_limit_is_read(tmp_path):
    long = "word " * 40_000  # 200,000 characters; csv's default field limit is 131,072
    for name, sep in (("l.tsv", "\t"), ("l.csv", ",")):
        path = write(tmp_path, name, f"text{sep}label\n{long}{sep}pos\nshort{sep}neg\n")
        assert [len(ex["text"]) for ex in read(path)] == [len(long.strip()), 5]


def test_a_named_pipe_as_a_data_file_is_refused_not_waited_on(tmp_path):
    import os

    from mtnlp.cache import file_hash

    pipe = tmp_path / "train.tsv"
    os.mkfifo(pipe)  # read once to hash it, a pipe would then be empty (or block) when read for its rows
    with pytest.raises(UserError, match=re.escape(f"{pipe}: not a regular file (a pipe or a device)")):
        file_hash(pipe)
    # predict --input reads a pipe once: a bad byte in it is named without reading it again (which would block)
    import threading

    from mtnlp.readers import file_lines

    writer = threading.Thread(target=lambda: pipe.write_bytes(b'"ok"\n"caf\xe9"\n'), daemon=True)
    writer.start()
    with pytest.raises(UserError, match=re.escape(f"{pipe}: not valid utf-8; ")):
        list(file_lines(pipe, "utf-8"))
    writer.join(timeout=10)


def test_utf16_without_bom_is_named(tmp_path):
    utf16 = write(tmp_path, "u.tsv", "text\tlabel\nhi\tpos\n".encode("utf-16-le"))
    raises_at(utf16, 1, "UTF-16 file? set data.encoding: utf-16")


def test_an_empty_json_file_says_so(tmp_path):
    raises_at(write(tmp_path, "e.json", "\n"), None, "empty file, expected a JSON array")


def test_the_readers_review_cases(tmp_path):
    """A NaN deep in a multi-line JSON item is named at its own line; a header joined with its BOM is still a
    repeated header; a non-ASCII digit as a CoNLL-U word ID is an error, not a crash."""
    item = '  {"text": "b",\n\n\n   "label": NaN}'
    path = write(tmp_path, "a.json", '[\n  {"text": "a", "label": "x"},\n' + item + "\n]\n")
    raises_at(path, 6, "NaN is not JSON", "(column 13)")
    joined = write(tmp_path, "j.csv", "\ufefftext,label\nhi,pos\n\ufefftext,label\nho,neg\n")
    raises_at(joined, 3, "repeats the header")
    odd = write(tmp_path, "o.conllu", "\u00b2\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n")
    raises_at(odd, 1, "word ID '\u00b2' is not a number", task_type="tagging")


def test_a_long_json_item_is_read_in_linear_time_and_a_longer_one_named_for_what_it_is(tmp_path, monkeypatch):
    """An item was parsed again from its start after each 64K chunk read (quadratic in its size), and one of
    over 16M characters was called invalid JSON ("Unterminated string")."""
    from conftest import cost_ratio

    from mtnlp.readers import JsonArray

    def item_file(chars: int) -> Path:  # 8M characters in items of `chars`
        return write(tmp_path, f"big{chars}.json",
                     json.dumps([{"text": "word " * (chars // 5), "label": "a"}] * ((8 << 20) // chars)))

    small, large = item_file(512 << 10), item_file(8 << 20)
    assert cost_ratio(lambda path: read(path), small, large) < 4  # linear: about 1; quadratic in an item: about 16
    assert read(large)[0]["text"] == ("word " * ((8 << 20) // 5)).strip()
    monkeypatch.setattr(JsonArray, "LOOKAHEAD", 1 << 18)  # 256K: the large item is more than the reader takes
    raises_at(large, 1, "the item that starts here does not end within 262,144 characters; if it is valid JSON",
              "(column 2)")
    # a syntax error is said where it is at once, not taken for an item that goes on past the look-ahead
    items = [json.dumps({"text": f"t{i}", "label": "a"}) for i in range(30_000)]
    items[1] = items[1].replace(', "label"', ' "label"')
    broken = write(tmp_path, "broken.json", "[\n" + ",\n".join(items) + "\n]\n")
    raises_at(broken, 3, "invalid JSON: Expecting ',' delimiter (column 15)")  # as json.loads says


def test_a_utf16_file_with_its_byte_order_mark_is_named_as_one(tmp_path):
    """What Windows writes as "Unicode" (Notepad, Excel's "Unicode Text", PowerShell 5's `>`) starts with a byte
    order mark. The hint was "byte 0xff is not valid utf-8; set data.encoding (e.g. latin-1)", which led to a
    NUL-header error (CSV) or to "invalid JSON" (JSONL)."""
    import codecs
    import os
    import threading

    from mtnlp.readers import bad_byte, file_lines

    rows = "sentence\tlabel\r\nna\u00efve \u20ac\tpos\r\n"
    excel = write(tmp_path, "excel.txt", rows.encode("utf-16"))  # BOM + little-endian, as Windows writes it
    fix = "starts with the bytes 0xff 0xfe, a UTF-16 byte order mark: the file is UTF-16, not utf-8; " \
          "set data.encoding: utf-16"
    assert raises_at(excel, 1, format="tsv", text_column="sentence") == f"{excel}:1: {fix}"
    assert read(excel, format="tsv", encoding="utf-16", text_column="sentence")[0]["text"] == "na\u00efve \u20ac"
    jsonl = write(tmp_path, "ps.jsonl", '{"text": "hi", "label": "a"}\r\n'.encode("utf-16"))
    raises_at(jsonl, 1, "UTF-16, not latin-1; set data.encoding: utf-16", encoding="latin-1")  # not "invalid JSON"
    big_endian = write(tmp_path, "be.csv", codecs.BOM_UTF16_BE + "text,label\nhi,a\n".encode("utf-16-be"))
    raises_at(big_endian, 1, "0xfe 0xff, a UTF-16 byte order mark", encoding="cp1252")
    utf32 = write(tmp_path, "u32.csv", "text,label\nhi,a\n".encode("utf-32"))
    raises_at(utf32, 1, "0xff 0xfe 0x00 0x00, a UTF-32 byte order mark", "set data.encoding: utf-32")
    assert read(utf32, encoding="utf-32") == [{"text": "hi", "label": "a", "_line": 2}]
    # a pipe (read once) is named too, and other callers' fixes are kept (predict --input, a recipe)
    pipe = tmp_path / "in.jsonl"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes('"hi"\n'.encode("utf-16")), daemon=True)
    writer.start()
    with pytest.raises(UserError, match=re.escape(f"{pipe}:1: starts with the bytes 0xff 0xfe") + ".*; convert it$"):
        list(file_lines(pipe, "utf-8", fix="convert it"))
    writer.join(timeout=10)
    with pytest.raises(UserError, match=re.escape("not utf-8; iconv -f utf-16")):
        list(file_lines(jsonl, "utf-8", fix="iconv -f cp1252", bom_fix="iconv -f utf-16"))
    data = '"hi"\n'.encode("utf-16")
    assert bad_byte("standard input", "utf-8", "convert it", data).endswith("not utf-8; convert it")
    assert bad_byte("standard input", "utf-8", "x", data, bom_fix="iconv -f utf-16").endswith("; iconv -f utf-16")
    assert bad_byte(excel, "utf-8") == f"{excel}:1: {fix}"


def test_the_encoding_hint_names_cp1252_for_files_from_windows(tmp_path):
    """A spreadsheet saved as "CSV (Windows)" is cp1252: read as latin-1 (the one encoding the hint named), it
    loads without an error but € — ’ “ ” become C1 control characters."""
    text = "\u20ac5 \u2014 \u201cit\u2019s\u201d caf\u00e9"
    path = write(tmp_path, "win.csv", f"text,label\r\n{text},pos\r\n".encode("cp1252"))
    message = raises_at(path, 2, "byte 0x80 is not valid utf-8; set data.encoding to the file's encoding (e.g. "
                                 "cp1252 for a file from Windows, latin-1 for ISO-8859-1)")
    assert "\n" not in message
    quoted = write(tmp_path, "lo.csv", '"text";"label"\n"good film";"1"\n')  # LibreOffice quotes every field
    raises_at(quoted, 1, "malformed CSV", "fields separated by semicolons", 'Save it as "CSV UTF-8 (comma delimited)"')
    assert read(path, encoding="cp1252")[0]["text"] == text
    assert read(path, encoding="latin-1")[0]["text"] != text  # why latin-1 is not the first suggestion


def test_a_ctrl_z_ending_the_file_is_named(tmp_path):
    """Old DOS programs and Excel exports end a file with Ctrl-Z (0x1a). Read, it was a record of one field
    ("FILE:3: 1 fields, but the header has 2"), a line of one column, invalid JSON, or, glued to the last
    line, part of the last label ("pos\\x1a", a class of its own): now one error that says what it is."""
    fix = "a Ctrl-Z (\\x1a, an old DOS end-of-file mark) ends the file: remove it"
    raises_at(write(tmp_path, "a.csv", b"text,label\r\nhi,pos\r\nho,neg\r\n\x1a"), 4, fix)
    raises_at(write(tmp_path, "b.csv", b"text,label\r\nhi,pos\r\nho,neg\x1a"), 3, fix)  # no line end before it
    raises_at(write(tmp_path, "c.tsv", b"text\tlabel\nhi\tpos\n\x1a\x1a\r\n"), 3, fix)
    raises_at(write(tmp_path, "d.tsv", b"1\thi\n2\tho\n\x1a"), 3, fix, header=False, label_column=0,
              text_column=1)
    conllu = b"1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n\n1\tHo\tho\tINTJ\tUH\t_\t0\troot\t_\t_\n\n\x1a"
    raises_at(write(tmp_path, "e.conllu", conllu), 5, fix, task_type="tagging")
    raises_at(write(tmp_path, "f.conll", b"Hi UH O\n\nHo UH O\n\x1a"), 4, fix, task_type="tagging")
    raises_at(write(tmp_path, "g.jsonl", b'{"text": "hi", "label": "a"}\r\n\x1a'), 2, fix)
    raises_at(write(tmp_path, "h.json", b'[\n{"text": "hi", "label": "a"}\n]\n\x1a'), 4, fix)
    raises_at(write(tmp_path, "i.label", b"pos hi\r\nneg ho\r\n\x1a"), 3, fix, encoding="latin-1")
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 't.txt'}:2: {fix}")):
        files = {"text": write(tmp_path, "t.txt", b"hi\nho\x1a"), "labels": write(tmp_path, "l.txt", b"a\nb\n")}
        list(read_lines(files, DataSpec(), "classification"))
    # elsewhere a Ctrl-Z is a character of the text, as any other
    rows = read(write(tmp_path, "k.csv", b"text,label\nhi\x1a there,pos\n"))
    assert rows == [{"text": "hi\x1a there", "label": "pos", "_line": 2}]


def test_conllu_comment_lines_without_a_space_after_the_hash_are_comments(tmp_path):
    """CoNLL-U makes every line starting with # a comment: '#sent_id=1' was read as a word line of 1 column and a
    valid file was refused."""
    word = "{}\t{}\t{}\tINTJ\tUH\t_\t0\troot\t_\t_\n"
    path = write(tmp_path, "c.conllu", "#sent_id=1\n#text=Hello world\n" + word.format(1, "Hello", "hello")
                 + word.format(2, "world", "world") + "\n#\n" + word.format(1, "Hi", "hi") + "\n")
    assert [(r["tokens"], r["_line"]) for r in read(path, "tagging")] == [(["Hello", "world"], 3), (["Hi"], 7)]


def test_a_conll_token_of_a_no_break_space_alone_is_said_to_be_whitespace(tmp_path):
    """Stripped of every whitespace, the line lost its word: the error said '2 columns, expected 3', not what is
    wrong with the line."""
    path = write(tmp_path, "w.conll", "EU NNP B-ORG\n\xa0 NNP O\n")
    raises_at(path, 2, "token", "is only whitespace", task_type="tagging")


def test_a_table_saved_as_txt_for_a_text_task_is_told_it_is_read_as_conll(tmp_path):
    path = write(tmp_path, "c.txt", "text,label\nfine film,pos\n")
    raises_at(path, None, "conll files hold tagging data, but the task type is classification (a .txt file is read as "
                          "CoNLL: for 'LABEL text' lines, set data.format: label_text; for a table, data.format: csv, "
                          "tsv or jsonl")
