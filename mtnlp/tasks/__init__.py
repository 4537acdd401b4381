"""The task types: one module each; adding a type is a new module, one line here, and its tests."""

from __future__ import annotations

from .base import TaskType
from .classification import Classification
from .extractive_qa import ExtractiveQA
from .multilabel import Multilabel
from .multiple_choice import MultipleChoice
from .regression import Regression
from .tagging import Tagging

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), Regression(), Tagging(), Multilabel(),
                                                         MultipleChoice(), ExtractiveQA())}


def task_type(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:  # e.g. a model trained with a type an extension of mtnlp added
        from ..errors import UserError

        raise UserError(f"task type {name!r} is not one this mtnlp knows ({', '.join(TASK_TYPES)}): the model or "
                        "recipe needs the mtnlp (or the extension of it) that defines it; a type a script adds: run "
                        "the command through a script that adds it first (README, Recipes)") from None
