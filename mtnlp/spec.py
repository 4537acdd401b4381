"""pydantic building blocks of a recipe: strict sections that forbid unknown keys, the number
types with their ranges, the data section and the part of a task section every task type shares
(each type adds its own fields: mtnlp/tasks)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

LINES_FILES = ("text", "labels", "text_pair")  # the keys of a split given as a mapping (format lines)
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".conll": "conll",
                  ".conllu": "conllu", ".txt": "conll", ".iob": "conll", ".bio": "conll",
                  ".label": "label_text"}  # a data file's format where data.format does not name it


def _number(value):
    """PyYAML reads 3e-5 (no dot) as a string: take numeric strings as numbers."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # what a precision resolves to; "no" is one more spelling of fp32
PRECISION_SPELLINGS = (*PRECISIONS, "no")


def precision_name(value) -> str:
    """'auto', 'bf16', 'fp16' or 'fp32' for a user's precision, in any case; 'no', 'fp32' and YAML's false are
    fp32. The one rule of --precision, training.mixed_precision and MultiTaskPipeline(precision=)."""
    expected = f"(expected one of: {', '.join(PRECISION_SPELLINGS)})"
    if value is True:  # YAML 1.1 reads an unquoted yes or on as true
        raise ValueError(f"true (YAML reads an unquoted yes or on so) names no precision {expected}")
    name = "fp32" if value is False else value.lower() if isinstance(value, str) else None
    name = "fp32" if name == "no" else name
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r} {expected}")
    return name


def _listed(value):
    return [value] if isinstance(value, str) else value  # `report_to: tensorboard` means a list of one


def _string_keys(value):
    """label_names with string keys ({0: negative}); a YAML boolean (unquoted yes/no) or two keys that
    are one string ({0: a, "0": b}) is an error, not a silent change."""
    if not isinstance(value, dict):
        return value
    named, given = {}, {}  # label -> name, label -> the key as written
    for key, name in value.items():
        for item, what in ((key, "key"), (name, "name")):
            if isinstance(item, bool):
                raise ValueError(f"the {what} {str(item).lower()} is a boolean: YAML reads an unquoted yes, no, on, "
                                 "off, true or false as one; quote the label, e.g. \"yes\"")
        if str(key) in given:
            raise ValueError(f"the keys {given[str(key)]!r} and {key!r} are the same label {str(key)!r}")
        named[str(key)], given[str(key)] = name, key
    return named


Float = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Positive = Annotated[float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, BeforeValidator(_number), Field(ge=0, lt=1, allow_inf_nan=False)]  # [0, 1)
Count = Annotated[int, Field(gt=0)]

# no control character either (a backspace in a name printed as nothing, or misaligned the tables)
TASK_NAME = r'[^\s.,="\\\x00-\x1f\x7f-\x9f]+'  # (torch's ONNX exporter writes the names into Python source)
SAVED_TASK_NAME = r"[^\s.,=]+"  # what an older mtnlp allowed ('"', '\'): an evaluation recipe names a saved model's heads
# names that torch's nn.ModuleDict / nn.ParameterDict (heads, task layers, LoRA's embeddings) have for their own
# (their public attributes in torch 2.13, refused before any data is read; training checks again with the torch it runs)
TORCH_DICT_NAMES = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children clear compile copy cpu cuda double
    dump_patches eval extra_repr float forward fromkeys get get_buffer get_extra_state get_parameter
    get_submodule half ipu items keys load_state_dict modules mtia named_buffers named_children named_modules
    named_parameters parameters pop popitem register_backward_hook register_buffer register_forward_hook
    register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule
    setdefault share_memory state_dict to to_empty train training type update values xpu zero_grad
