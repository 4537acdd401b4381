"""File readers: csv, tsv, json, jsonl, CoNLL columns and CoNLL-U into plain examples.

A text example is {"text", "text_pair"?, "label", "_line"}; a tagging example is
{"tokens", "tags", "_line"}. "_line" is where the example starts, for error messages.
Any problem with the input raises UserError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from .errors import UserError
from .recipe import DataSpec

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".conll": "conll",
                  ".conllu": "conllu", ".txt": "conll", ".iob": "conll", ".bio": "conll",
                  ".label": "label_text"}
CONLLU_TAGS = {"upos": 3, "xpos": 4}


def file_format(path: Path, spec: DataSpec) -> str:
    if spec.format:
        return spec.format
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unknown file format '{path.suffix}'; set data.format to one of: "
                        "csv, tsv, json, jsonl, conll, conllu, label_text")
    return fmt


def read_text(path: Path, encoding: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a data file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise UserError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        byte = f"byte 0x{raw[e.start]:02x}" if e.start < len(raw) else "the end of the file"
        raise UserError(f"{path}:{line}: {byte} is not valid {encoding}; "
                        "set data.encoding (e.g. latin-1) to the file's encoding") from None
    return text.removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    """Split on line ends only (str.splitlines also splits on U+2028, U+0085, form feed, ...)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_examples(path: Path, spec: DataSpec, task_type: str) -> list[dict]:
    fmt = file_format(path, spec)
    text = read_text(path, spec.encoding)
    if fmt in ("conll", "conllu"):
        if task_type != "tagging":
            raise UserError(f"{path}: {fmt} files hold tagging data, but the task type is {task_type}")
        rows = read_conll(path, text, spec) if fmt == "conll" else read_conllu(path, text, spec)
    elif fmt in ("csv", "tsv"):
        rows = read_delimited(path, text, "\t" if fmt == "tsv" else ",")
    elif fmt == "label_text":
        rows = read_label_text(path, text, spec)
    else:
        rows = read_json(path, text, lines=fmt == "jsonl")
    if fmt not in ("conll", "conllu"):
        rows = [to_example(path, row, line, spec, task_type) for row, line in rows]
    if not rows:
        raise UserError(f"{path}: no examples found")
    return rows


def read_delimited(path: Path, text: str, delimiter: str):
    # TSV files like SST-2 contain bare quote characters: read them literally.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty file, expected a header row")
        if not any(name.strip() for name in header):
            raise UserError(f"{path}:1: empty header row, expected the column names")
        rows = []
        for values in reader:
            line = reader.line_num
            if not values or values == [""]:
                continue
            if len(values) != len(header):
                raise UserError(f"{path}:{line}: {len(values)} fields, but the header has {len(header)}")
            rows.append((dict(zip(header, values)), line))
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from None
    if not rows:
        columns = ", ".join(map(_printable, header))
        columns = columns if len(columns) <= 80 else columns[:77] + "..."
        raise UserError(f"{path}:1: only a header row ({columns}), no examples")
    return rows


def read_label_text(path: Path, text: str, spec: DataSpec):
    """Lines of "LABEL text" (the label is the first field, up to the first space or tab)."""
    rows = []
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        label, *rest = re.split(r"[ \t]+", line.strip(), maxsplit=1)
        rows.append(({spec.label_column: label, spec.text_column: rest[0] if rest else ""}, number))
    return rows


def read_json(path: Path, text: str, lines: bool):
    if lines:
        rows = []
        for number, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            try:
                rows.append((json.loads(line), number))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{number}: invalid JSON: {e.msg} (column {e.colno})") from None
            except (ValueError, RecursionError) as e:  # a number of > 4300 digits, nesting too deep
                raise UserError(f"{path}:{number}: invalid JSON: {_json_problem(e)}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}: invalid JSON: {_json_problem(e)}") from None
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of objects (or use format jsonl)")
        rows = [(item, f"item {i}") for i, item in enumerate(data)]
    for row, line in rows:
        if not isinstance(row, dict):
            raise UserError(f"{_at(path, line)}: expected a JSON object, got {type(row).__name__}")
    return rows


def _json_problem(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "arrays or objects nested too deeply"
    return str(error).split(";")[0]


def _at(path, line) -> str:
    return f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}"


