"""Recipes: a YAML file read into typed dataclasses, with dotted `key=value` overrides.

Every key is checked: an unknown key, a wrong type or an out-of-range value is a UserError that
names the recipe file, its line and the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import UserError

TASK_TYPES = ("classification", "regression", "tagging")
SAMPLERS = ("proportional", "uniform", "temperature", "annealed", "round_robin")
METRICS = {  # metric name -> task types it applies to
    "accuracy": ("classification",),
    "f1": ("classification",),
    "pearsonr": ("regression",),
    "spearmanr": ("regression",),
    "mse": ("regression",),
    "seqeval": ("tagging",),
    "token_accuracy": ("tagging",),
}


@dataclass
class DataSpec:
    """Where a task's examples come from and which columns hold what."""

    hub: str | None = None  # a datasets hub id, e.g. "glue"; splits then name hub splits
    config: str | None = None  # hub dataset config, e.g. "sst2"
    # default: from the file suffix. label_text: one example per line, "LABEL text..." (e.g. TREC)
    format: Literal["csv", "tsv", "json", "jsonl", "conll", "conllu", "label_text"] | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    validation_from_train: float | None = None  # carve this fraction of train as validation (seeded)
    text_column: str = "text"
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str = "label"
    token_column: int | str | None = None  # tagging: conll column index (default 0) / json key ("tokens")
    tag_column: int | str | None = None  # tagging: conll index (default -1), conllu "upos"|"xpos", json key
    encoding: str = "utf-8"
    label_names: dict[str, str] | None = None  # rename raw labels, e.g. {0: negative, 1: positive}
    label_sep: str | None = None  # keep each label only up to this separator, e.g. ":" for TREC-6 "DESC:manner"


@dataclass
class TaskSpec:
    type: Literal["classification", "regression", "tagging"]
    data: DataSpec
    metrics: list[str] | None = None  # default per type; the first is the task's main metric
    loss_weight: float = 1.0
    dropout: float = 0.1


@dataclass
class ModelSpec:
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int = 128
    # transfer: start from a trained mtnlp run (its model/ folder) or model folder / hub id instead of `encoder`
    init_from: str | None = None
    init_heads: bool = True  # with init_from: also keep heads whose task name, type and labels match


@dataclass
class SamplingSpec:
    strategy: Literal["proportional", "uniform", "temperature", "annealed", "round_robin"] = "temperature"
    temperature: float = 2.0
    group_by_length: bool = True


@dataclass
class MTLSpec:
    """How tasks share the model and combine in an update (see the README's guide)."""

    weighting: Literal["static", "uncertainty", "dwa"] = "static"  # task loss weights (weighting.py)
    weighting_lr: float = 1.0e-3  # learning rate of uncertainty's log-variances
    dwa_temperature: float = 2.0
    dwa_window: int = 50  # DWA compares mean task losses over windows of this many steps
    gradient: Literal["sum", "pcgrad"] = "sum"  # pcgrad: each update takes one batch of EVERY task
    sharing: Literal["hard", "lora", "task_layers"] = "hard"
    freeze_encoder: bool = False  # train only adapters / task layers and heads
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    task_layers: int = 2  # sharing: task_layers — the top k encoder layers are copied per task


@dataclass
class TrainingSpec:
    steps: int = 1000  # optimizer updates
    batch_size: int = 32
    batch_tokens: int | None = None  # fill each training batch up to this many padded tokens instead of batch_size rows
    eval_batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of steps
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    # auto: bf16 where the hardware runs it natively, fp16 on a CUDA device without bf16, else fp32
    # (precision.py); "no" and YAML's false mean fp32
    mixed_precision: Literal["auto", "bf16", "fp16", "fp32", "no"] = "auto"
    dataloader_workers: int | None = None  # batch-building worker processes; default 2 on CUDA, 0 on CPU
    seed: int = 42
    eval_every: int | None = None  # steps; None = only at the end
    save_every: int | None = None  # steps; None = no checkpoints
    keep_checkpoints: int = 2
    early_stopping_patience: int | None = None  # evaluations without improvement
    resume_from: str | None = None  # a checkpoint dir or "latest"
    log_every: int = 10
    report_to: list[Literal["tensorboard"]] = field(default_factory=list)
    cpu: bool = False  # force CPU even when a GPU is present


