"""The one exception type for a user's mistake: the CLI prints it as one line and exits 2. And what a user sees
of other problems: their causes, and libraries' log lines they cannot act on, kept quiet."""

import contextlib
import logging


class UserError(Exception):
    """Bad input from the user (file, recipe, command line). str() is the whole message."""


def outside_mtnlp() -> int:
    """warnings.warn's stacklevel for the first caller outside mtnlp, called in the warning function's own
    warn(...): a warning names the user's line, however deep in mtnlp it is raised."""
    import os
    import sys

    here, level, frame = os.path.dirname(__file__) + os.sep, 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(here):
        level, frame = level + 1, frame.f_back
    return level


class NotFound(UserError, FileNotFoundError):
    """A model (folder, hub repository or cached copy) that is not there, or cannot be reached. Also a
    FileNotFoundError, as transformers' from_pretrained raises an OSError there: `except OSError` catches both."""


class NoRevision(UserError):
    """A hub repository without the revision asked for."""


def at(source, line) -> str:
    """Where an example comes from, for an error message: `file:12` for a line number (also `file:12: item 3`,
    a JSON array's item), `name: row 3` for a described place (a hub split's row)."""
    return f"{source}:{line}" if isinstance(line, int) or line[:1].isdigit() else f"{source}: {line}"


def first_line(error: Exception) -> str:
    """An exception's message cut to its first line (libraries add hints and tracebacks below it)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def causes(error: BaseException):
    """The error and the errors it was raised from or during, innermost last."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def offline_miss(error: BaseException) -> str | None:
    """What to say when a hub id is not in the local cache and HF_HUB_OFFLINE forbids downloading it; else None."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    if constants.HF_HUB_OFFLINE and any(isinstance(c, LocalEntryNotFoundError) for c in causes(error)):
        return "not in the local hub cache, and HF_HUB_OFFLINE is set: nothing is downloaded"
    return None


@contextlib.contextmanager
def quiet_loggers(*names: str | None):
    """The named loggers (None: the root logger) log only errors inside the block, as they did after it."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def lfs_pointer(start: bytes, what: str) -> str | None:
    """What to say of a file (its first 512 bytes or more) that is a Git LFS pointer (a clone made without
    git-lfs: three short lines, nothing else), else None."""
    import re

    if re.fullmatch(rb"version https://git-lfs\.github\.com/spec/v1\r?\noid sha256:[0-9a-f]{64}\r?\nsize [0-9]+\r?\n?",
                    start):
        return (f"a Git LFS pointer, not the {what}: the repository was cloned without its large files (`git lfs "
                "pull` in it fetches them)")
    return None


def require(module: str, extra: str, what: str) -> None:
    """An optional package `what` needs: a missing one is a user error naming mtnlp's extra that installs it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{what} needs {module}: pip install 'mtnlp[{extra}]'")