def _show(value, limit: int = 60) -> str:
    """A value for an error message: repr (one line, lone surrogates escaped), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(name) -> str:
    """A column name for an error message: non-printable characters (line breaks, ...) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))


def _valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")  # JSON escapes like \ud800 give lone surrogates: no tokenizer takes those
    except UnicodeEncodeError:
        return False
    return True


def _name(path, line, what: str, value) -> str:
    """A label, tag or token as text: a string or a number, not empty, valid Unicode."""
    if isinstance(value, (dict, list)) or value is None:
        raise UserError(f"{_at(path, line)}: {what} must be a string or a number, got {_show(value)}")
    text = str(value).strip()
    if not text:
        raise UserError(f"{_at(path, line)}: empty {what} ({_show(value)})")
    if not _valid_unicode(text):
        raise UserError(f"{_at(path, line)}: {what} {_show(text)} holds a lone surrogate (an invalid \\u escape)")
    return text


def to_example(path: Path, row: dict, line, spec: DataSpec, task_type: str) -> dict:
    def column(name):
        if name not in row:
            found = ", ".join(_printable(k) for k in row)
            raise UserError(f"{_at(path, line)}: missing column '{_printable(name)}' (found: {found})")
        return row[name]

    if task_type == "tagging":
        tokens, tags = column(spec.token_column or "tokens"), column(spec.tag_column or "tags")
        if not (isinstance(tokens, list) and isinstance(tags, list)):
            raise UserError(f"{_at(path, line)}: tagging needs lists of tokens and tags (json/jsonl)")
        if len(tokens) != len(tags):
            raise UserError(f"{_at(path, line)}: {len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            raise UserError(f"{_at(path, line)}: empty token list")
        return {"tokens": [_name(path, line, "token", t) for t in tokens],
                "tags": [_name(path, line, "tag", t) for t in tags], "_line": line}
    example = {"text": _text(path, line, spec.text_column, column(spec.text_column)), "_line": line}
    if spec.text_pair_column:
        example["text_pair"] = _text(path, line, spec.text_pair_column, column(spec.text_pair_column))
    label = column(spec.label_column)
    if label is None or (isinstance(label, str) and not label.strip()):
        raise UserError(f"{_at(path, line)}: empty label in column '{_printable(spec.label_column)}'")
    if task_type == "regression":
        try:
            example["label"] = float(label)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond the float range
            if isinstance(label, int):
                raise UserError(f"{_at(path, line)}: label {_show(label)} is not a finite number") from None
            raise UserError(f"{_at(path, line)}: label {_show(label)} is not a number (regression task)") from None
        if not math.isfinite(example["label"]):
            raise UserError(f"{_at(path, line)}: label {_show(label)} is not a finite number")
    else:
        value = _name(path, line, "label", label)
        if spec.label_sep:
            value = value.split(spec.label_sep)[0].strip()
            if not value:
                raise UserError(f"{_at(path, line)}: label {_show(str(label).strip())} is empty before "
                                f"data.label_sep {spec.label_sep!r}")
        if spec.label_names:
            if value not in spec.label_names:
                raise UserError(f"{_at(path, line)}: label {_show(value)} is not in data.label_names "
                                f"({', '.join(spec.label_names)})")
            value = spec.label_names[value].strip()
            if not value:
                raise UserError(f"{_at(path, line)}: data.label_names maps label {_show(label)} to an empty name")
        example["label"] = value
    return example


def _text(path, line, name, value) -> str:
    if not isinstance(value, str):
        raise UserError(f"{_at(path, line)}: column '{_printable(name)}' must be text, got {_show(value)}")
    if not value.strip():
        raise UserError(f"{_at(path, line)}: empty text in column '{_printable(name)}'")
    if not _valid_unicode(value):
        raise UserError(f"{_at(path, line)}: text in column '{_printable(name)}' holds a lone surrogate "
                        "(an invalid \\u escape)")
    return value.strip()


def _sentences(text: str):
    """Yield (first line number, [(line number, line), ...]) per blank-line separated block.

    A line of whitespace only (also form feed, U+2028, no-break space, ...) counts as blank."""
    block, start = [], None
    for number, line in enumerate(split_lines(text), 1):
        if line.strip():
            if not block:
                start = number
            block.append((number, line))
        elif block:
            yield start, block
            block = []
    if block:  # files may end without a final blank line
        yield start, block


def read_conll(path: Path, text: str, spec: DataSpec) -> list[dict]:
    token_col = 0 if spec.token_column is None else spec.token_column
    tag_col = -1 if spec.tag_column is None else spec.tag_column
    if not isinstance(token_col, int) or not isinstance(tag_col, int):
        raise UserError(f"{path}: data.token_column and data.tag_column must be column numbers for CoNLL files")
    examples, width = [], None
    for start, block in _sentences(text):
        tokens, tags = [], []
        for number, line in block:
            fields = re.split(r"[ \t]+", line.strip(" \t"))  # not str.split(): tokens may hold a no-break space
            if fields[0] == "-DOCSTART-":
                continue
            if width is None:
                width = len(fields)
                if not (-width <= token_col < width and -width <= tag_col < width):
                    raise UserError(f"{path}:{number}: {width} columns, but token_column={token_col} "
                                    f"and tag_column={tag_col}")
            if len(fields) != width:
                raise UserError(f"{path}:{number}: {len(fields)} columns, expected {width} like the lines before")
            for what, value in (("token", fields[token_col]), ("tag", fields[tag_col])):
                if not value.strip():  # e.g. a lone no-break space: the tokenizer would drop the word
                    raise UserError(f"{path}:{number}: {what} {_show(value)} is only whitespace")
            tokens.append(fields[token_col])
            tags.append(fields[tag_col])
        if tokens:
            examples.append({"tokens": tokens, "tags": tags, "_line": start})
    return examples


def read_conllu(path: Path, text: str, spec: DataSpec) -> list[dict]:
    tag_name = spec.tag_column or "upos"
    if tag_name not in CONLLU_TAGS:
        raise UserError(f"{path}: data.tag_column for CoNLL-U must be 'upos' or 'xpos', got {tag_name!r}")
    tag_index = CONLLU_TAGS[tag_name]
    examples = []
    for start, block in _sentences(text):
        tokens, tags = [], []
        for number, line in block:
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise UserError(f"{path}:{number}: {len(fields)} tab-separated columns, CoNLL-U needs 10")
            word_id = fields[0]
            if "-" in word_id or "." in word_id:  # multiword token range / empty node
                continue
            if not word_id.isdigit():
                raise UserError(f"{path}:{number}: word ID {word_id!r} is not a number")
            if not fields[1].strip() or fields[tag_index].strip() in ("", "_"):
                raise UserError(f"{path}:{number}: missing form or {tag_name.upper()} tag")
            tokens.append(fields[1])
            tags.append(fields[tag_index])
        if tokens:
            examples.append({"tokens": tokens, "tags": tags, "_line": start})
    return examples


def read_hub_split(spec: DataSpec, split: str, task_type: str) -> list[dict]:
    """A split of a hub dataset (needs a network the first time; cached by datasets after)."""
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hub, spec.config, split=split)
    except Exception as e:  # datasets raises many types for "not reachable / not found"
        raise UserError(f"data.hub: cannot load '{spec.hub}' split '{split}': {str(e).splitlines()[0]}") from None
    name = f"{spec.hub}[{split}]"
    rows = []
    names = _class_names(dataset.features, spec.tag_column or "tags" if task_type == "tagging" else spec.label_column)
    for i, row in enumerate(dataset):
        if names and task_type == "classification" and isinstance(row.get(spec.label_column), int):
            if row[spec.label_column] < 0:
                raise UserError(f"{name}: row {i}: no label ({row[spec.label_column]}); unlabelled splits cannot be used")
            row = dict(row, **{spec.label_column: names[row[spec.label_column]]})
        if names and task_type == "tagging":
            key = spec.tag_column or "tags"
            row = dict(row, **{key: [names[t] for t in row.get(key) or []]})
        rows.append(to_example(Path(name), row, f"row {i}", spec, task_type))
    if not rows:
        raise UserError(f"{name}: no examples found")
    return rows


def _class_names(features, column) -> list[str] | None:
    """Label names of a ClassLabel column (or a sequence of ClassLabel, for tags), else None."""
    import datasets

    feature = features.get(column)
    if isinstance(feature, (datasets.Sequence, datasets.List)):
        feature = feature.feature
    elif isinstance(feature, list) and feature:
        feature = feature[0]
    return feature.names if isinstance(feature, datasets.ClassLabel) else None
