"""The tokenisation cache's folder and files: where it is, content hashes of data files (remembered per
version), the label sets and tokenised splits stored under a task's key, and writes that readers see whole.
What goes into a key is the data's business (data.task_key, data.split_key).

A cache folder may be shared by DDP ranks, concurrent runs, and containers or machines whose processes this
one cannot see: files are written under unique temporary names and renamed, and a damaged entry is read as
missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from .errors import UserError, first_line
from .folders import umask


def cache_dir() -> Path:
    """mtnlp's folder in datasets' cache (HF_DATASETS_CACHE, else HF_HOME/datasets), found without
    importing datasets."""
    root = os.environ.get("HF_DATASETS_CACHE")
    if not root:
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        root = os.path.join(home, "datasets")
    # os.path's expanduser, as datasets': with no HOME and no passwd entry (a container's random uid) it leaves
    # "~" as it is, where Path.expanduser raises
    return Path(os.path.expanduser(root)) / "mtnlp"


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:24]


def unique() -> str:
    """A part of a temporary file's name that no other process, here or on another machine, makes."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def write_atomic(path: Path, text: str) -> None:
    """Readers (other DDP ranks, a concurrent run) see the whole file or none of it. The temporary file's name
    is unique to this call: a cache may be shared by containers whose processes have the same pids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        with contextlib.suppress(OSError):  # mkstemp's 0600 would keep the entry from the cache's other users
            os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_hash(path: Path) -> str:
    """The SHA-256 of a file's content, remembered per (path, inode, size, mtime, ctime): hashed once per
    version. An edit that keeps the size and sets the mtime back (cp -p, rsync -a, tar) still changes the
    ctime, which no tool sets; replacing the file changes the inode."""
    stat = path.stat()
    if not S_ISREG(stat.st_mode) and not S_ISDIR(stat.st_mode):  # the reader reports a directory
        raise UserError(f"{path}: not a regular file (a pipe or a device); mtnlp reads a data file more than once "
                        "(to hash it for the cache, then to read it): save it to a file first")
    version = [str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    memo = cache_dir() / "file-hashes" / f"{digest(version)}.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        remembered = memo.read_text(encoding="utf-8")
        if re.fullmatch("[0-9a-f]{64}", remembered):  # not a memo a crash left empty
            return remembered
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    with contextlib.suppress(OSError):  # a read-only cache: hashed again next time
        write_atomic(memo, sha.hexdigest())
    return sha.hexdigest()


def labels_file(key: str) -> Path:
    return cache_dir() / f"labels-{key}.json"


def cached_labels(key: str) -> list[str] | None:
    """The label set read_task found for the files of `key`, or None (not read yet, or a damaged entry)."""
    try:
        labels = json.loads(labels_file(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return labels if isinstance(labels, list) and all(isinstance(label, str) for label in labels) else None


def cached_split(key: str):
    """The tokenised split written under `key` (memory-mapped Arrow, one file per tokenising
    process), or None. Parts without a listing (a run killed before it wrote it) are checked, not used: datasets'
    map loads them."""
    import datasets

    listing = cache_dir() / f"tokenized-{key}.json"
    path, rows_of_part, parts = listing, {}, []
    try:
        listed = listing.exists()  # (PermissionError in a folder this user cannot look into)
        if listed:  # {part: its rows}: a part cut at the end of a record batch reads without an error, only shorter
            rows_of_part = json.loads(listing.read_text(encoding="utf-8"))
            if isinstance(rows_of_part, list):  # an older mtnlp's listing, of names only: rows not checked
                rows_of_part = dict.fromkeys(rows_of_part)
        else:
            rows_of_part = dict.fromkeys(part.name for part in cache_dir().glob(f"tokenized-{key}*.arrow"))
        for name, rows in rows_of_part.items():
            path = cache_dir() / name
            parts.append(datasets.Dataset.from_file(str(path)))
            if rows is not None and len(parts[-1]) != rows:
                raise ValueError(f"{name} holds {len(parts[-1]):,} rows of the {rows:,} written")
    except PermissionError:  # another user's file: not damage
        raise unreadable(path) from None
    except (OSError, ValueError, TypeError, AttributeError) as e:  # a part deleted, cut or damaged: tokenised again
        import warnings

        warnings.warn(f"{listing}: a cache entry that cannot be read ({first_line(e)}): tokenising again", stacklevel=2)
        for name in [listing.name, *(rows_of_part if isinstance(rows_of_part, dict) else [])]:
            (cache_dir() / str(name)).unlink(missing_ok=True)
        return None
    if not listed:
        return None
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def unreadable(path: Path) -> UserError:
    """A cache file that is there and this user cannot read: another user's, written under a umask that keeps it
    to them (077). It is not damage: deleting it would take it from its owner (who would write it again, for this
    user to delete again), and tokenising again stumbles on it (datasets' map loads the parts of the entry's name)."""
    whose, what = "", "file"
    with contextlib.suppress(OSError):
        try:
            stat = path.stat()
        except PermissionError:  # the folder is what this user cannot look into (another user's, under umask 077)
            path, what = path.parent, "folder"
            stat = path.stat()
        owner = f"uid {stat.st_uid}"
        with contextlib.suppress(ImportError, KeyError):  # (no pwd on Windows; a uid without a passwd entry)
            import pwd

            owner = pwd.getpwuid(stat.st_uid).pw_name
        whose = f" (owned by {owner}, mode {stat.st_mode & 0o777:04o})"
    return UserError(f"{path}: a cache {what} you cannot read{whose}: ask its owner to make it readable (or remove "
                     "it), or set HF_DATASETS_CACHE to a folder of your own; users who share a cache folder each need "
                     "umask 002, in a folder of their group with the setgid bit (chmod 2775)")


_FINGERPRINTS: dict[str, str] = {}  # sha256 of what tokenizer_fingerprint reads -> its fingerprint


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()[:16]
    # kept beside tokenizer.json: which end truncation cuts, whether token_type_ids are given
    text, beside = backend.to_str(), [tokenizer.truncation_side, list(tokenizer.model_input_names)]
    # to_str takes milliseconds, the canonical form below a tenth of a second (a vocabulary's JSON, sorted):
    # that once per tokenizer state, not once per split and run
    seen = hashlib.sha256(json.dumps([text, beside]).encode()).hexdigest()
    if seen not in _FINGERPRINTS:
        spec = json.loads(text)  # every call rewrites the truncation/padding settings: leave them out of the key
        spec.pop("truncation", None), spec.pop("padding", None)
        _FINGERPRINTS[seen] = hashlib.sha256(json.dumps([spec, *beside], sort_keys=True).encode()).hexdigest()[:16]
    return _FINGERPRINTS[seen]


def remove_stale_files(older_than: float = 86400.0) -> None:
    """Remove what a process killed mid-way (kill -9, out of memory) leaves in the cache folder, once it is a day
    old: examples read into chunk files (.reading-*) or spilled for the tokenising processes (.examples-*), about
    the size of the data file, and datasets' unfinished tokenised parts (tmp*), up to the size of an entry. By age,
    not by whether the process lives: a cache folder may be shared by machines and containers whose processes this
    one cannot see (a file another run writes is newer, and one it has open stays readable). One listing of the
    folder, so cache hits sweep too."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(cache_dir()) as entries:  # (no cache folder yet)
        for entry in entries:
            if entry.name.startswith((".reading-", ".examples-", "tmp")):
                with contextlib.suppress(OSError):  # gone meanwhile, or another user's
                    if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                        os.unlink(entry.path)