""".split())


def _label_weights(value):
    """label_weights: balanced, or a non-empty {label: weight} of positive numbers (keys as label_names')."""
    if value is None or value == "balanced":
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected balanced or a mapping {{label: weight}}, got {value!r}")
    if not value:
        raise ValueError("an empty mapping: give {label: weight}, or leave label_weights out")
    for label, weight in value.items():
        if isinstance(weight, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", weight.strip()):
            weight = float(weight)  # 1e1: a string to YAML 1.1, as lr's 3e-5
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
            raise ValueError(f"the weight of {label!r} must be a positive number, got {weight!r}")
    _string_keys(value)  # a boolean key, or two keys that are one label: an error
    return {str(label): float(weight) for label, weight in value.items()}


# classification / multilabel `label_weights`: "balanced" (from the training split's counts) or {label: weight}
LabelWeights = Annotated[Union[Literal["balanced"], dict[str, float], None], BeforeValidator(_label_weights)]
Names = Annotated[list[str], BeforeValidator(_listed)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def changed(section: Spec, key: str) -> bool:
    """Whether a key of a recipe section holds another value than its default (a resolved recipe lists every key, so
    whether it was given says less)."""
    return getattr(section, key) != type(section).model_fields[key].get_default(call_default_factory=True)


class DataSpec(Spec):
    """Where a task's examples come from and which columns hold what."""

    hub: str | None = None  # a datasets hub id, e.g. "glue"; splits then name hub splits
    config: str | None = None  # hub dataset config, e.g. "sst2"
    # hub only: read the splits as streams (IterableDataset); nothing is downloaded up front and the
    # training split is never held whole. Its size (for task sampling) comes from the data set's
    # metadata, else from `size`; its labels from its ClassLabel feature, else from label_names.
    streaming: bool = False
    size: Count | None = None  # examples in a streamed training split, when the metadata does not say
    shuffle_buffer: Count = 10_000  # a streamed training split is shuffled within a buffer of this many rows
    # default: from the file suffix. label_text: one example per line, "LABEL text..." (e.g. TREC).
    # lines: a split is {text: FILE, labels: FILE, text_pair?: FILE}, line i of each file is example i
    format: Literal["csv", "tsv", "json", "jsonl", "conll", "conllu", "label_text", "lines"] | None = None
    train: str | dict[str, str] | None = None  # a path, or (format lines) a mapping of LINES_FILES to paths
    validation: str | dict[str, str] | None = None
    test: str | dict[str, str] | None = None
    validation_from_train: Annotated[Float, Field(gt=0, lt=1)] | None = None  # carve this fraction of train (data.CARVE_SEED)
    header: bool = True  # csv/tsv: false = no header row; the columns below are then 0-based positions
    # csv/tsv: fields may be quoted ("a, b"; "" for a quote in one). Default: csv yes, tsv no (GLUE-style
    # TSV files hold bare quotes); true for a TSV written with quoting (pandas, datasets' to_csv)
    quoted: bool | None = None
    text_column: str | int = "text"
    text_pair_column: str | int | None = None  # second text column for sentence-pair tasks
    label_column: str | int = "label"
    token_column: int | str | None = None  # tagging: conll column index (default 0) / json key ("tokens")
    tag_column: int | str | None = None  # tagging: conll index (default -1), conllu "upos"|"xpos", json key
    encoding: str = "utf-8"
    # rename raw labels, e.g. {0: negative, 1: positive}
    label_names: Annotated[dict[str, str], BeforeValidator(_string_keys)] | None = None
    label_sep: str | None = None  # keep each label only up to this separator, e.g. ":" for TREC-6 "DESC:manner"

    @field_validator("label_sep")
    @classmethod
    def _a_separator(cls, value):
        if value == "":  # YAML reads a bare | or > (a block scalar's marker) as an empty text
            raise ValueError("an empty separator (YAML reads a bare | or > as empty text: quote it, '|')")
        return value


def unread(*fields: str, why: str):
    """A data section's validator of keys its task type does not read: a value other than the key's default is an
    error saying `why` (a resolved recipe lists the defaults)."""
    def check(cls, value, info):
        if value != cls.model_fields[info.field_name].default:
            raise ValueError(why)
        return value

    return field_validator(*fields)(classmethod(check))


class TextData(DataSpec):
    """The data section of a type that reads a text (pair) and a label per example: every type but tagging."""

    _tagging_only = unread("token_column", "tag_column",
                           why="applies to tagging tasks only; this task reads text_column and label_column")


class TagData(DataSpec):
    """A tagging task's data section: tokens and tags, no text or label columns (label_names and
    label_sep apply to the tags)."""

    _not_tagging = unread("text_column", "text_pair_column", "label_column",
                          why="does not apply to tagging, which reads token_column and tag_column (CoNLL-U: tag_column "
                              "upos or xpos)")


class TaskSpec(Spec):
    """A task section's keys every type has; a type's own Spec (mtnlp/tasks) names its `type` and adds keys."""

    type: str
    data: TextData
    metrics: Names | None = None  # default per type; the first is the task's main metric
    loss_weight: Annotated[Float, Field(ge=0)] = 1.0
    dropout: Fraction = 0.1


