"""The task types: one module each; adding a type is a new module, one line here, and its tests."""

from __future__ import annotations

from .base import TaskType
from .classification import Classification
from .extractive_qa import ExtractiveQA
from .multilabel import Multilabel
from .multiple_choice import MultipleChoice
from .regression import Regression
from .tagging import Tagging

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), Regression(), Tagging(), Multilabel())}
TASK_TYPES[MultipleChoice.name] = MultipleChoice()

TASK_TYPES[ExtractiveQA.name] = ExtractiveQA()


def task_type(name: str) -> TaskType:
    return TASK_TYPES[name]
