"""File readers: csv, tsv, json, jsonl, CoNLL columns, CoNLL-U and line-aligned files into plain examples; and
hub data sets (the hub's, a local folder's, or one save_to_disk wrote) read into the same examples.

A text example is {"text", "text_pair"?, "label", "_line"}; a tagging example is
{"tokens", "tags", "_line"}; multiple-choice and QA examples are their task type's (mtnlp/tasks,
`example`). "_line" is where the example starts, for error messages.
Any problem with the input raises UserError naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import itertools
import json
import math
import os
import re
import warnings
from pathlib import Path
from stat import S_ISREG

from .cache import digest
from .errors import UserError, at, first_line, lfs_pointer
from .spec import LINES_FILES, SUFFIX_FORMATS, DataSpec
from .tasks import TASK_TYPES
from .tasks.base import label_name, valid_unicode

csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # the default, 128 K characters, refuses long texts
CONLLU_TAGS = {"upos": 3, "xpos": 4}
SEMICOLONS = 'as Excel writes CSV in some languages? Save it as "CSV UTF-8 (comma delimited)"'


def file_format(path: Path, spec: DataSpec) -> str:
    if spec.format:
        return spec.format
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix.lower() == ".parquet":
        raise UserError(PARQUET.format(path=path))
    if fmt is None:
        open_text(path, spec.encoding).close()  # a compressed (or missing) file is said as such, not as a format
        raise UserError(f"{path}: unknown file format '{path.suffix}'; set data.format to one of: "
                        "csv, tsv, json, jsonl, conll, conllu, label_text, "
                        "or lines (the split as {text: FILE, labels: FILE})")
    return fmt


PARQUET = ("{path}: Parquet files are read as a data set folder: put the splits in a folder as train.parquet, "
           "validation.parquet, test.parquet and give the folder as data.hub, with train: train (validation: "
           "validation, test: test)")
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd",
              b"PK\x03\x04": "zip"}


def open_text(path: Path, encoding: str, newline: str | None = None, refuse_html: bool = False):
    """The file opened once (a pipe can be read only once) as text, after a look at its first bytes: a compressed
    file, a Parquet file, a workbook or a Git LFS pointer is refused; an HTML page too with `refuse_html` (a format
    an HTML page cannot be valid in: JSON, a CSV with a header row; a text corpus may hold web pages)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a data file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    try:
        start = f.peek(512)[:512]
        if start.startswith(b"PAR1\x15"):  # a Parquet file (its first page header follows) named .csv, or read
            raise UserError(PARQUET.format(path=path))  # with data.format
        if pointer := lfs_pointer(start, "data"):
            raise UserError(f"{path}: {pointer}")
        if refuse_html and start.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith((b"<!doctype html", b"<html")):
            raise UserError(f"{path}: an HTML page, not a data file (a web page saved instead of the file? download "
                            "the raw file: GitHub's Raw link, the hub's resolve/main/ link)")
        # an Excel workbook (.xlsx: a zip of XML, its first entry's name at byte 30; .xls: an OLE2 file) or a
        # LibreOffice one (.ods: a zip whose first entry says so)
        if start.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") or start.startswith(b"PK\x03\x04") and (
                path.suffix.lower() in (".xlsx", ".xlsm", ".ods") or
                any(name in start for name in (b"[Content_Types].xml", b"docProps/", b"xl/", b"opendocument"))):
            raise UserError(f'{path}: an Office file (an Excel or LibreOffice workbook?), not a text file: save it as '
                            f'CSV (Excel: "CSV UTF-8 (comma delimited)")')
        for magic, kind in COMPRESSED.items():
            if start.startswith(magic):
                raise UserError(f"{path}: a {kind}-compressed file; decompress it first (data files are read as "
                                "plain text)")
        return io.TextIOWrapper(f, encoding=encoding, newline=newline)
    except LookupError:
        f.close()
        raise UserError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    except OSError as e:
        f.close()
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    except BaseException:
        f.close()
        raise


ENCODING_FIX = "set data.encoding to the file's encoding (e.g. cp1252 for a file from Windows, latin-1 for ISO-8859-1)"
BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16's FF FE
                    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
CTRL_Z = "\x1a"  # what DOS programs (and old Excel exports) end a text file with
CTRL_Z_ENDS = "a Ctrl-Z (\\x1a, an old DOS end-of-file mark) ends the file: remove it"


