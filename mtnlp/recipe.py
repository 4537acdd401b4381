"""Recipes: a YAML file read into typed pydantic models, with dotted `key=value` overrides.

Every key is checked: an unknown key, a wrong type or an out-of-range value is a UserError that
names the recipe file, its line and the dotted key. pydantic checks types and ranges (strict: no
silent conversions); check() adds what relates several keys.
"""

from __future__ import annotations

import copy
import datetime
import importlib.util
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError

from .encoders import PAGE_ID, URL, is_local_path, url_problem
from .folders import ONNX_INPUTS
from .spec import (LINES_FILES, SAVED_TASK_NAME, SUFFIX_FORMATS, TASK_NAME, TORCH_DICT_NAMES, Count, Float, Fraction,
                   Names, Positive, Spec, TaskSpec, _listed, changed, precision_name)
from .metrics import METRICS
from .sampling import STRATEGIES
from .tasks import TASK_TYPES, task_type
from .tasks.base import look_alike
from .weighting import WEIGHTINGS
from .gradients import GRADIENT_METHODS

from .errors import UserError, first_line, require

# a task section is its type's Spec (mtnlp/tasks), chosen by its `type:` key: the types registered when this
# module is imported (a union pydantic builds once)
RECIPE_TYPES = tuple(TASK_TYPES)
TaskSpecs = Annotated[Union[tuple(t.Spec for t in TASK_TYPES.values())], Field(discriminator="type")]


class ModelSpec(Spec):
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: Annotated[int, Field(ge=8, le=2**20)] = 128  # (the tokenizer's limit is 2^64; the encoder's is checked)
    # transfer: start from a trained mtnlp run (its model/ folder) or model folder / hub id instead of `encoder`
    init_from: str | None = None
    init_revision: str | None = None  # with init_from a hub id: its branch, tag or commit (default: main)
    init_heads: bool = True  # with init_from: also keep heads whose task name, type and labels match
    # with init_from of a soft-shared model (per-task adapters or top layers): the source task whose encoder
    # to start from (default: the first task here that the source has)
    init_encoder_of: str | None = None


class SamplingSpec(Spec):
    strategy: str = "temperature"  # a name in sampling.py's STRATEGIES (check() checks it for training)
    temperature: Positive = 2.0
    group_by_length: bool = True


class MTLSpec(Spec):
    """How tasks share the model and combine in an update (see the README's guide)."""

    weighting: str = "static"  # task loss weights: a name in weighting.py's WEIGHTINGS (checked for training)
    weighting_lr: Positive = 1.0e-3  # learning rate of uncertainty's log-variances
    dwa_temperature: Positive = 2.0
    dwa_window: Count = 50  # DWA compares mean task losses over windows of this many steps
    gradient: str = "sum"  # a name in gradients.py's GRADIENT_METHODS (checked for training)
    cagrad_c: Annotated[Float, Field(ge=0, lt=1)] = 0.5  # CAGrad's radius around the average gradient (0: the average)
    sharing: Literal["hard", "lora", "task_layers"] = "hard"
    freeze_encoder: bool = False  # train only adapters / task layers and heads
    lora_r: Count = 8
    lora_alpha: Positive = 16.0
    lora_dropout: Fraction = 0.1
    lora_targets: Names = Field(default_factory=lambda: ["query", "key", "value", "dense"], min_length=1)
    task_layers: Count = 2  # sharing: task_layers — the top k encoder layers are copied per task


class TrainingSpec(Spec):
    steps: Count = 1000  # optimizer updates
    batch_size: Count = 32
    # fill each training batch up to this many padded tokens instead of batch_size rows
    batch_tokens: Count | None = None
    eval_batch_size: Count = 128
    lr: Positive = 5e-5
    # the task heads' learning rate (default: lr). Heads start untrained - and so does the pooler of
    # many sentence-embedding checkpoints (all-MiniLM-L6-v2's: tiny weights, outputs ~0.05): with many
    # rare labels (GoEmotions) the head then stays at the label priors unless it learns faster (1e-3)
    head_lr: Positive | None = None
    weight_decay: Annotated[Float, Field(ge=0)] = 0.01
    warmup: Fraction = 0.1  # fraction of steps
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"  # after warm-up: decay to 0 (linear, cosine), or none
    grad_accum: Count = 1
    max_grad_norm: Positive | None = 1.0  # null: no clipping
    # keep only each encoder layer's input and run its forward again in the backward pass: far less activation
    # memory for long inputs and large encoders, for one more forward pass (transformers' activation checkpointing)
    gradient_checkpointing: bool = False
    # auto: bf16 where the hardware runs it natively, fp16 on a CUDA device without bf16, else fp32
    # (precision.py); "no" and YAML's false mean fp32; any case (spec.precision_name: the CLI's and pipeline's rule)
    mixed_precision: Annotated[str, BeforeValidator(precision_name)] = "auto"
    # batch-building worker processes; default 2 on CUDA, 0 on CPU
    dataloader_workers: Annotated[int, Field(ge=0)] | None = None
    # processes that tokenise a split of 20,000+ examples (the first run; later ones read the cache); default: the
    # cores this process may use (data.usable_cores)
    num_proc: Count | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42  # numpy's seeds are 32-bit
    eval_every: Count | None = None  # steps; None = only at the end
    save_every: Count | None = None  # steps; None = no checkpoints
    keep_checkpoints: Count = 2
    early_stopping_patience: Count | None = None  # evaluations without improvement
    resume_from: str | None = None  # a checkpoint dir or "latest"
    log_every: Count = 10
    report_to: Annotated[list[Literal["tensorboard"]], BeforeValidator(_listed)] = Field(default_factory=list)
    cpu: bool = False  # force CPU even when a GPU is present
    # seconds launched processes wait for each other, e.g. while the first tokenises the data (NCCL's default is
    # 10 minutes, gloo's 30); the transformers Trainer's ddp_timeout
    ddp_timeout: Annotated[int, Field(gt=0, le=10**9)] = 1800  # (Python's timedelta ends at 8.6e13 s)


