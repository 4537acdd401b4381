"""mtnlp: multi-task fine-tuning of one shared transformers encoder with several task heads."""

# The classes load on first use: `mtnlp --help` and recipe errors must not wait seconds for torch and
# transformers to import.
from typing import TYPE_CHECKING

_LAZY = {"MultiTaskConfig": "modeling", "MultiTaskModel": "modeling", "MultiTaskPipeline": "pipeline",
         "TruncationWarning": "pipeline", "UserError": "errors"}
if TYPE_CHECKING:  # what type checkers and IDEs see of the lazy names
    from .errors import UserError
    from .modeling import MultiTaskConfig, MultiTaskModel
    from .pipeline import MultiTaskPipeline, TruncationWarning

__all__ = ["MultiTaskConfig", "MultiTaskModel", "MultiTaskPipeline", "TruncationWarning", "UserError"]  # (_LAZY's)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mtnlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too (dir(), tab completion), which the module holds only once used."""
    return sorted({*globals(), *__all__})
