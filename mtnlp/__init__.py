"""mtnlp: multi-task fine-tuning of one shared transformers encoder with several task heads."""

from .modeling import MultiTaskConfig, MultiTaskModel
from .pipeline import MultiTaskPipeline

__all__ = ["MultiTaskConfig", "MultiTaskModel", "MultiTaskPipeline"]
__version__ = "0.1.0"