class Recipe(Spec):
    tasks: dict[str, TaskSpecs]
    name: str = "run"
    output_dir: str | None = None  # default runs/<name>
    # a new run in an output_dir that holds another run's checkpoints/ or model/ replaces them (else: an error)
    overwrite_output_dir: bool = False
    data_dir: str | None = None  # relative data paths resolve here (default: the recipe's folder)
    model: ModelSpec = Field(default_factory=ModelSpec)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    mtl: MTLSpec = Field(default_factory=MTLSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    push_to_hub: bool = False  # push the best model after training (token: HF_TOKEN or `hf auth login`)
    hub_repo_id: str | None = None  # e.g. "my-org/my-model"; required with push_to_hub
    hub_private: bool = False
    _source: str = PrivateAttr(default="<recipe>")  # the file it came from
    _key_lines: dict = PrivateAttr(default_factory=dict)  # dotted key -> line (or OVERRIDE)
    _training: bool = PrivateAttr(default=True)  # read for training (else for mtnlp evaluate: a trained model's)

    @property
    def source(self) -> str:
        return self._source

    @property
    def key_lines(self) -> dict:
        return self._key_lines

    def where(self, key: str) -> str:
        """`file:line` of a dotted key, for an error message about it."""
        return _at(self.source, self._key_lines.get(key))


# ---------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and records each key's line. An alias (`data: *common`)
    is a copy of its anchor's value: an override of one task must not change another. `override`:
    the `key=value` whose value is read (errors name it; its keys' line is OVERRIDE)."""

    def __init__(self, text: str, name: str, override: str | None = None, keys: list[str] = ()):
        super().__init__(text)
        self.name, self.override = name, override
        self.keys = list(keys)  # the dotted key of the mapping being read

    def where(self, node) -> str:
        return f"override '{self.override}'" if self.override else f"{self.name}:{node.start_mark.line + 1}"

    def where_now(self) -> str:
        return f"override '{self.override}'" if self.override else self.name

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects:
            value = self.constructed_objects[node]
            self.copied += _values(value, MAX_ALIAS_VALUES - self.copied)
            if self.copied > MAX_ALIAS_VALUES:  # nested aliases grow exponentially ("billion laughs")
                raise UserError(f"{self.where(node)}: the aliases of this anchor expand the recipe to more than "
                                f"{MAX_ALIAS_VALUES:,} values")
            return copy.deepcopy(value)
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError) as e:  # `!!int 1e3`, `!!bool maybe`
            raise yaml.constructor.ConstructorError(None, None, f"{node.tag.rsplit(':', 1)[-1]} {node.value!r} cannot be "
                                                    f"read as its tag says ({type(e).__name__})", node.start_mark) from None

    copied = 0  # values copied for aliases so far

    # YAML 1.1 reads 010 as octal (8) and 1:30 (1:30.5) as base 60 (90): no recipe means those
    def construct_yaml_int(self, node):
        if re.fullmatch(r"[-+]?0[0-9_]+", node.value):
            raise UserError(f"{self.where(node)}: {'.'.join(self.keys)}: {node.value} is an octal number to YAML: "
                            f"for the number write {int(node.value.replace('_', '')):d}, without leading zeros; for a "
                            f"text quote it ('{node.value}')")
        self._refuse_base_60(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        self._refuse_base_60(node)
        return super().construct_yaml_float(node)

    def _refuse_base_60(self, node):
        if ":" in node.value:
            raise UserError(f"{self.where(node)}: {'.'.join(self.keys)}: {node.value} is a base-60 number to YAML: "
                            "quote it")


MAX_ALIAS_VALUES = 100_000


def _values(value, limit: int) -> int:
    """How many values (scalars, lists, mappings) `value` holds, counting no further than just past `limit`."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader, node, deep=False):
    _check_merges(loader, node)
    own = sum(key_node.tag != MERGE_TAG for key_node, _ in node.value)
    loader.flatten_mapping(node)  # `<<: *anchor`: the anchor's pairs first, then the mapping's own pairs
    mapping, lines, seen = {}, {}, set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if key is None or isinstance(key, bool):
            raise UserError(f"{loader.where(key_node)}: {'.'.join([*loader.keys, str(key_node.value)])}: YAML reads "
                            f"the key {key_node.value} as {'null' if key is None else str(key).lower()}: quote it")
        if not isinstance(key, Hashable):  # `? [a, b]`: a complex key
            parent = ".".join(loader.keys)
            raise UserError(f"{loader.where(key_node)}: {parent + ': ' if parent else ''}a key must be a name or "
                            f"a number, not {key!r}")
        dotted = ".".join([*loader.keys, str(key)])
        if i >= len(node.value) - own:  # a key written here may replace a merged one, not one written here
            if key in seen:
                raise UserError(f"{loader.where(key_node)}: duplicate key '{dotted}'")
            seen.add(key)
        loader.keys.append(str(key))
        mapping[key] = loader.construct_object(value_node, deep=True)
        loader.keys.pop()
        lines[key] = OVERRIDE if loader.override else key_node.start_mark.line + 1
    return _Mapping(mapping, lines)


def _check_merges(loader, node):
    """One `<<` per mapping, and no key that two of its merged mappings set to different values: which one wins
    differs between PyYAML versions (the first, as YAML says, up to 6.0.3; the last in 6.0.4)."""
    merges = [(key, value) for key, value in node.value if key.tag == MERGE_TAG]
    if len(merges) > 1:
        raise UserError(f"{loader.where(merges[1][0])}: duplicate key '{'.'.join([*loader.keys, '<<'])}': merge "
                        "several mappings with one, <<: [*a, *b]")
    sources = merges[0][1].value if merges and isinstance(merges[0][1], yaml.SequenceNode) else []
    given = {}
    for source in (s for s in sources if isinstance(s, yaml.MappingNode)):
        for key, value in source.value:
            earlier = given.setdefault(key.value, value)
            if earlier is not value and not (isinstance(value, yaml.ScalarNode) and isinstance(earlier, yaml.ScalarNode)
                                             and (earlier.tag, earlier.value) == (value.tag, value.value)):
                raise UserError(f"{loader.where(merges[0][0])}: {'.'.join([*loader.keys, key.value])}: set by two of "
                                f"the merged mappings (lines {earlier.start_mark.line + 1} and "
                                f"{value.start_mark.line + 1}); PyYAML versions differ on which wins: set it in this "
                                "mapping")


def _read_yaml(text: str, name: str, override: str | None = None, keys: list[str] = ()) -> tuple:
    """The document's value (None for none), and the text after that value (comments, which YAML drops)."""
    loader = _LineLoader(text, name, override, keys)
    try:
        node = loader.get_single_node()
        return (None, text) if node is None else (loader.construct_document(node), text[node.end_mark.index:])
    except RecursionError:  # a flow list nested some 200 deep
        raise UserError(f"{loader.where_now()}: the YAML nests deeper than it can be read") from None
    finally:
        loader.dispose()


class _Mapping(dict):
    def __init__(self, data, lines):
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)
_LineLoader.add_constructor("tag:yaml.org,2002:float", _LineLoader.construct_yaml_float)


def installed_recipes() -> list[str]:
    """The recipe scripts and configs installed with mtnlp (recipes/ in the source tree), as `mtnlp recipes` names them."""
    from importlib.resources import files

    root = files("mtnlp.recipes")
    entries = sorted(p.name for p in root.iterdir() if p.name.endswith((".py", ".yaml")) and not p.name.startswith("_"))
    return entries + sorted(f"methods/{p.name}" for p in root.joinpath("methods").iterdir() if p.name.endswith(".yaml"))


def installed_recipe(name: str, entries: list[str] | None = None) -> str | None:
    """The installed recipe a name means (demo, demo.yaml, methods/pcgrad.yaml, pcgrad), if any."""
    entries = installed_recipes() if entries is None else entries
    return next((n for n in (name, f"{name}.py", f"{name}.yaml", f"methods/{name}", f"methods/{name}.yaml")
                 if n in entries), None)


def load_recipe(path: str | Path, overrides: list[str] = (), *, training: bool = True) -> Recipe:
    """A checked recipe; `training`: False for a recipe that only names evaluation data (mtnlp evaluate),
    whose tasks need no training split."""
    if isinstance(overrides, str):  # one override, not a list: read character by character it is nonsense
        raise TypeError(f"overrides: expected a list of key=value strings, got the string {overrides!r}")
    path = Path(path)
    if path.suffix == ".py" and path.is_file():
        raise UserError(f"{path}: a recipe script, not a recipe: run it, `python {path} --config RECIPE.yaml`")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        packaged = installed_recipe(path.name) if path.name.endswith(".yaml") or not path.suffix else None
        copied = Path(packaged or "").name
        hint = (f" (one is installed with mtnlp: `mtnlp recipes copy {packaged}` writes ./{copied}, then "
                f"`mtnlp train {copied}`)" if packaged and packaged.endswith(".yaml") else "")
        if not hint and "=" in path.name:  # `mtnlp train k=v recipe.yaml`
            hint = " (overrides key=value come after the recipe file)"
        raise UserError(f"{path}: recipe file not found{hint}") from None
    except UnicodeDecodeError:
        from .readers import bad_byte

        raise UserError(bad_byte(path, "utf-8", "save the recipe as UTF-8")) from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not a recipe file" + (" (a model folder; a recipe is a YAML file)"
                                                                  if (path / "config.json").exists() else "")) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read recipe: {e}") from None
    try:
        raw, _ = _read_yaml(text, str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or e
        if str(problem).startswith("but found another document"):
            problem = "a recipe is one YAML document (a second '---' starts another)"
        raise UserError(f"{path}{line}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping of keys to values")
    given: dict[str, str] = {}  # key -> its override: a key given twice, or inside a section given after it, is
    for item in overrides:      # a mistake (the last one silently won, or dropped the earlier key)
        key = item.partition("=")[0]
        for earlier, said in given.items():
            if earlier == key or earlier.startswith(f"{key}."):
                raise UserError(f"override '{item}': {earlier} was given already ('{said}'): give it once")
        apply_override(raw, item)
        given[key] = item
    key_lines = dict(_key_lines(raw))
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise UserError(_first_problem(e, raw, str(path), key_lines)) from None
    recipe._source, recipe._key_lines, recipe._training = str(path), key_lines, training
    for section, key in ((recipe, "output_dir"), (recipe, "data_dir"), (recipe.training, "resume_from"),
                         (recipe.model, "init_from"), (recipe.model, "encoder")):
        if (value := getattr(section, key)) and value.startswith("~"):  # ~/runs/x: a home path, not a folder "~"
            setattr(section, key, str(Path(value).expanduser()))
    for task in recipe.tasks.values():  # a local data set folder as data.hub resolves as data files do
        if task.data.hub and (folder := resolve_path(recipe, task.data.hub)).exists():
            task.data.hub = str(folder)
    check(recipe, training)
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
    if "" in parts:
        raise UserError(f"override '{item}': an empty part in the key '{key}'")
    for n, part in enumerate(parts):
        part = parts[n] = _key_in(node, part)
        if n + 1 == len(parts):
            break
        if isinstance(node.get(part), list):
            raise UserError(f"override '{item}': {'.'.join(parts[:n + 1])} is a list: give the whole list, e.g. "
                            f"{'.'.join(parts[:n + 1])}=[a, b]")
        if node.get(part) is not None and not isinstance(node[part], dict):  # e.g. label_weights: balanced
            raise UserError(f"override '{item}': {'.'.join(parts[:n + 1])} is {node[part]!r}, not a mapping: give "
                            f"the whole value, e.g. {'.'.join(parts[:n + 1])}={{key: value}}")
        if not isinstance(node.get(part), dict):
            node[part] = _Mapping({}, {})
            if isinstance(node, _Mapping):  # errors about the new section point at the override
                node.lines[part] = OVERRIDE
        node = node[part]
    quoted = value.replace("'", "''")
    try:
        parsed, after = _read_yaml(value, "override", override=item, keys=[str(p) for p in parts])  # as strict as a file
    except yaml.YAMLError as e:  # e.g. `[a` for a list not closed: not taken for the text it is
        problem = getattr(e, "problem", None) or first_line(str(e))
        raise UserError(f"override '{item}': the value is no valid YAML ({problem}); to mean that text, quote it: "
                        f"\"{key}='{quoted}'\"") from None
    if after.strip():  # ` #2`: a comment to YAML, dropped
        raise UserError(f"override '{item}': YAML reads '{after.strip()}' as a comment and drops it; to mean that "
                        f"text, quote it: \"{key}='{quoted}'\"")
    if key in CWD_PATH_KEYS and isinstance(parsed, str) and parsed not in ("latest", ""):
        if key != "model.init_from" or is_local_path(parsed) and not url_problem(parsed):  # a hub id stays one
            parsed = str(Path(parsed).expanduser().absolute())  # paths typed on the command line are cwd-relative
    node[parts[-1]] = parsed
    if isinstance(node, _Mapping):
        node.lines[parts[-1]] = OVERRIDE


def _key_in(node: dict, part: str):
    """The key of `node` an override's part names: `label_names.0` names a file's `0:` (an int to YAML)."""
    if part not in node and re.fullmatch(r"-?[0-9]+", part) and int(part) in node:
        return int(part)
    return part


def _first_problem(error: ValidationError, raw: dict, src: str, key_lines: dict) -> str:
    """pydantic's most specific error as `file:line: dotted.key: problem` (of a union's errors, the
    member that got furthest into the value: `{text: a, labels: 5}` is a mapping with a bad file)."""
    def input_keys(loc) -> list[str]:
        # the loc walks the input, with union members' type names in between: keep the input's keys only
        parts, node = [], raw
        for part in loc:
            if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
                parts.append(str(part))
                node = node[part]
        return parts

    problem = max(error.errors(include_url=False), key=lambda p: len(input_keys(p["loc"])))
    parts = input_keys(problem["loc"])
    kind, ctx, value = problem["type"], problem.get("ctx", {}), problem.get("input")
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a key YAML read as a number, date, boolean or null
        if kind == "invalid_key" and (not parts or parts[-1] != str(value)):
            parts = [*parts, str(value)]  # (a float's or a date's key is not in the loc as the input has it)
        parent = _model_at(parts[:-1], raw)
        known = ", ".join(parent.model_fields) if parent else ""
        read = f"YAML reads the key {value} as {_yaml_kind(value)}; " if kind == "invalid_key" else ""
        return (f"{_at(src, _line_of(key_lines, parts))}: unknown key '{_shown('.'.join(parts))}'"
                + (f" ({read}known: {known})" if known else f" ({read.removesuffix('; ')})" if read else ""))
    if kind == "union_tag_not_found":  # a task without `type:`
        key, line = ".".join([*parts, "type"]), _line_of(key_lines, parts)
        known = [name for name in raw.get("tasks", {}) if name != parts[-1]]
        new = f" (a new task? the recipe's tasks: {', '.join(known)})" if line == OVERRIDE and known else ""
        return f"{_at(src, line)}: missing required key '{key}'{new}"
    if kind == "union_tag_invalid":
        key = ".".join([*parts, "type"])
        late = ": added to TASK_TYPES after mtnlp.recipe was imported; add it before" if ctx["tag"] in TASK_TYPES else ""
        return (f"{_at(src, _line_of(key_lines, [*parts, 'type']))}: {key}: unknown value {ctx['tag']!r}{late} "
                f"(expected one of: {', '.join(RECIPE_TYPES)})")
    if kind == "missing":
        key = ".".join([*parts, str(problem["loc"][-1])])
        return f"{_at(src, _line_of(key_lines, parts))}: missing required key '{key}'"
    key = ".".join(parts)
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))  # pydantic writes "'a', 'b' or 'c'"
        text = f"unknown value {_short(value)} (expected one of: {choices})"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):  # the last: a task section (a union)
        text = f"expected a mapping of keys, got {_short(value)}"
    elif kind == "list_type":
        text = f"expected a list, got {_short(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        text = f"must be {sign} {bound}, got {_short(value)}" + RANGE_HINTS.get(key, "")
    elif kind == "finite_number":
        text = f"must be a finite number, got {_short(value)}"
    elif kind == "string_type" and problem["loc"][-1] == "[key]" and isinstance(value, int):
        text = f"YAML reads the key {_short(value)} as a number: quote it"  # (as null and yes, when loaded)
    elif kind == "string_type" and problem["loc"][-1] == "[key]" and isinstance(value, float):
        text = f"YAML reads the key {_short(value)} as a number, and a task name has no '.': rename the task"
    elif kind.split("_")[0] in EXPECTED:
        text = f"expected {EXPECTED[kind.split('_')[0]]}, got {_short(value)}" + (_yaml_read_as(value) if kind == "string_type" else "")
    else:
        text = problem["msg"].removeprefix("Value error, ")
    return f"{_at(src, _line_of(key_lines, parts))}: {key}: {text}" if key else f"{_at(src, None)}: {text}"


