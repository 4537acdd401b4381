"""mtnlp: multi-task fine-tuning of one shared transformers encoder with several task heads."""

# The classes load on first use: `mtnlp --help` and recipe errors must not wait seconds for torch and
# transformers to import.
_LAZY = {"MultiTaskConfig": "modeling", "MultiTaskModel": "modeling", "MultiTaskPipeline": "pipeline",
         "TruncationWarning": "pipeline"}

__all__ = list(_LAZY)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mtnlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too (dir(), tab completion), which the module holds only once used."""
    return sorted({*globals(), *__all__})