def decoded(path: Path, encoding: str, newline: str | None = None, chunk: int | None = None, fix: str = ENCODING_FIX,
            bom_fix: str | None = None, refuse_html: bool = False):
    """A text file decoded as it is read, never whole: its lines (line ends translated to "\n" unless
    `newline` is given, as for csv) or, with `chunk`, pieces of that many characters. A byte that is not
    valid in the encoding is a UserError naming its line, and `fix` (`bom_fix` for a UTF-16 or UTF-32 file,
    known by its byte order mark, read in another encoding; see bad_byte). A Ctrl-Z ending the file is a
    UserError too: read, it would be a field or a line of its own, or glued to the last label."""
    with open_text(path, encoding, newline, refuse_html) as f:
        try:
            wide = utf16_or_32(f.buffer.peek(4)[:4], encoding)  # before decoding: a pipe is read once
            if wide:
                raise UserError(wide_file(path, encoding, *wide, fix, bom_fix))
            parts = iter(f) if chunk is None else iter(lambda: f.read(chunk), "")
            last, line = next(parts, None), 1  # one piece held back: the last one may end in a Ctrl-Z
            if last is None:
                return
            last = last.removeprefix("\ufeff")
            for part in parts:
                yield last
                line += last.count("\n") if chunk else 1
                last = part
            if last.rstrip("\r\n").endswith(CTRL_Z):
                line += last.rstrip("\r\n").rstrip(CTRL_Z).count("\n") if chunk else 0
                raise UserError(f"{path}:{line}: {CTRL_Z_ENDS}")
            yield last
        except UnicodeError:  # a byte that does not decode; a UTF-16 file without its byte order mark
            if not S_ISREG(os.fstat(f.fileno()).st_mode):  # a pipe cannot be read again to find the line
                raise UserError(f"{path}: not valid {encoding}; {fix}") from None
            raise UserError(bad_byte(path, encoding, fix, bom_fix=bom_fix)) from None
        except OSError as e:
            raise UserError(f"{path}: cannot read: {e.strerror}") from None


def utf16_or_32(start: bytes, encoding: str) -> tuple[str, bytes] | None:
    """("utf-16" or "utf-32", the mark) when `start`, a file's first bytes, is that encoding's byte order mark
    (what Windows Notepad's "Unicode", Excel's "Unicode Text" and PowerShell 5's `>` write) and `encoding` is
    another one, which would fail on it, or read it as "ÿþ" and NUL characters."""
    try:
        if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
            return None
    except LookupError:
        return None
    return next(((name, mark) for mark, name in BYTE_ORDER_MARKS if start.startswith(mark)), None)


def wide_file(path, encoding: str, wide: str, mark: bytes, fix: str, bom_fix: str | None) -> str:
    if bom_fix is None:
        bom_fix = f"set data.encoding: {wide}" if fix == ENCODING_FIX else fix
    bom_fix = bom_fix.replace("{wide}", wide)  # a caller's fix that names the encoding
    return (f"{path}:1: starts with the bytes {' '.join(f'0x{b:02x}' for b in mark)}, a {wide.upper()} byte order "
            f"mark: the file is {wide.upper()}, not {encoding}; {bom_fix}")


def bad_byte(path: Path | str, encoding: str, fix: str = ENCODING_FIX, data: bytes | None = None,
             bom_fix: str | None = None) -> str:
    """Where the first byte that does not decode is: found by decoding the file again a chunk at a time
    (`data`: its bytes, for what cannot be read again, e.g. standard input). A file that starts with a
    UTF-16 or UTF-32 byte order mark is said to be one, with `bom_fix` (by default `fix`, or for a data
    file "set data.encoding: utf-16")."""
    decoder, newlines = codecs.getincrementaldecoder(encoding)(), 0
    with io.BytesIO(data) if data is not None else open(path, "rb") as f:
        if wide := utf16_or_32(f.read(4), encoding):
            return wide_file(path, encoding, *wide, fix, bom_fix)
        f.seek(0)
        for chunk in itertools.chain(iter(lambda: f.read(1 << 20), b""), [None]):
            pending = decoder.getstate()[0]  # the start of a character cut by the previous chunk
            try:
                decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError as e:
                data = e.object
                line = newlines - pending.count(b"\n") + data[: e.start].count(b"\n") + 1
                byte = f"byte 0x{data[e.start]:02x}" if e.start < len(data) else "the end of the file"
                return f"{path}:{line}: {byte} is not valid {encoding}; {fix}"
            except UnicodeError as e:
                return f"{path}: not valid {encoding} ({e}); {fix}"
            newlines += (chunk or b"").count(b"\n")
    return f"{path}: not valid {encoding}; {fix}"


def file_lines(path: Path, encoding: str, fix: str = ENCODING_FIX, bom_fix: str | None = None,
               refuse_html: bool = False):
    """A file's lines without their line ends (\n, \r\n or \r), read one at a time."""
    for line in decoded(path, encoding, fix=fix, bom_fix=bom_fix, refuse_html=refuse_html):
        yield line[:-1] if line.endswith("\n") else line