def _yaml_read_as(value) -> str:
    """Why YAML made a value that was meant as text something else."""
    if isinstance(value, bool):
        return " (YAML reads an unquoted yes, no, on, off, true or false as a boolean: quote it)"
    if value is None:
        return " (YAML reads ~, null or nothing as null: quote it, or give a value)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return " (YAML reads an unquoted 2026-12-07 as a date: quote it)"
    if isinstance(value, (int, float)):
        return f" (YAML reads an unquoted {_short(value)} as a number: quote it)"
    return ""


def _yaml_kind(value) -> str:
    return ("a boolean" if isinstance(value, bool) else "null" if value is None else
            "a date" if isinstance(value, (datetime.date, datetime.datetime)) else "a number")


def _shown(key: str) -> str:
    """A key or name with the characters in it that do not show (a BOM, a zero-width space, a control) escaped."""
    from .readers import Row

    return Row.printable(key)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# what a value out of range may have meant (the Trainer's warmup_steps; its max_grad_norm 0, no clipping)
RANGE_HINTS = {"training.warmup": ": a fraction of training.steps (0.1: the first 10%)",
               "training.max_grad_norm": " (null: no clipping)"}
EXPECTED = {"int": "int", "float": "a number", "string": "str", "bool": "bool (true or false)"}