@dataclass
class Recipe:
    tasks: dict[str, TaskSpec]
    name: str = "run"
    output_dir: str | None = None  # default runs/<name>
    data_dir: str | None = None  # relative data paths resolve here (default: the recipe's folder)
    model: ModelSpec = field(default_factory=ModelSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    mtl: MTLSpec = field(default_factory=MTLSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    push_to_hub: bool = False  # push the best model after training (token: HF_TOKEN or `hf auth login`)
    hub_repo_id: str | None = None  # e.g. "my-org/my-model"; required with push_to_hub
    hub_private: bool = False
    source: str = field(default="<recipe>", metadata={"internal": True})  # the file it came from
    key_lines: dict = field(default_factory=dict, repr=False, metadata={"internal": True})  # dotted key -> line


# ---------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and records each key's line."""


def _construct_mapping(loader, node, deep=False):
    mapping, lines = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise UserError(f"{loader.name}:{key_node.start_mark.line + 1}: duplicate key '{key}'")
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _Mapping(mapping, lines)


class _Mapping(dict):
    def __init__(self, data, lines):
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read recipe: {e}") from None
    loader = _LineLoader(text)
    loader.name = str(path)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping of keys to values")
    for item in overrides:
        apply_override(raw, item)
    recipe = _convert(raw, Recipe, "", str(path), None)
    recipe.source = str(path)
    recipe.key_lines = dict(_key_lines(raw))
    check(recipe)
    return recipe


OVERRIDE = "command-line override"  # stands in for a line number
CWD_PATH_KEYS = {"data_dir", "output_dir", "training.resume_from", "model.init_from"}


def _key_lines(node, prefix=""):
    for key, line in getattr(node, "lines", {}).items():
        dotted = f"{prefix}{key}"
        yield dotted, line
        yield from _key_lines(node[key], dotted + ".")


def apply_override(raw: dict, item: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UserError(f"override '{item}': expected key=value, e.g. training.lr=3e-5")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = _Mapping({}, {})
        node = node[part]
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if key in CWD_PATH_KEYS and isinstance(parsed, str) and parsed != "latest":
        parsed = str(Path(parsed).expanduser().absolute())  # paths typed on the command line are cwd-relative
    node[parts[-1]] = parsed
    if isinstance(node, _Mapping):
        node.lines[parts[-1]] = OVERRIDE


def _convert(value: Any, tp: Any, key: str, src: str, line: Any) -> Any:
    where = f"{_at(src, line)}: {key}" if key else _at(src, line)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, src, line)
            except UserError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping of keys, got {value!r}")
        lines = getattr(value, "lines", {})
        fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
        kwargs = {}
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in fields:
                raise UserError(f"{_at(src, lines.get(k, line))}: unknown key '{sub}' (known: {', '.join(fields)})")
            kwargs[k] = _convert(v, typing.get_type_hints(tp)[k], sub, src, lines.get(k, line))
        for name, f in fields.items():
            if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                sub = f"{key}.{name}" if key else name
                raise UserError(f"{_at(src, line)}: missing required key '{sub}'")
        return tp(**kwargs)
    if origin is Literal:
        if isinstance(value, bool) and "no" in typing.get_args(tp):
            value = "no" if value is False else value  # YAML 1.1 reads an unquoted no/off as false
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise UserError(f"{_at(src, line)}: {key}: unknown value {value!r} (expected one of: {choices})")
        return value
    if origin is list:
        if not isinstance(value, list):
            value = [value] if isinstance(value, str) else value
        if not isinstance(value, list):
            raise UserError(f"{_at(src, line)}: {key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", src, line) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{_at(src, line)}: {key}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        lines = getattr(value, "lines", {})
        return {str(k): _convert(v, val_tp, f"{key}.{k}", src, lines.get(k, line)) for k, v in value.items()}
    if tp is float and not isinstance(value, bool):
        try:  # PyYAML reads 3e-5 (no dot) as a string
            number = float(value) if isinstance(value, (int, float, str)) else None
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise UserError(f"{_at(src, line)}: {key}: must be a finite number, got {value!r}")
            return number
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise UserError(f"{_at(src, line)}: {key}: expected {tp.__name__}, got {value!r}")


def _at(src: str, line: Any) -> str:
    if isinstance(line, int):
        return f"{src}:{line}"
    if line == OVERRIDE:
        return f"{src} ({OVERRIDE})"
    return src


def check(recipe: Recipe) -> None:
    """Range and consistency checks the types alone cannot express."""
    def fail(key, msg):
        raise UserError(f"{_at(recipe.source, recipe.key_lines.get(key))}: {key}: {msg}")

    if not recipe.tasks:
        fail("tasks", "at least one task is required")
    for name, task in recipe.tasks.items():
        data = task.data
        if data.train is None:
            fail(f"tasks.{name}.data.train", "a training split is required")
        if data.validation_from_train is not None:
            if not 0 < data.validation_from_train < 1:
                fail(f"tasks.{name}.data.validation_from_train", "must be between 0 and 1")
            if data.validation is not None:
                fail(f"tasks.{name}.data.validation_from_train", "give either validation or validation_from_train")
        for metric in task.metrics or []:
            if metric not in METRICS:
                fail(f"tasks.{name}.metrics", f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
            if task.type not in METRICS[metric]:
                fail(f"tasks.{name}.metrics", f"metric '{metric}' does not apply to a {task.type} task")
        if task.metrics == []:
            fail(f"tasks.{name}.metrics", "give at least one metric or leave the key out")
        if task.loss_weight < 0:
            fail(f"tasks.{name}.loss_weight", "must be >= 0")
        if not 0 <= task.dropout < 1:
            fail(f"tasks.{name}.dropout", "must be in [0, 1)")
    if recipe.push_to_hub and not recipe.hub_repo_id:
        fail("hub_repo_id", "push_to_hub needs hub_repo_id (e.g. my-org/my-model)")
    t = recipe.training
    if t.mixed_precision == "no":
        t.mixed_precision = "fp32"
    if t.dataloader_workers is not None and t.dataloader_workers < 0:
        fail("training.dataloader_workers", f"must be >= 0, got {t.dataloader_workers}")
    positive = {"steps": t.steps, "batch_size": t.batch_size, "eval_batch_size": t.eval_batch_size,
                "grad_accum": t.grad_accum, "log_every": t.log_every, "keep_checkpoints": t.keep_checkpoints,
                "lr": t.lr}
    for key, value in positive.items():
        if value <= 0:
            fail(f"training.{key}", f"must be > 0, got {value}")
    if t.batch_tokens is not None and t.batch_tokens < recipe.model.max_length:
        fail("training.batch_tokens", f"must be at least model.max_length ({recipe.model.max_length}), got {t.batch_tokens}")
    for key in ("eval_every", "save_every", "early_stopping_patience"):
        value = getattr(t, key)
        if value is not None and value <= 0:
            fail(f"training.{key}", f"must be > 0, got {value}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        fail("training.max_grad_norm", f"must be > 0 (or null for no clipping), got {t.max_grad_norm}")
    if not 0 <= t.warmup < 1:
        fail("training.warmup", f"must be a fraction in [0, 1), got {t.warmup}")
    if t.weight_decay < 0:
        fail("training.weight_decay", "must be >= 0")
    if recipe.sampling.temperature <= 0:
        fail("sampling.temperature", f"must be > 0, got {recipe.sampling.temperature}")
    m = recipe.mtl
    for key in ("weighting_lr", "dwa_temperature", "dwa_window", "lora_r", "lora_alpha", "task_layers"):
        if getattr(m, key) <= 0:
            fail(f"mtl.{key}", f"must be > 0, got {getattr(m, key)}")
    if not 0 <= m.lora_dropout < 1:
        fail("mtl.lora_dropout", "must be in [0, 1)")
    if m.freeze_encoder and m.sharing == "hard":
        fail("mtl.freeze_encoder", "with hard sharing only the heads would train; use sharing: lora or task_layers")
    if m.gradient == "pcgrad" and len(recipe.tasks) < 2:
        fail("mtl.gradient", "pcgrad needs at least two tasks")
    if m.gradient == "pcgrad" and m.freeze_encoder:
        fail("mtl.gradient", "pcgrad projects the shared encoder's gradients, but freeze_encoder leaves none")
    if recipe.model.max_length < 8:
        fail("model.max_length", "must be >= 8")


def sharing_config(m: MTLSpec) -> dict | None:
    """The model's config.sharing for the recipe's mtl section."""
    if m.sharing == "lora":
        return {"type": "lora", "r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout,
                "targets": list(m.lora_targets)}
    if m.sharing == "task_layers":
        return {"type": "task_layers", "layers": m.task_layers}
    return None


def default_metrics(task: TaskSpec, labels: list[str]) -> list[str]:
    if task.metrics:
        return task.metrics
    if task.type == "classification":
        return ["accuracy", "f1"]
    if task.type == "regression":
        return ["pearsonr", "spearmanr", "mse"]
    iob = any(label[:2] in ("B-", "I-") for label in labels)
    return ["seqeval"] if iob else ["token_accuracy"]


def resolve_path(recipe: Recipe, path: str) -> Path:
    """A data path as written in the recipe, relative to data_dir (or the recipe's own folder)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    base = Path(recipe.source).parent
    if recipe.data_dir is not None:
        base = base / Path(recipe.data_dir).expanduser()
    return base / p


def to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (written to the run directory)."""
    out = dataclasses.asdict(recipe)
    out.pop("source"), out.pop("key_lines")
    return out