def iter_examples(path: Path, spec: DataSpec, task_type: str):
    """A file's examples one at a time, as the file is read (never whole). Errors name the file and line."""
    fmt = file_format(path, spec)
    if fmt == "lines":
        raise UserError(f"{path}: format lines reads a text file and a labels file: give the split as "
                        "{text: FILE, labels: FILE}")
    if not spec.header and fmt not in ("csv", "tsv"):
        raise UserError(f"{path}: data.header: false applies to csv and tsv files, not {fmt}")
    if spec.quoted is not None and fmt not in ("csv", "tsv"):
        raise UserError(f"{path}: data.quoted applies to csv and tsv files, not {fmt}")
    if fmt in ("conll", "conllu"):
        if not TASK_TYPES[task_type].token_level:
            hint = ""
            if path.suffix.lower() == ".txt" and not spec.format:
                hint = (" (a .txt file is read as CoNLL: for 'LABEL text' lines, set data.format: label_text; for a "
                        "table, data.format: csv, tsv or jsonl; for a text file with a labels file line by line, give "
                        "the split as {text: FILE, labels: FILE})")
            raise UserError(f"{path}: {fmt} files hold tagging data, but the task type is {task_type}{hint}")
        lines = file_lines(path, spec.encoding)
        rows = read_conll(path, lines, spec) if fmt == "conll" else read_conllu(path, lines, spec)
    elif fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else ","
        lines = decoded(path, spec.encoding, newline="", refuse_html=spec.header)  # csv finds line ends itself
        records = delimited_records(path, lines, delimiter, spec.quoted)
        rows = read_delimited(path, records, delimiter) if spec.header else read_headerless(path, records, spec)
    elif fmt == "label_text":
        rows = read_label_text(path, file_lines(path, spec.encoding), spec)
    elif fmt == "jsonl":
        rows = _json_objects(path, _jsonl_rows(path, file_lines(path, spec.encoding, refuse_html=True)))
    else:
        rows = _json_objects(path, JsonArray(path, decoded(path, spec.encoding, newline="", chunk=1 << 16,
                                                           refuse_html=True)).items())
    if fmt in ("conll", "conllu"):
        if spec.label_names or spec.label_sep:  # tags are renamed as labels are
            rows = (dict(ex, tags=[label_name(Row(path, {}, ex["_line"]), t, spec, "tag") for t in ex["tags"]])
                    for ex in rows)
        yield from rows
    else:
        for row, line in rows:
            yield from to_examples(path, row, line, spec, task_type)


QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*""(?:[^"]|"")*"')  # wrapped in quotes, inner quotes doubled


def delimited_records(path: Path, lines, delimiter: str, quoted: bool | None):
    """(fields, line) per CSV/TSV record, one at a time; a record's line is where it starts (a quoted
    field may run over several lines). Blank lines are skipped."""
    watch = quoted is None and delimiter == "\t"  # read literally by default: say so if it looks quoted
    quoted = delimiter == "," if quoted is None else quoted  # TSV files like SST-2 hold bare quotes
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
                        strict=True)
    start, looks_quoted = 1, []  # (line, field) of fields such as "a ""b"" c": CSV quoting read literally
    try:
        for values in reader:
            if values:
                if watch:
                    looks_quoted += [(start, v) for v in values if QUOTED_FIELD.fullmatch(v)][:1]
                yield values, start
            start = reader.line_num + 1
        if looks_quoted:
            line, field = looks_quoted[0]
            warnings.warn(f"{path}: {len(looks_quoted)} record(s) hold a field that looks CSV-quoted (line {line}: "
                          f"{_printable(field[:50])}{'...' * (len(field) > 50)}), read as it is, quotes kept; if the "
                          "file was written with quoting (pandas, datasets' to_csv), set data.quoted: true",
                          stacklevel=2)
    except csv.Error as e:
        kind = "TSV" if delimiter == "\t" else "CSV"
        runs_on = f" (the record runs on to line {reader.line_num}: a quote left open?)" if reader.line_num > start else ""
        if delimiter == "," and "',' expected after '\"'" in str(e):  # "text";"label"
            runs_on += f" (fields separated by semicolons, {SEMICOLONS})"
        raise UserError(f"{path}:{start}: malformed {kind}: {e}{runs_on}") from None


def read_delimited(path: Path, records, delimiter: str):
    """(row, line) pairs, one at a time: a large file is never held as a list of rows."""
    header, first = next(records, (None, 1))
    if header is None:
        raise UserError(f"{path}: empty file, expected a header row")
    if not any(name.strip() for name in header):
        raise UserError(f"{path}:{first}: empty header row, expected the column names")
    for i, name in enumerate(header):
        if name.strip() and name in header[:i]:  # a row would keep only one of them
            raise UserError(f"{path}:{first}: column '{_printable(name)}' appears twice in the header "
                            f"(columns {header.index(name) + 1} and {i + 1}); rename one")
    if delimiter == "," and len(header) == 1 and header[0].count(";") > 0:
        raise UserError(f"{path}:{first}: the header is one column, '{_printable(header[0])}': a file separated by "
                        f"semicolons, {SEMICOLONS}")
    if any("\x00" in name for name in header):
        raise UserError(f"{path}:{first}: the header holds NUL characters: a UTF-16 file? set data.encoding: utf-16")
    count = 0
    for values, line in records:
        if len(values) != len(header):
            hint = (" (if the file quotes its fields, set data.quoted: true)"
                    if delimiter == "\t" and any('"' in v for v in values) else "")
            raise UserError(f"{path}:{line}: {len(values)} fields, but the header has {len(header)}{hint}")
        if [values[0].removeprefix("\ufeff"), *values[1:]] == header:  # files joined with cat (BOM and all)
            raise UserError(f"{path}:{line}: this row repeats the header (line {first}); remove it")
        count += 1
        yield dict(zip(header, values)), line
    if not count:
        columns = ", ".join(map(_printable, header))
        columns = columns if len(columns) <= 80 else columns[:77] + "..."
        raise UserError(f"{path}:{first}: only a header row ({columns}), no examples")


def read_headerless(path: Path, records, spec: DataSpec):
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
    return _headerless_rows(path, records, asked)


def _headerless_rows(path: Path, records, asked: dict):
    for values, line in records:
        for key, position in asked.items():
            if position >= len(values):
                raise UserError(f"{path}:{line}: {len(values)} fields, but data.{key} asks for position "
                                f"{position} (0-based)")
        yield dict(enumerate(values)), line


def read_lines(files: dict[str, Path], spec: DataSpec, task_type: str):
    """Line-aligned files (format lines): line i of `text` (and `text_pair`) belongs to line i of `labels`.

    The files are read side by side, a line at a time. "_line" is the line number; label problems name
    the labels file, text problems the text file."""
    for key in ("text", "labels"):
        if key not in files:
            raise UserError(f"format lines needs a '{key}' file (the split as {{text: FILE, labels: FILE}})")
    if spec.format not in (None, "lines"):
        raise UserError(f"{files['text']}: a split given as text and labels files is the lines format, "
                        f"but data.format is {spec.format}")
    if TASK_TYPES[task_type].token_level:
        raise UserError(f"{files['text']}: format lines holds text data (a text and a label per line), "
                        f"but the task type is {task_type}")
    keys = [k for k in LINES_FILES if k in files]
    none_said = task_type == "multilabel"  # a blank labels line: an example without a label (as an empty cell)
    streams = [file_lines(files[key], spec.encoding) if key == "labels" and none_said else
               _without_trailing_blank_lines(file_lines(files[key], spec.encoding)) for key in keys]
    pair = "text_pair" in files
    spec = spec.model_copy(update={"text_column": "text", "text_pair_column": "text_pair" if pair else None,
                                   "label_column": "label"})
    labels_path, number = files["labels"], 0
    for number, values in enumerate(itertools.zip_longest(*streams), 1):
        row = dict(zip(keys, values))
        if none_said and row["text"] is None and not row["labels"].strip():  # blank lines after the last example
            continue
        if None in values:  # one file ended before the others
            counts = {key: number - 1 + (value is not None) + sum(1 for _ in stream)
                      for key, value, stream in zip(keys, values, streams)}
            _unequal_lengths(files, counts)
        for key in ("text", "text_pair") if pair else ("text",):
            if not row[key].strip():
                raise UserError(f"{files[key]}:{number}: empty line, expected the text of example {number}")
        if not row["labels"].strip() and not none_said:
            raise UserError(f"{labels_path}:{number}: empty line, expected the label of example {number}")
        row["label"] = row.pop("labels")
        yield from to_examples(labels_path, row, number, spec, task_type)
    if not number:
        raise UserError(f"{files['text']}: no examples found (empty file)")


def _without_trailing_blank_lines(lines):
    """The lines, but for blank ones at the end (a blank line before a non-blank one is kept, in place)."""
    blank = []
    for line in lines:
        if line.strip():
            yield from blank
            blank.clear()
            yield line
        else:
            blank.append(line)


def _unequal_lengths(files: dict[str, Path], counts: dict[str, int]):
    count = counts["labels"]
    for key in ("text", "text_pair"):
        if key in files and counts[key] != count:
            (longer, n_long), (shorter, n_short) = sorted(
                [(files[key], counts[key]), (files["labels"], count)], key=lambda item: -item[1])
            raise UserError(f"{longer}:{n_short + 1}: no matching line in {shorter}: {longer} has {n_long} lines, "
                            f"{shorter} has {n_short} (line i of one file belongs to line i of the other)")


def read_label_text(path: Path, lines, spec: DataSpec):
    """Lines of "LABEL text" (the label is the first field, up to the first space or tab)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        label, *rest = re.split(r"[ \t]+", line.strip(), maxsplit=1)
        yield {spec.label_column: label, spec.text_column: rest[0] if rest else ""}, number


class NotJson(ValueError):
    """Python's json reads NaN and Infinity (which json.dumps writes for a float NaN: a missing value); they
    are not JSON, and a label would become the text "nan"."""


def not_json(constant: str):
    raise NotJson(f"{constant} is not JSON (a missing value?)")


class OutOfRange(ValueError):
    def __init__(self, text: str):
        super().__init__(f"{text} is out of a number's range")
        self.text = text


def finite_float(text: str) -> float:
    """A JSON number within a float's range: 1e400 would be read as inf (a label or a choice's text "inf",
    and predict would echo it as Infinity, which is not JSON)."""
    if math.isinf(value := float(text)):
        raise OutOfRange(text)
    return value


JSON, NOT_JSON = json.JSONDecoder(parse_constant=not_json, parse_float=finite_float), re.compile(r"NaN|-?Infinity")
BOM_IN_LINE = "the line starts with a byte-order mark (U+FEFF), as files joined with cat leave it: remove it"
RAW_CONTROL = "a raw control character (a tab, a line break) inside a string: write it escaped (\\t, \\n, \\u0000)"


def json_error(error: Exception, line: str = "") -> str:
    """What is wrong in a JSON text (`line`: the line of JSON Lines it is), for a message."""
    if line.startswith("\ufeff"):
        return BOM_IN_LINE
    if not isinstance(error, json.JSONDecodeError):
        return _json_problem(error)
    where = f"line {error.lineno} column {error.colno}" if error.lineno > 1 else f"column {error.colno}"
    if line and error.msg.startswith("Unterminated string"):  # the line ends inside a string: split at a raw \r?
        return f"a string not closed on its line, from {where} (a raw line break inside it? write it escaped: \\n, \\r)"
    return f"{_said(error.msg)} ({where})"


def _said(msg: str) -> str:
    """json's message, or ours where json's says too little ("Invalid control character at" a position)."""
    return RAW_CONTROL if msg.startswith("Invalid control character") else msg


class JsonArray:
    """The objects of a JSON array (or of the array under "data" in a top-level object, as in SQuAD),
    parsed one at a time from text read a chunk at a time: the file is never held whole.

    Errors give the line and column, as json.loads would."""

    SPACE = re.compile(r"[ \t\n\r]*")
    LOOKAHEAD = 16 << 20  # characters read past an item before a JSON error in it is taken as real

    def __init__(self, path: Path, chunks):
        self.path, self.chunks = path, chunks
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.column = 1, 1  # where buf[0] is in the file
        self.counted = (0, 1)  # (position in buf, its line): line_at counts on from there

    def items(self):
        first = self.peek()
        if not first:
            raise UserError(f"{self.path}: empty file, expected a JSON array of objects")
        if first == "[":
            yield from self.array()
        elif first == "{":
            yield from self.data_of_object()
        else:
            self.value()  # a scalar: an error if it is not valid JSON either
            raise UserError(f"{self.path}: expected a JSON array of objects (or use format jsonl)")
        if self.peek():
            self.fail("Extra data")

    def array(self):
        self.pos += 1  # [
        if self.peek() == "]":
            self.pos += 1
            return
        for i in itertools.count():
            self.peek()
            line = self.line_at(self.pos)
            yield self.value(), f"{line}: item {i}"
            if self.expect(",]", "Expecting ',' delimiter") == "]":
                return

    def data_of_object(self):
        self.pos += 1  # {
        found, keys = False, []
        if self.peek() == "}":
            self.pos += 1
        else:
            while True:
                if self.peek() != '"':
                    self.fail("Expecting property name enclosed in double quotes")
                key = self.value()
                keys.append(key)
                self.expect(":", "Expecting ':' delimiter")
                if key == "data" and not found and self.peek() == "[":
                    found = True
                    yield from self.array()
                else:
                    self.value()
                if self.expect(",}", "Expecting ',' delimiter") == "}":
                    break
        if not found:
            what = ('its "data" is not an array' if "data" in keys
                    else f"its keys: {', '.join(repr(k[:40]) for k in keys[:8])}" if keys else "it is empty")
            raise UserError(f'{self.path}: expected a JSON array of objects, or an object holding one under "data" '
                            f'as a SQuAD file does ({{"data": [...]}}); the top-level object has no "data" array '
                            f'({what}) (or use format jsonl)')

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end of the file)."""
        while True:
            self.pos = self.SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.read():
                return ""

    def expect(self, allowed: str, message: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            self.fail(message)
        self.pos += 1
        return char

    def value(self):
        self.peek()
        while True:
            try:
                value, end = JSON.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof or not self.read():  # a number may go on in the next chunk
                    self.pos = end
                    return value
            except json.JSONDecodeError as e:
                # an error at the end of what was read so far (a string or a literal cut off by it) may only be
                # the value going on in the next chunks: read on and retry, reading as much again as is held, so
                # that parsing a long item from its start again costs linear time
                held = len(self.buf) - self.pos
                cut_off = e.pos >= len(self.buf) - len("-Infinity") or e.msg.startswith("Unterminated string")
                if cut_off and held > self.LOOKAHEAD and not self.eof:
                    self.fail(f"the item that starts here does not end within {self.LOOKAHEAD:,} characters; if it "
                              "is valid JSON, it is more than this reader takes: split it, or use format jsonl")
                if not cut_off or self.eof or not self.read(held):
                    self.fail(_said(e.msg), e.pos)
            except (ValueError, RecursionError) as e:  # NaN, a number of > 4300 digits, nesting too deep
                constant = NOT_JSON.search(self.buf, self.pos) if isinstance(e, NotJson) else None
                at = constant.start() if constant else self.buf.find(e.text, self.pos) if isinstance(e, OutOfRange) else -1
                self.fail(_json_problem(e), at if at >= 0 else None)

    def read(self, at_least: int = 1) -> bool:
        """Append the next chunks, at least `at_least` characters of them, dropping what was parsed; False at
        the end of the file."""
        chunks, size = [], 0
        while size < at_least:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.eof = True
                break
            chunks.append(chunk)
            size += len(chunk)
        if not chunks:
            return False
        chunk = "".join(chunks)
        done = self.buf[: self.pos]
        newlines = done.count("\n")
        self.line += newlines
        self.column = len(done) - done.rfind("\n") if newlines else self.column + len(done)
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        self.counted = (0, self.line)
        return True

    def line_at(self, pos: int) -> int:
        """The file line of buf[pos], for positions that only grow between reads."""
        counted, line = self.counted
        line += self.buf.count("\n", counted, pos)
        self.counted = (pos, line)
        return line

    def fail(self, message: str, at: int | None = None):
        at = self.pos if at is None else at
        newlines = self.buf.count("\n", 0, at)
        column = at - self.buf.rfind("\n", 0, at) if newlines else self.column + at
        raise UserError(f"{self.path}:{self.line + newlines}: invalid JSON: {message} (column {column})")


def _jsonl_rows(path: Path, lines):
    """One (value, line) per non-blank line, parsed as it is read."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield JSON.decode(line), number
        except (ValueError, RecursionError) as e:  # also NaN, 1e400, a number of > 4300 digits, nesting too deep
            raise UserError(f"{path}:{number}: invalid JSON: {json_error(e, line)}") from None


def _json_objects(path: Path, rows):
    for row, line in rows:
        if not isinstance(row, dict):
            raise UserError(f"{at(path, line)}: expected a JSON object, got {type(row).__name__}")
        yield row, line


def _json_problem(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "arrays or objects nested too deeply"
    return str(error).split(";")[0]


def _show(value, limit: int = 60) -> str:
    """A value for an error message: repr (one line, lone surrogates escaped), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(name) -> str:
    """A column name for an error message: non-printable characters (line breaks, ...) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))


def _name(path, line, what: str, value) -> str:
    """A label, tag or token as text: a string or a number, not empty, valid Unicode."""
    if isinstance(value, (dict, list)) or value is None:
        raise UserError(f"{at(path, line)}: {what} must be a string or a number, got {_show(value)}")
    text = str(value).strip()  # JSON's true: "True", as Python's csv module and pandas write it (and older models hold)
    if not text:
        raise UserError(f"{at(path, line)}: empty {what} ({_show(value)})")
    if not valid_unicode(text):
        raise UserError(f"{at(path, line)}: {what} {_show(text)} holds a lone surrogate (an invalid \\u escape)")
    return text


class Row:
    """One raw example (its columns by name) and where it is: what a task type (mtnlp/tasks) reads an
    example from, with helpers whose errors name the file and line."""

    def __init__(self, path, values: dict, line):
        self.path, self.values, self.line = path, values, line

    def fail(self, message: str):
        raise UserError(f"{at(self.path, self.line)}: {message}")

    def column(self, name, key: str | None = None):
        """The value of column `name`; `key`, the data section's key that names it, is named if it is missing."""
        if name not in self.values:
            spaced = [k for k in self.values if isinstance(k, str) and k.strip() == name]
            if spaced:  # e.g. a header "text, label"
                self.fail(f"missing column '{_printable(name)}': the file has '{_printable(spaced[0])}' (with spaces)")
            found = ", ".join(_printable(k) for k in self.values)
            self.fail(f"missing column '{_printable(name)}' (found: {found}"
                      + (f"; data.{key} names the column to read)" if key else ")"))
        return self.values[name]

    def text(self, name, key: str | None = None) -> str:
        return _text(self.path, self.line, name, self.column(name, key))

    def name(self, what: str, value) -> str:
        return _name(self.path, self.line, what, value)

    def json_list(self, value, what: str):
        """A value as it is, or the JSON list a CSV/TSV cell holds as text (choices, multi-label labels), read
        as strictly as a JSON file (NaN is no "nan")."""
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                return JSON.decode(value)
            except (ValueError, RecursionError) as e:
                self.fail(f"{what} {_show(value)} look like a JSON list but do not parse: {json_error(e)}")
        return value

    show, printable = staticmethod(_show), staticmethod(_printable)


def to_examples(path: Path, row: dict, line, spec: DataSpec, task_type: str) -> list[dict]:
    """The examples of one raw row: one, or several for a type whose rows hold many (a SQuAD article)."""
    return TASK_TYPES[task_type].examples(Row(path, row, line), spec)


def _text(path, line, name, value) -> str:
    if not isinstance(value, str):
        raise UserError(f"{at(path, line)}: column '{_printable(name)}' must be text, got {_show(value)}")
    if not value.strip():
        raise UserError(f"{at(path, line)}: empty text in column '{_printable(name)}'")
    if not valid_unicode(value):
        raise UserError(f"{at(path, line)}: text in column '{_printable(name)}' holds a lone surrogate "
                        "(an invalid \\u escape)")
    return value.strip()


def _sentences(lines):
    """Yield (first line number, [(line number, line), ...]) per blank-line separated block.

    A line of whitespace only (also form feed, U+2028, no-break space, ...) counts as blank."""
    block, start = [], None
    for number, line in enumerate(lines, 1):
        if line.strip():
            if not block:
                start = number
            block.append((number, line))
        elif block:
            yield start, block
            block = []
    if block:  # files may end without a final blank line
        yield start, block


def read_conll(path: Path, lines, spec: DataSpec):
    token_col = 0 if spec.token_column is None else spec.token_column
    tag_col = -1 if spec.tag_column is None else spec.tag_column
    if not isinstance(token_col, int) or not isinstance(tag_col, int):
        raise UserError(f"{path}: data.token_column and data.tag_column must be column numbers for CoNLL files")
    width = None
    for start, block in _sentences(lines):
        tokens, tags = [], []
        for number, line in block:
            fields = re.split(r"[ \t]+", line.strip(" \t"))  # not str.split(): tokens may hold a no-break space
            if fields[0] == "-DOCSTART-":  # a document boundary: it ends a sentence, blank line or not
                if tokens:
                    yield {"tokens": tokens, "tags": tags, "_line": start}
                tokens, tags, start = [], [], number + 1
                continue
            if width is None:
                width = len(fields)
                if not (-width <= token_col < width and -width <= tag_col < width):
                    raise UserError(f"{path}:{number}: {width} columns, but token_column={token_col} "
                                    f"and tag_column={tag_col}")
                if token_col % width == tag_col % width:  # (e.g. a file of words only: each word its own tag)
                    raise UserError(f"{path}:{number}: {width} column{'s' if width > 1 else ''}: a CoNLL line needs "
                                    f"a word and a tag (token_column {token_col} and tag_column {tag_col} are the "
                                    "same column)")
            if len(fields) != width:
                raise UserError(f"{path}:{number}: {len(fields)} columns, expected {width} like the lines before")
            for what, value in (("token", fields[token_col]), ("tag", fields[tag_col])):
                if not value.strip():  # e.g. a lone no-break space: the tokenizer would drop the word
                    raise UserError(f"{path}:{number}: {what} {_show(value)} is only whitespace")
            tokens.append(fields[token_col])
            tags.append(fields[tag_col])
        if tokens:
            yield {"tokens": tokens, "tags": tags, "_line": start}


def read_conllu(path: Path, lines, spec: DataSpec):
    if spec.token_column is not None:
        raise UserError(f"{path}: data.token_column does not apply to CoNLL-U files (the words are its FORM column)")
    tag_name = spec.tag_column or "upos"
    if tag_name not in CONLLU_TAGS:
        raise UserError(f"{path}: data.tag_column for CoNLL-U must be 'upos' or 'xpos', got {tag_name!r}")
    tag_index = CONLLU_TAGS[tag_name]
    for start, block in _sentences(lines):
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
            if not word_id.isdecimal():
                raise UserError(f"{path}:{number}: word ID {word_id!r} is not a number")
            if int(word_id) != len(tokens) + 1:  # e.g. two sentences without a blank line between them
                raise UserError(f"{path}:{number}: word ID {word_id}, expected {len(tokens) + 1} (the IDs of a "
                                "sentence count 1, 2, 3, ...; a blank line missing before a new sentence?)")
            if not fields[1].strip() or fields[tag_index].strip() in ("", "_"):
                raise UserError(f"{path}:{number}: missing form or {tag_name.upper()} tag")
            if not tokens:
                start = number  # the sentence's first word, not its comment lines
            tokens.append(fields[1])
            tags.append(fields[tag_index])
        if tokens:
            yield {"tokens": tokens, "tags": tags, "_line": start}


def open_hub_split(spec: DataSpec, split: str, where: str = "data.hub", split_where: str | None = None,
                   config_where: str | None = None):
    """A split of a hub data set: a Dataset (downloaded and cached by datasets), or with data.streaming
    an IterableDataset that reads as it is iterated. `where`, `split_where`, `config_where`: the recipe keys (and
    lines) errors name, data.hub's, the split's (data.validation, ...) and data.config's."""
    import datasets

    split_where, config_where = split_where or where, config_where or where
    folder = Path(spec.hub)
    if folder.is_file():
        raise UserError(f"{where}: {spec.hub} is a file: data.hub names a data set folder or hub id, and a data file "
                        "is a split's own (data.train: FILE, without hub)")
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():  # save_to_disk's
        return saved_dataset_split(spec, split, split_where)
    local = {"cache_dir": local_set_cache(folder)} if folder.is_dir() and not spec.streaming else {}
    try:
        return datasets.load_dataset(spec.hub, spec.config, split=split, streaming=spec.streaming, **local)
    except Exception as e:  # datasets raises many types for "not reachable / not found"
        config = f" (config '{spec.config}')" if spec.config else ""
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # its lock, even when cached
            raise UserError(f"{where}: datasets cannot write its cache ({os.strerror(e.errno)}: {e.filename}), which "
                            "it needs to read a data set, also one it has cached: set HF_DATASETS_CACHE (or HF_HOME) to "
                            "a folder you can write") from None
        # the second line often says what would be right, e.g. the configs there are
        message = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or type(e).__name__
        if (cause := e.__cause__ or e.__context__) is not None and type(e).__name__ == "DatasetGenerationError":
            message += f": {type(cause).__name__}: {first_line(cause)}"  # (what was wrong in which file and row)
        # a ValueError about the split (`Unknown split "dev"`, a bad slice, an empty one: 'Instruction "train[5:]"
        # corresponds to no data!') or the config ("BuilderConfig 'x' not found", "Config name is missing"): the
        # data set was found
        about = isinstance(e, ValueError) and re.search(r"(split|slice|instruction)|(config)", message, re.I)
        at = where if not about else split_where if about.group(1) else config_where
        raise UserError(f"{at}: cannot load split '{split}' of '{spec.hub}'{config}: {message}") from None


def local_set_cache(folder: Path) -> str:
    """datasets' cache folder for a local data set folder, one per state of its files: datasets keys a folder whose
    card lists configs by the folder's name alone (an edited file, a new shard, or another folder of that name
    gave the examples cached before). A file that is a Git LFS pointer is an error naming it."""
    import datasets

    files = sorted((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
                   for path in folder.rglob("*") if path.is_file() and not any(
                       part.startswith(".") for part in path.relative_to(folder).parts) for stat in [path.stat()])
    for name, size, _ in files:  # a clone without git-lfs: datasets says "Parquet magic bytes not found"
        if size < 512 and (pointer := lfs_pointer((folder / name).read_bytes(), "data")):
            raise UserError(f"{folder / name}: {pointer}")
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "mtnlp-local" / digest([str(folder.resolve()), files]))


def saved_dataset_split(spec: DataSpec, split: str, where: str):
    """A split of a folder written by save_to_disk: a DatasetDict's split by its own name, or of one Dataset the
    one split, "train"; either may be sliced as datasets slices splits ("train[:90%]")."""
    import datasets

    if spec.streaming:
        raise UserError(f"{where}: {spec.hub} was saved with save_to_disk, read memory-mapped: leave streaming out")
    if spec.config:
        raise UserError(f"{where}: {spec.hub} was saved with save_to_disk, which keeps no configurations: leave "
                        f"data.config ({spec.config!r}) out")
    saved = datasets.load_from_disk(spec.hub)
    splits = saved if isinstance(saved, datasets.DatasetDict) else {"train": saved}
    kind = "a DatasetDict" if isinstance(saved, datasets.DatasetDict) else "one Dataset"
    try:
        (part,) = datasets.ReadInstruction.from_spec(split).to_absolute({name: len(d) for name, d in splits.items()})
    except (ValueError, AssertionError, KeyError) as e:
        raise UserError(f"{where}: {spec.hub} is {kind} saved with save_to_disk, whose splits are "
                        f"{', '.join(map(repr, splits))} (or slices of them, e.g. '{next(iter(splits))}[:90%]'), not "
                        f"'{split}' ({first_line(e)})") from None
    return splits[part.splitname].select(range(part.from_, part.to))


def read_hub_split(spec: DataSpec, split: str, task_type: str, where: str = "data.hub", split_where: str | None = None,
                   config_where: str | None = None):
    """A split of a hub data set, an example at a time (needs a network the first time; cached by
    datasets after, unless streamed)."""
    dataset = open_hub_split(spec, split, where, split_where, config_where)
    yield from hub_examples(dataset, f"{spec.hub}[{split}]", spec, task_type)


def hub_examples(rows, name: str, spec: DataSpec, task_type: str, order: str = ""):
    """The examples of a hub split's rows (a Dataset or a stream), ClassLabel ids read as their names.
    `order` follows each row's number in error messages (a shuffled stream's rows are numbered as read)."""
    key = label_column(spec, task_type)
    names = _class_names(rows.features or {}, key)
    count = 0
    for count, row in enumerate(_read(rows, name), 1):
        where = f"{name}: row {count - 1}{order}"
        value = row.get(key)
        if names and isinstance(value, int):  # a ClassLabel id (classification)
            row = dict(row, **{key: _class_name(names, value, where)})
        elif names and isinstance(value, list):  # a sequence of ClassLabel ids (tags, multi-label)
            row = dict(row, **{key: [_class_name(names, t, f"{where}: item {j + 1} of {key}") for j, t in enumerate(value)]})
        label = f"row {count - 1}{order}"
        if order:  # numbered as read, not as stored: its first text tells which row it is
            text = next((v for v in row.values() if isinstance(v, str) and v.strip()), None)
            label += f" ({_printable(text[:40]) + '...' * (len(text) > 40)!r})" if text else ""
        yield from to_examples(Path(name), row, label, spec, task_type)
    if not count:
        raise UserError(f"{name}: no examples found")


def _read(rows, name: str):
    """`rows`, with a failure to read them (e.g. the hub unreachable in the middle of a stream) as a
    one-line error."""
    iterator = iter(rows)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            raise UserError(f"{name}: reading the data set failed: {type(e).__name__}: {first_line(e)}") from None
        yield row


def _class_name(names: list[str], value: int, where: str) -> str:
    """A ClassLabel id's name; -1 (datasets' "no label") and ids out of range are errors, not a wrong label."""
    if value < 0:
        raise UserError(f"{where}: no label ({value}); unlabelled examples cannot be used")
    if value >= len(names):
        raise UserError(f"{where}: label id {value} is not one of the ClassLabel feature's {len(names)} ids "
                        f"(0-{len(names) - 1})")
    return names[value]


def hub_label_names(rows, spec: DataSpec, task_type: str) -> list[str] | None:
    """The raw label (or tag) names a hub split declares: its ClassLabel feature's names, else the keys
    of data.label_names; None when neither says."""
    names = _class_names(rows.features or {}, label_column(spec, task_type))
    return names or (list(spec.label_names) if spec.label_names else None)


def label_column(spec: DataSpec, task_type: str) -> str:
    """The column of a hub split that holds the labels (the tags, for a token-level type)."""
    return spec.tag_column or "tags" if TASK_TYPES[task_type].token_level else spec.label_column


def _class_names(features, column) -> list[str] | None:
    """Label names of a ClassLabel column (or a sequence of ClassLabel, for tags), else None."""
    import datasets

    feature = features.get(column)
    if isinstance(feature, (datasets.Sequence, datasets.List)):
        feature = feature.feature
    elif isinstance(feature, list) and feature:
        feature = feature[0]
    return feature.names if isinstance(feature, datasets.ClassLabel) else None