def _line_of(key_lines: dict, parts: list[str]):
    """The line of the innermost key given in the file (a list item: its list's line)."""
    for n in range(len(parts), 0, -1):
        line = key_lines.get(".".join(parts[:n]))
        if line is not None:
            return line
    return None


def _model_at(parts: list[str], raw: dict):
    """The Spec class at a dotted path of keys (tasks.NAME.data -> DataSpec), or None."""
    model, i = Recipe, 0
    while i < len(parts):
        if model is Recipe and parts[i] == "tasks":
            if i + 1 == len(parts):
                return None  # the mapping of task names itself
            kind = (raw["tasks"].get(parts[i + 1]) or {}).get("type")
            model, i = TASK_TYPES[kind].Spec if kind in TASK_TYPES else TaskSpec, i + 2
            continue
        found = model.model_fields.get(parts[i])
        model = next(_spec_types(found.annotation), None) if found else None
        if model is None:
            return None
        i += 1
    return model


def _spec_types(annotation):
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        yield annotation
    for arg in get_args(annotation):
        yield from _spec_types(arg)


def _at(src: str, line: Any) -> str:
    if isinstance(line, int):
        return f"{src}:{line}"
    if line == OVERRIDE:
        return f"{src} ({OVERRIDE})"
    return src


def check(recipe: Recipe, training: bool = True) -> None:
    """Checks beyond each key's type and range (which pydantic has checked): names, keys that relate to others,
    the data sections."""
    def fail(key, msg):
        raise UserError(f"{_at(recipe.source, recipe.key_lines.get(key))}: {_shown(key)}: {msg}")

    def note(key, msg):
        warnings.warn(f"{_at(recipe.source, recipe.key_lines.get(key))}: {key}: {msg}", stacklevel=3)

    if not recipe.tasks:
        fail("tasks", "at least one task is required")
    alike = {}
    for name in recipe.tasks if training else ():  # (an evaluation recipe names a trained model's tasks)
        alike.setdefault(look_alike(name), []).append(name)
    for names in (names for names in alike.values() if len(names) > 1):
        shown = " and ".join(map(repr if all(name.isascii() for name in names) else ascii, names))
        note(f"tasks.{names[1]}", f"tasks {shown} differ only in case, Unicode form or invisible characters: they are "
                                  f"{len(names)} tasks")
    for name, task in recipe.tasks.items():
        if not re.fullmatch(TASK_NAME if training else SAVED_TASK_NAME, name):  # a torch module's, --tasks a,b, key=value
            fail(f"tasks.{name}", "a task name is not empty, and has no space, control character, '.', ',', '=', "
                                  "'\"' or '\\'")
        if training and (hidden := next((c for c in name if unicodedata.category(c) == "Cf"), None)):
            fail(f"tasks.{name}", f"a task name has no invisible character (U+{ord(hidden):04X} here): `--tasks` and "
                                  "the outputs would show the name without it")
        if name in TORCH_DICT_NAMES:
            fail(f"tasks.{name}", f"a name torch's module dicts have for their own (`.{name}`): rename the task")
        if training and name in ONNX_INPUTS:
            note(f"tasks.{name}", "`mtnlp export --onnx` cannot export this head: an input of its graph has the name"
                                  + (" (with an encoder that takes token types)" if name == "token_type_ids" else ""))
        data = task.data
        if data.train is None and (training or data.validation_from_train is not None):
            fail(f"tasks.{name}.data.train", "a training split is required" if training else
                 "validation_from_train carves the validation split from it: give data.train")
        if data.validation_from_train is not None and data.validation is not None:
            fail(f"tasks.{name}.data.validation_from_train", "give either validation or validation_from_train")
        _check_data(recipe, name, task, fail)
        task_type(task.type).check_recipe(recipe, name, task, fail)  # the type's own keys against the rest
        for metric in task.metrics or []:
            if metric not in METRICS:
                fail(f"tasks.{name}.metrics", f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
            if metric not in task_type(task.type).metrics:
                fail(f"tasks.{name}.metrics", f"metric '{metric}' does not apply to a {task.type} task "
                                              f"(it takes: {', '.join(task_type(task.type).metrics)})")
        if task.metrics == []:
            fail(f"tasks.{name}.metrics", "give at least one metric or leave the key out")
    if recipe.push_to_hub and not recipe.hub_repo_id:
        fail("hub_repo_id", "push_to_hub needs hub_repo_id (e.g. my-org/my-model)")
    if recipe.hub_repo_id:  # checked now, not when training is over
        from .hub import repo_id_problem

        if problem := repo_id_problem(recipe.hub_repo_id):
            fail("hub_repo_id", problem)
    t = recipe.training
    if t.batch_tokens is not None and t.batch_tokens < recipe.model.max_length:
        fail("training.batch_tokens", f"must be at least model.max_length ({recipe.model.max_length}), got {t.batch_tokens}")
    m = recipe.mtl
    if m.freeze_encoder and m.sharing == "hard":
        fail("mtl.freeze_encoder", "with hard sharing only the heads would train; use sharing: lora or task_layers")
    for key, sharing in SHARING_KEYS.items():  # a resolved recipe (RUN/recipe.yaml) lists them at their defaults
        if m.sharing != sharing and changed(m, key):
            fail(f"mtl.{key}", f"applies to sharing: {sharing} (mtl.sharing is {m.sharing})")
    if all(task.loss_weight == 0 for task in recipe.tasks.values()):
        fail(f"tasks.{next(iter(recipe.tasks))}.loss_weight", "every task's loss_weight is 0: nothing would train")
    # a method's option under another method is said, not refused: `sampling.strategy=uniform` on the
    # command line must not need the file's temperature taken out too
    # a method's name is checked against its registry when the recipe is read for training, not when this module
    # is imported: a script may add one before load_recipe (and evaluate reads none of them)
    every_task = getattr(GRADIENT_METHODS.get(m.gradient), "every_task", False)  # (then no sampling key is read)
    for section, method, keys, registry in (("sampling", "strategy", SAMPLING_KEYS, STRATEGIES),
                                            ("mtl", "weighting", WEIGHTING_KEYS, WEIGHTINGS),
                                            ("mtl", "gradient", GRADIENT_KEYS, GRADIENT_METHODS)):
        spec = getattr(recipe, section)
        name = getattr(spec, method)
        if training and name not in registry:
            fail(f"{section}.{method}", f"unknown value {name!r} (expected one of: {', '.join(registry)})")
        for key, reader in keys.items():
            if changed(spec, key) and not _may_read(registry, name, reader) and not (every_task and
                                                                                     section == "sampling"):
                note(f"{section}.{key}", f"not read: it applies to {section}.{method} {reader} (this is {name})")
    if every_task:
        for key in ("strategy", "temperature"):
            if changed(recipe.sampling, key):
                note(f"sampling.{key}", f"not read: mtl.gradient {m.gradient} trains every task in each update")
        if len(recipe.tasks) < 2:
            fail("mtl.gradient", f"{m.gradient} needs at least two tasks")
        if m.freeze_encoder:
            fail("mtl.gradient", f"{m.gradient} combines the shared encoder's gradients, but freeze_encoder leaves none")
    if recipe.model.init_encoder_of is not None and not recipe.model.init_from:
        fail("model.init_encoder_of", "applies to a transfer: set model.init_from too")
    if recipe.model.init_revision is not None and not recipe.model.init_from:
        fail("model.init_revision", "applies to a transfer: set model.init_from too")
    if recipe.model.init_from and changed(recipe.model, "encoder"):
        note("model.encoder", "not read: with model.init_from the encoder is the source's")
    if not recipe.model.init_heads and not recipe.model.init_from:
        fail("model.init_heads", "applies to a transfer: set model.init_from too")
    # keys read only when another is set: a warning, like a method's option under another method
    if t.early_stopping_patience is not None and not (t.eval_every and t.eval_every < t.steps):
        note("training.early_stopping_patience", "not read: early stopping compares evaluations during training: "
                                                 "set training.eval_every below training.steps")
    if recipe.hub_private and not recipe.push_to_hub:
        note("hub_private", "not read: nothing is pushed: set push_to_hub")
    streamed = [task.data.streaming for task in recipe.tasks.values()]
    if all(streamed):  # a streamed task takes batch_size examples per batch
        if changed(t, "batch_tokens"):
            note("training.batch_tokens", "not read: every task is streamed, and a streamed task's batches hold "
                                          "training.batch_size examples")
        if changed(recipe.sampling, "group_by_length"):
            note("sampling.group_by_length", "not read: every task is streamed (its batches come in the stream's order)")
    elif t.batch_tokens is not None and not any(streamed) and changed(t, "batch_size"):
        note("training.batch_size", "not read: training.batch_tokens sets how many examples a training batch holds "
                                    "(evaluation batches: training.eval_batch_size)")


# each sharing method's keys in a model's config.sharing -> the recipe's mtl keys (sharing_config, checked_sharing)
CONFIG_SHARING_KEYS = {"lora": {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "lora_targets"},
                       "task_layers": {"layers": "task_layers"}}
# mtl keys that only one sharing method reads: another method refuses a value other than the default
SHARING_KEYS = {mtl: kind for kind, keys in CONFIG_SHARING_KEYS.items() for mtl in keys.values()}
# the same for loss weightings and sampling strategies (a warning); one added by a script may read any key
WEIGHTING_KEYS = {"weighting_lr": "uncertainty", "dwa_temperature": "dwa", "dwa_window": "dwa"}
SAMPLING_KEYS = {"temperature": "temperature"}
GRADIENT_KEYS = {"cagrad_c": "cagrad"}
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column")


def _may_read(registry: dict, name: str, reader: str) -> bool:
    """Whether the sampling strategy, weighting or gradient method `name` may read a key of `reader`'s: it is
    `reader`, under its own name or another (a script's alias), or one a script added, which may read any key."""
    entry = registry.get(name)
    ours = name in registry and (entry is None or entry.__module__.startswith("mtnlp."))
    return name == reader or not ours or (entry is not None and entry is registry.get(reader))


def _check_data(recipe: Recipe, name: str, task: TaskSpec, fail) -> None:
    """A task's data section: the lines format's file mappings, header and column positions."""
    data, key = task.data, f"tasks.{name}.data"
    splits = [split for split in ("train", "validation", "test") if getattr(data, split) is not None]
    mappings = [split for split in splits if isinstance(getattr(data, split), dict)]
    for split in splits if not data.hub else ():
        files = getattr(data, split)
        for file in files.values() if isinstance(files, dict) else [files]:
            if isinstance(file, str) and URL.match(file):
                fail(f"{key}.{split}", f"{file!r} is a URL: data files are read from disk, so download it first (a "
                                       "data set on the Hugging Face hub: data.hub names it)")
    if data.hub and (page := re.match(r"https?://(?:www\.)?(?:huggingface|hf)\.co/datasets/" + PAGE_ID, data.hub)):
        fail(f"{key}.hub", f"{data.hub!r} is a hub page's address: give the data set's id, {page[1]}")
    if data.format == "lines" or mappings:
        implied = ("data.format is lines" if data.format == "lines"
                   else f"data.{mappings[0]} is a mapping of files (format lines)")
        for split in splits:
            source = getattr(data, split)
            if not isinstance(source, dict):
                fail(f"{key}.{split}", f"{implied}: give every split as {{text: FILE, labels: FILE}}, "
                                       "not a single path")
            if data.hub:
                fail(f"{key}.{split}", "a hub dataset's splits are split names, not a mapping of files")
            if data.format is not None and data.format != "lines":
                fail(f"{key}.{split}", f"a mapping of files is the lines format, but data.format is {data.format}")
            for file_key in source:
                if file_key not in LINES_FILES:
                    fail(f"{key}.{split}.{file_key}", f"unknown key (expected: {', '.join(LINES_FILES)})")
            for file_key in ("text", "labels"):
                if file_key not in source:
                    fail(f"{key}.{split}", f"missing '{file_key}': format lines needs a text file and a labels "
                                           f"file per split, e.g. {{text: train_text.txt, labels: train_labels.txt}}")
        if task_type(task.type).token_level:
            fail(f"{key}.{mappings[0]}", "format lines holds text data (a text and a label per line), but the task "
                                         f"type is {task.type} (use conll, conllu or json/jsonl)")
        for other in (*COLUMN_KEYS, "header", "quoted"):
            if f"{key}.{other}" in recipe.key_lines:
                fail(f"{key}.{other}", "does not apply to format lines: the split's mapping names the files "
                                       "(text, labels, text_pair)")
        return
    if data.streaming or data.size is not None:
        if not data.hub:
            fail(f"{key}.streaming" if data.streaming else f"{key}.size",
                 "streaming reads a hub data set (data.hub); files are read as streams already")
        if not data.streaming:
            fail(f"{key}.size", "size is the size of a streamed training split: set data.streaming: true")
        if data.validation_from_train is not None:
            fail(f"{key}.validation_from_train", "a streamed training split cannot be carved: "
                                                 "name a validation split instead")
        for split in splits:
            source = getattr(data, split)
            if isinstance(source, str) and "[" in source:  # datasets takes no slice of a stream ("Bad split")
                fail(f"{key}.{split}", f"a streamed split cannot be sliced ('{source}'): name a whole split, or "
                                       "leave streaming out")
    # keys that would be ignored; set to their defaults they are harmless (a resolved recipe.yaml has them all)
    defaults = type(data)()
    for name in ("format", "encoding"):
        if data.hub and getattr(data, name) != getattr(defaults, name):
            fail(f"{key}.{name}", "applies to data files, not a hub dataset (datasets reads those)")
    if data.config is not None and not data.hub:
        fail(f"{key}.config", "config names a hub dataset's configuration: set data.hub too")
    if data.shuffle_buffer != defaults.shuffle_buffer and not data.streaming:
        fail(f"{key}.shuffle_buffer", "applies to a streamed training split (data.streaming: true)")
    # a split's format as data.format or its file's suffix says (an unknown suffix is said when the file is read)
    formats = {split: data.format or SUFFIX_FORMATS.get(Path(getattr(data, split)).suffix.lower())
               for split in splits if not data.hub}
    other = next((f"{fmt} ({getattr(data, split)})" if not data.format else fmt
                  for split, fmt in formats.items() if fmt not in (None, "csv", "tsv")), None)
    if data.quoted is not None and (data.hub or other):
        fail(f"{key}.quoted", f"quoted applies to csv and tsv files, not {'a hub dataset' if data.hub else other}")
    if not data.header:
        if data.hub:
            fail(f"{key}.header", "header: false applies to csv and tsv files, not a hub dataset")
        if other:
            fail(f"{key}.header", f"header: false applies to csv and tsv files, not {other}")
        if task_type(task.type).token_level:
            fail(f"{key}.header", f"header: false applies to csv and tsv text data; {task.type} reads conll, "
                                  "conllu or json/jsonl")
    for column in COLUMN_KEYS:
        value, where = getattr(data, column), f"{key}.{column}"
        if isinstance(value, int):
            if data.header:
                fail(where, f"a column position ({value}) needs data.header: false; with a header row, give the "
                            "column's name")
            if value < 0:
                fail(where, f"must be a 0-based column position (>= 0), got {value}")
        elif isinstance(value, str) and not data.header:
            if where in recipe.key_lines:
                fail(where, f"with data.header: false, give a 0-based column position (e.g. 0), not the name {value!r}")
            fail(f"{key}.header", f"header: false needs {column} as a 0-based column position "
                                  f"(the default {value!r} is a column name)")


def sharing_config(m: MTLSpec) -> dict | None:
    """The model's config.sharing for the recipe's mtl section (None: hard sharing)."""
    if m.sharing not in CONFIG_SHARING_KEYS:
        return None
    values = {key: getattr(m, mtl) for key, mtl in CONFIG_SHARING_KEYS[m.sharing].items()}
    return {"type": m.sharing, **{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}}


def default_metrics(recipe: Recipe, name: str, labels: list[str], recorded: list[str] | None = None) -> list[str]:
    """Task `name`'s metrics: the recipe's, else `recorded` (a trained model's, for evaluate), else its type's
    default; the first is its main metric. An error when the recipe's metrics cannot score these labels (known
    once the data is read)."""
    task = recipe.tasks[name]
    kind = task_type(task.type)
    metrics = task.metrics or recorded or kind.default_metrics(labels)
    if problem := kind.metrics_problem(metrics, labels):
        key = f"tasks.{name}.metrics"
        raise UserError(f"{recipe.where(key)}: {key}: {problem}")
    return metrics


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
    return recipe.model_dump()


def run_directory(recipe: Recipe) -> Path:
    return Path(recipe.output_dir or f"runs/{recipe.name}")


def check_training_paths(recipe: Recipe) -> None:
    """What training reads and writes and `mtnlp evaluate` does not: the encoder folder, the run directory (not
    under a file), and a transfer's source (not in what the run replaces)."""
    def fail(key, msg):
        raise UserError(f"{recipe.where(key)}: {key}: {msg}")

    encoder, source, run_dir = recipe.model.encoder, recipe.model.init_from, run_directory(recipe)
    # Accelerate leaves out a tracker it cannot import, silently (it takes tensorboardX too)
    if "tensorboard" in recipe.training.report_to and importlib.util.find_spec("tensorboardX") is None:
        require("tensorboard", "tensorboard", f"{recipe.where('training.report_to')}: training.report_to: tensorboard")
    from .folders import broken_link, encoder_folder_problem

    if not source and is_local_path(encoder):
        if not Path(encoder).is_dir():
            fail("model.encoder", f"{encoder}: " + ("a file, not a folder" if Path(encoder).exists() else
                                                     url_problem(encoder) or "folder not found"))
        if problem := encoder_folder_problem(Path(encoder).expanduser()):
            fail("model.encoder", f"{encoder}: {problem}")

    if problem := broken_link(run_dir):
        fail("output_dir", problem)
    for folder in (run_dir, *run_dir.parents):
        if folder.exists() and not folder.is_dir():
            fail("output_dir", f"{folder} is a file, not a folder")
    existing = next(folder for folder in (run_dir, *run_dir.parents, Path(".")) if folder.exists())
    try:  # said now, not after the data is read and the model built (a folder made and removed: nothing is left)
        os.rmdir(tempfile.mkdtemp(prefix=".mtnlp-check-", dir=existing))
    except OSError as e:
        fail("output_dir", f"{run_dir}: cannot write in {existing} ({e.strerror})")
    resume = recipe.training.resume_from
    if resume and recipe.overwrite_output_dir and (resume == "latest" or (run_dir.resolve() / "checkpoints")
                                                   in Path(resume).expanduser().resolve().parents):
        fail("overwrite_output_dir", f"true replaces the run that training.resume_from ({resume}) continues: "
                                     "give one of the two")
    if resume:  # the checkpoint is there and not past this recipe's steps: said before the data is read
        from .folders import checkpoint_state, find_checkpoint

        folder = find_checkpoint(run_dir, resume, f"{recipe.where('training.resume_from')}: training.resume_from")
        step = checkpoint_state(folder)["step"]
        if step > recipe.training.steps:
            fail("training.steps", f"{recipe.training.steps}, but {folder} is at step {step}: set more steps to train "
                                   "on, or resume an earlier checkpoint")
    if source and is_local_path(source) and recipe.overwrite_output_dir:  # the run would replace its source
        from .folders import RUN_OUTPUTS

        at = Path(source).expanduser().resolve()
        replaced = [run_dir.resolve() / name for name in RUN_OUTPUTS]
        if at == run_dir.resolve() or any(at == p or p in at.parents for p in replaced):
            fail("model.init_from", f"{source} is in what this run replaces in output_dir {run_dir} "
                                    "(overwrite_output_dir: true): choose another output_dir")


def refuse_to_mix(run_dir: Path, recipe: Recipe) -> None:
    """A run must not start in a folder that holds another run's checkpoints or model (its checkpoints
    would rank above the new run's, and `latest` would continue it) unless overwrite_output_dir says so."""
    from .folders import complete_checkpoints

    held = [f"{name}/" for name in ("checkpoints", "model") if (run_dir / name).exists()]
    if recipe.overwrite_output_dir or not held:
        return
    where = f"{recipe.where('output_dir')}: output_dir: {run_dir} holds another run ({', '.join(held)})"
    if complete_checkpoints(run_dir / "checkpoints"):
        raise UserError(f"{where}; continue it with training.resume_from=latest, or replace it with "
                        "overwrite_output_dir: true (or choose another output_dir)")
    raise UserError(f"{where} and no checkpoint to continue it from; replace it with overwrite_output_dir: true, "
                    "or choose another output_dir")
