"""File readers: csv, tsv, json, jsonl, CoNLL columns, CoNLL-U and line-aligned files into plain examples.

A text example is {"text", "text_pair"?, "label", "_line"}; a tagging example is
{"tokens", "tags", "_line"}. "_line" is where the example starts, for error messages.
Any problem with the input raises UserError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from .errors import UserError
from .spec import LINES_FILES, DataSpec
from .tasks import TASK_TYPES

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
                        "csv, tsv, json, jsonl, conll, conllu, label_text, "
                        "or lines (the split as {text: FILE, labels: FILE})")
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
    examples = list(iter_examples(path, spec, task_type))
    if not examples:
        raise UserError(f"{path}: no examples found")
    return examples


def iter_examples(path: Path, spec: DataSpec, task_type: str):
    """A file's examples one at a time (CSV, TSV, JSONL, label_text: row by row; CoNLL and JSON arrays
    are parsed whole first). Errors name the file and line."""
    fmt = file_format(path, spec)
    if fmt == "lines":
        raise UserError(f"{path}: format lines reads a text file and a labels file: give the split as "
                        "{text: FILE, labels: FILE}")
    if not spec.header and fmt not in ("csv", "tsv"):
        raise UserError(f"{path}: data.header: false applies to csv and tsv files, not {fmt}")
    text = read_text(path, spec.encoding)
    if fmt in ("conll", "conllu"):
        if not TASK_TYPES[task_type].token_level:
            hint = ""
            if path.suffix.lower() == ".txt" and not spec.format:
                hint = " (for a text file with a labels file line by line, give the split as {text: FILE, labels: FILE})"
            raise UserError(f"{path}: {fmt} files hold tagging data, but the task type is {task_type}{hint}")
        rows = read_conll(path, text, spec) if fmt == "conll" else read_conllu(path, text, spec)
    elif fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else ","
        rows = read_delimited(path, text, delimiter) if spec.header else read_headerless(path, text, delimiter, spec)
    elif fmt == "label_text":
        rows = read_label_text(path, text, spec)
    else:
        rows = read_json(path, text, lines=fmt == "jsonl")
    if fmt in ("conll", "conllu"):
        yield from rows
    else:
        for row, line in rows:
            yield from to_examples(path, row, line, spec, task_type)


def read_delimited(path: Path, text: str, delimiter: str):
    """(row, line) pairs, one at a time: a large file is never held as a list of rows."""
    # TSV files like SST-2 contain bare quote characters: read them literally.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty file, expected a header row")
        if not any(name.strip() for name in header):
            raise UserError(f"{path}:1: empty header row, expected the column names")
        count = 0
        for values in reader:
            line = reader.line_num
            if not values or values == [""]:
                continue
            if len(values) != len(header):
                raise UserError(f"{path}:{line}: {len(values)} fields, but the header has {len(header)}")
            count += 1
            yield dict(zip(header, values)), line
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from None
    if not count:
        columns = ", ".join(map(_printable, header))
        columns = columns if len(columns) <= 80 else columns[:77] + "..."
        raise UserError(f"{path}:1: only a header row ({columns}), no examples")


def read_headerless(path: Path, text: str, delimiter: str, spec: DataSpec):
    """Delimited rows without a header: each row is {0-based position: value}; extra trailing fields are kept."""
    asked = {}
    for key in ("text_column", "text_pair_column", "label_column"):
        position = getattr(spec, key)
        if position is None:
            continue
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise UserError(f"{path}: with data.header: false, data.{key} must be a 0-based column position, "
                            f"got {position!r}")
        asked[key] = position
    return _headerless_rows(path, text, delimiter, asked)


def _headerless_rows(path: Path, text: str, delimiter: str, asked: dict):
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        for values in reader:
            if not values or values == [""]:
                continue
            line = reader.line_num
            for key, position in asked.items():
                if position >= len(values):
                    raise UserError(f"{path}:{line}: {len(values)} fields, but data.{key} asks for position "
                                    f"{position} (0-based)")
            yield dict(enumerate(values)), line
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from None


def read_lines(files: dict[str, Path], spec: DataSpec, task_type: str) -> list[dict]:
    """Line-aligned files (format lines): line i of `text` (and `text_pair`) belongs to line i of `labels`.

    "_line" is the line number; label problems name the labels file, text problems the text file."""
    for key in ("text", "labels"):
        if key not in files:
            raise UserError(f"format lines needs a '{key}' file (the split as {{text: FILE, labels: FILE}})")
    if spec.format not in (None, "lines"):
        raise UserError(f"{files['text']}: a split given as text and labels files is the lines format, "
                        f"but data.format is {spec.format}")
    if TASK_TYPES[task_type].token_level:
        raise UserError(f"{files['text']}: format lines holds text data (a text and a label per line), "
                        f"but the task type is {task_type}")
    lines = {}
    for key in (k for k in LINES_FILES if k in files):
        lines[key] = split_lines(read_text(files[key], spec.encoding))
        if lines[key][-1] == "":  # the newline that ends the last line does not start another example
            lines[key].pop()
    labels_path, count = files["labels"], len(lines["labels"])
    for key in ("text", "text_pair"):
        if key in files and len(lines[key]) != count:
            (longer, n_long), (shorter, n_short) = sorted(
                [(files[key], len(lines[key])), (labels_path, count)], key=lambda item: -item[1])
            raise UserError(f"{longer}:{n_short + 1}: no matching line in {shorter}: {longer} has {n_long} lines, "
                            f"{shorter} has {n_short} (line i of one file belongs to line i of the other)")
    if not count:
        raise UserError(f"{files['text']}: no examples found (empty file)")
    pair = "text_pair" in files
    spec = spec.model_copy(update={"text_column": "text", "text_pair_column": "text_pair" if pair else None,
                                   "label_column": "label"})
    examples = []
    for i in range(count):
        number = i + 1
        for key in ("text", "text_pair") if pair else ("text",):
            if not lines[key][i].strip():
                raise UserError(f"{files[key]}:{number}: empty line, expected the text of example {number}")
        if not lines["labels"][i].strip():
            raise UserError(f"{labels_path}:{number}: empty line, expected the label of example {number}")
        row = {key: lines[key][i] for key in ("text", "text_pair") if key in lines}
        row["label"] = lines["labels"][i]
        examples += to_examples(labels_path, row, number, spec, task_type)
    return examples


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
        return _json_objects(path, _jsonl_rows(path, text))
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
    return _json_objects(path, ((item, f"item {i}") for i, item in enumerate(data)))


def _jsonl_rows(path: Path, text: str):
    """One (value, line) per non-blank line, parsed as it is reached."""
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), number
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: invalid JSON: {e.msg} (column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # a number of > 4300 digits, nesting too deep
            raise UserError(f"{path}:{number}: invalid JSON: {_json_problem(e)}") from None


def _json_objects(path: Path, rows):
    for row, line in rows:
        if not isinstance(row, dict):
            raise UserError(f"{_at(path, line)}: expected a JSON object, got {type(row).__name__}")
        yield row, line


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


class Row:
    """One raw example (its columns by name) and where it is: what a task type (mtnlp/tasks) reads an
    example from, with helpers whose errors name the file and line."""

    def __init__(self, path, values: dict, line):
        self.path, self.values, self.line = path, values, line

    def fail(self, message: str):
        raise UserError(f"{_at(self.path, self.line)}: {message}")

    def column(self, name):
        if name not in self.values:
            found = ", ".join(_printable(k) for k in self.values)
            self.fail(f"missing column '{_printable(name)}' (found: {found})")
        return self.values[name]

    def text(self, name) -> str:
        return _text(self.path, self.line, name, self.column(name))

    def name(self, what: str, value) -> str:
        return _name(self.path, self.line, what, value)

    show, printable = staticmethod(_show), staticmethod(_printable)


def to_examples(path: Path, row: dict, line, spec: DataSpec, task_type: str) -> list[dict]:
    """The examples of one raw row: one, or several for a type whose rows hold many (a SQuAD article)."""
    return TASK_TYPES[task_type].examples(Row(path, row, line), spec)


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
    key = spec.tag_column or "tags" if TASK_TYPES[task_type].token_level else spec.label_column
    names = _class_names(dataset.features, key)
    for i, row in enumerate(dataset):
        value = row.get(key)
        if names and isinstance(value, int):  # a ClassLabel id (classification)
            if value < 0:
                raise UserError(f"{name}: row {i}: no label ({value}); unlabelled splits cannot be used")
            row = dict(row, **{key: names[value]})
        elif names and isinstance(value, list):  # a sequence of ClassLabel ids (tags, multi-label)
            row = dict(row, **{key: [names[t] for t in value]})
        rows += to_examples(Path(name), row, f"row {i}", spec, task_type)
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
