"""mtnlp: multi-task fine-tuning of one shared transformers encoder with several task heads."""

from .modeling import MultiTaskConfig, MultiTaskModel

__all__ = ["MultiTaskConfig", "MultiTaskModel"]
__version__ = "0.1.0"
