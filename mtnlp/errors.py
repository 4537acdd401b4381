"""The one exception type for a user's mistake: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (file, recipe, command line). str() is the whole message."""


def where(path, line=None) -> str:
    return f"{path}:{line}" if line is not None else str(path)
