"""MultiTaskConfig and MultiTaskModel: one shared encoder, one head per task, transformers-style.

`config.tasks` maps each task name to {"type", "labels", "dropout"} plus its task type's own keys
(model_spec: e.g. a multilabel threshold, QA's doc_stride); `config.sharing` says how the
encoder is shared (None: one encoder for all tasks; see sharing.py for per-task LoRA adapters and
per-task top layers). save_pretrained / from_pretrained rebuild everything from the config.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import MultipleChoiceModelOutput, SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import ModelOutput, cached_file

from . import families, sharing
from .encoders import not_an_encoder
from .folders import MODEL_TYPE, in_task_order, refuse_run_folder, safetensors_header, weights_readable_as_umask
from .heads import build_head
from .spec import TASK_NAME, TORCH_DICT_NAMES
from .tasks import TASK_TYPES, task_type



@dataclass
class SpanOutput(ModelOutput):
    """An extractive QA head's output: `logits` (batch, length, 2), as every head gives one tensor, and
    transformers' QuestionAnsweringModelOutput fields, `start_logits` and `end_logits`, views of it."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    start_logits: torch.FloatTensor | None = None
    end_logits: torch.FloatTensor | None = None

    def to_tuple(self) -> tuple:
        """(loss, logits), as every head's tuple: the start and end logits are views of `logits`."""
        return tuple(value for key, value in self.items() if key in ("loss", "logits"))


NO_TASKS = "an empty list asks for no head; leave tasks out (None) for every head"

# forward()'s output class per head kind
OUTPUTS = {"token": TokenClassifierOutput, "choice": MultipleChoiceModelOutput}


FORWARD_ARGUMENTS = "input_ids, attention_mask, token_type_ids, task, labels, return_dict (and a QA head's " \
                    "start_positions, end_positions)"
ENCODER_OUTPUTS = ("output_hidden_states", "output_attentions")  # what model.encoder(...) gives instead


def unexpected_arguments(names: list[str]) -> str:
    """forward()'s TypeError for keyword arguments it does not take: where the encoder's own outputs come
    from, or what it does take (a typo: lables=; transformers' inputs_embeds, position_ids)."""
    said = f"MultiTaskModel.forward() got unexpected keyword argument(s) {', '.join(names)}"
    if all(name in ENCODER_OUTPUTS for name in names):
        return f"{said}; for the encoder's hidden states or attentions call model.encoder(...)"
    return f"{said}; it takes {FORWARD_ARGUMENTS}"


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")  # one model's weights: one file, or shards


def file_version(path: Path) -> tuple | None:
    """What tells one write of a file from another (None: no such file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class MultiTaskConfig(PreTrainedConfig):
    """A multi-task model's config.json: the encoder's own config (`encoder`), the heads (`tasks`), how
    the encoder is shared (`sharing`) and what training recorded (`mtnlp`)."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    tasks: dict | None = None  # name -> {"type": ..., "labels": [...], "dropout": float, type's own keys}
    sharing: dict | None = None  # None (hard sharing), {"type": "lora", ...} or {"type": "task_layers", ...}
    # what training recorded (transfer.training_record: metrics, max_length, version, base_model, init_from)
    mtnlp: dict | None = None
    task_order: list | None = None  # the tasks' order (the recipe's): config.json's keys are sorted when saved

    def __post_init__(self, **kwargs):
        if self.tasks and self.encoder is None:  # (super() would make it bert-base's: a mismatch with the weights)
            raise TasksError("encoder: a model with tasks needs its encoder's config (config.json has no encoder)")
        super().__post_init__(**kwargs)
        if isinstance(self.tasks, dict) or not self.tasks:  # (anything else: checked_tasks says what a model takes)
            self.tasks = in_task_order(self.tasks or {}, self.task_order)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "task_order": list(self.tasks or {})}


class ConfigMismatch(ValueError):
    """A saved model whose config.json does not fit its weights; str() names the folder."""


def saved_shapes(name, hub: dict) -> dict[str, tuple] | None:
    """Each saved weight's shape, read from the header of model.safetensors (or of each file of a sharded
    model) without its tensors; None where they cannot be read (transformers' own loading says why: no such
    file, offline, damaged)."""
    def find(file):
        return cached_file(name, file, _raise_exceptions_for_missing_entries=False, **hub)

    try:
        files = [find("model.safetensors")]
        if files[0] is None:
            index = find("model.safetensors.index.json")
            shards = set(json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].values()) if index else ()
            if not shards or any(Path(shard).name != shard for shard in shards):
                return None
            files = [find(shard) for shard in sorted(shards)]
        shapes = {}
        for file in files:
            header = safetensors_header(file)[1]
            shapes.update({key: tuple(t["shape"]) for key, t in header.items() if key != "__metadata__"})
        return shapes
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None


def check_weights_fit(name, config: dict, hub: dict, sizes: bool = True) -> None:
    """A ConfigMismatch when config.json asks for other layers or sizes than the saved weights hold, found
    before anything is built: transformers would build every missing layer with random weights (100000 of them
    took more than 8 GB) and allocate every tensor at the config's size (an intermediate_size of 4,000,000
    took 2.4 GB) before it compares shapes. `sizes` False: the layer count only (ignore_mismatched_sizes=True asks
    transformers for new weights where the sizes differ, e.g. a head given more labels)."""
    shapes = saved_shapes(name, hub)
    if shapes is None:
        return
    check_layer_count(name, config, shapes)
    if sizes:
        try:
            with torch.device("meta"):  # (no memory)
                model = MultiTaskModel(MultiTaskConfig.from_dict(config))
        except Exception:  # noqa: BLE001 - a config that cannot build: transformers' own loading says why
            return
        check_sizes(name, model, shapes)


def check_layer_count(name, config: dict, shapes: dict) -> None:
    """Compares the encoder's layer count with the layers the weights' names hold. Only where the family says
    where its layers are (an unknown family's layers may be shared, as ALBERT's are)."""
    encoder = config.get("encoder")
    if not isinstance(encoder, dict):
        return
    family = families.BY_MODEL_TYPE.get(encoder.get("model_type"))
    wanted = encoder.get("num_hidden_layers", encoder.get("n_layers"))  # (DistilBERT's name)
    if family is None or family.layers is None or not isinstance(wanted, int):
        return
    prefix = f"{MultiTaskModel.base_model_prefix}.{family.layers}."
    shared = {key[len(prefix):].split(".", 1)[0] for key in shapes if key.startswith(prefix)}
    task_sharing = config.get("sharing") if isinstance(config.get("sharing"), dict) else {}
    top = task_sharing.get("layers", 0) if task_sharing.get("type") == "task_layers" else 0
    held = len(shared) + (top if isinstance(top, int) else 0)
    if wanted != held:
        raise ConfigMismatch(f"{name}: config.json does not fit its weights (its encoder has {wanted:,} layers, "
                             f"the weights hold {held:,})")


def check_sizes(name, model: nn.Module, shapes: dict) -> None:
    """Compares each weight's shape in `model`, as config.json makes it, with the saved one of the same name."""
    for key, tensor in model.state_dict().items():
        if key in shapes and tuple(tensor.shape) != shapes[key]:
            raise ConfigMismatch(f"{name}: config.json does not fit its weights ({key} is "
                                 f"{' x '.join(map(str, shapes[key]))} in the weights, "
                                 f"{' x '.join(map(str, tensor.shape))} by config.json)")


def pretrained_encoder(name: str, dtype=torch.float32, **hub) -> PreTrainedModel:
    """A pretrained encoder (a folder or hub id) as transformers' AutoModel loads it, or a ValueError naming it
    (ConfigMismatch: its config.json does not fit its weights). transformers would give every weight it does not
    find in the checkpoint (saved under other names, fewer layers than config.json says) random values, with a
    warning mtnlp silences. Only the pooler may be missing (BertModel(add_pooling_layer=False) saves none):
    it starts new, as a head does. The weights' sizes and layers are compared as for a trained model
    (check_weights_fit), the weights' names read without the base model's prefix (BertForMaskedLM's `bert.`).
    A decoder-only or encoder-decoder model is refused before its weights are read: the heads read the states of
    a text's tokens (the first token's, for a sequence head) as an encoder gives them."""
    config = AutoConfig.from_pretrained(name, trust_remote_code=False, **hub)
    with torch.device("meta"):  # (no memory)
        built = AutoModel.from_config(config)
    if config.is_encoder_decoder or families.causal(config, built):  # before its weights are read
        raise ValueError(f"{name}: {not_an_encoder(config.model_type, config.is_encoder_decoder)}")
    shapes = saved_shapes(name, hub)
    if shapes is not None:
        prefix = f"{built.base_model_prefix}."
        shapes = {key.removeprefix(prefix): shape for key, shape in shapes.items()}
        check_sizes(name, built, shapes)
    try:
        encoder, info = AutoModel.from_pretrained(name, config=config, dtype=dtype, output_loading_info=True,
                                                  trust_remote_code=False, **hub)
    except RuntimeError as e:  # a size that differs, where the weights' header could not be read (pytorch_model.bin)
        if "ignore_mismatched_sizes" not in str(e):
            raise
        raise ConfigMismatch(f"{name}: config.json does not fit its weights (a size it gives, e.g. hidden_size or "
                             "vocab_size, differs from the weights')") from None
    missing = sorted(key for key in info["missing_keys"] if not key.startswith("pooler."))
    if missing:
        raise ConfigMismatch(f"{name}: its weights lack {len(missing):,} of the {len(encoder.state_dict()):,} "
                             f"weights config.json gives the encoder (e.g. {missing[0]}), which would start random")
    if shapes is not None:  # (fewer layers were missing weights) more layers than config.json has
        check_layer_count(name, {"encoder": config.to_dict()},
                          {f"{MultiTaskModel.base_model_prefix}.{key}": shape for key, shape in shapes.items()})
    return encoder


def encoder_config(config: PreTrainedConfig) -> dict:
    """An encoder's config as a multi-task model keeps it, without where it was loaded from: config.json is
    pushed with the model, and that may be a local path (/home/...)."""
    return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}


def head_mismatch(name: str, old: dict | None, new: dict) -> str | None:
    """Why a source model's head `old` cannot start the head of task `name` (spec `new`), or None when it
    can: the same type and labels."""
    if old is None:
        return "the source has no such task"
    if old["type"] != new["type"]:
        return f"the source's {name} is a {old['type']} task"
    if old["labels"] != new["labels"]:
        shown = ", ".join(old["labels"][:6]) + (", ..." if len(old["labels"]) > 6 else "")
        return f"other labels than the source's ({shown})"
    return None


COMMON_TASK_KEYS = {"type", "labels", "dropout", "label_weights"}  # every type's (checked_tasks checks them itself)


class TasksError(ValueError):
    """A task spec that is not one (checked_tasks); str() names the task and key at fault."""


def checked_tasks(tasks, new: bool = True) -> dict[str, dict]:
    """`tasks` as from_encoder takes them ({name: {"type": ..., "labels": [...], "dropout"?: ..., the type's
    own keys}}), with labels [] where the type has none (regression, multiple choice, QA) and, for a `new`
    model, text_pair false for a tagging head unless given (a saved config keeps what it holds: a model saved
    before text_pair was recorded), or a TasksError (a ValueError) naming the task and key at fault."""
    example = "{'sentiment': {'type': 'classification', 'labels': ['neg', 'pos']}}"
    if not isinstance(tasks, dict) or not tasks:
        raise TasksError(f"tasks: expected a non-empty dict of task specs, e.g. {example}")
    checked = {}
    for name, spec in tasks.items():
        where = f"tasks[{name!r}]"
        if not isinstance(name, str) or not isinstance(spec, dict):
            raise TasksError(f"{where}: expected a task name and a dict, e.g. {example}")
        if new and (not re.fullmatch(TASK_NAME, name) or name in TORCH_DICT_NAMES):  # (a recipe's rule)
            raise TasksError(f"{where}: not a task name (one is not empty, has no space, control character, '.', ',', "
                             "'=', '\"' or '\\', and is not a name torch's module dicts have for their own, such as "
                             "train or keys)")
        if not new and isinstance(spec.get("type"), str):
            task_type(spec["type"])  # a saved model's type this mtnlp lacks (an extension's): the error that says so
        if not isinstance(spec.get("type"), str) or spec["type"] not in TASK_TYPES:
            got = f"unknown type {spec['type']!r}" if "type" in spec else "missing"
            raise TasksError(f"{where}['type']: {got} (one of: {', '.join(TASK_TYPES)})")
        kind = task_type(spec["type"])
        labels = spec.get("labels", [] if not kind.min_labels else None)
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels) \
                or len(labels) < kind.min_labels or len(set(labels)) < len(labels):
            raise TasksError(f"{where}['labels']: expected a list of at least {kind.min_labels} distinct label "
                             f"names for a {kind.name} task, got {labels!r}")
        dropout = spec.get("dropout", 0.1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise TasksError(f"{where}['dropout']: expected a number in [0, 1), got {dropout!r}")
        weights = spec.get("label_weights")
        if weights is not None and (not isinstance(weights, list) or len(weights) != len(labels) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < float("inf") for w in weights)):
            raise TasksError(f"{where}['label_weights']: expected one positive number per label ({len(labels)}), "
                             f"got {weights!r}")
        for key in sorted(spec.keys() - COMMON_TASK_KEYS):
            try:
                spec = {**spec, key: kind.config_value(key, spec[key], labels)}
            except KeyError:  # (a saved config's: kept, as an older mtnlp may have written it)
                if new:
                    own = sorted(kind.model_keys() - COMMON_TASK_KEYS)
                    raise TasksError(f"{where}[{key!r}]: not a key of a {kind.name} task (every task's: "
                                     f"{', '.join(sorted(COMMON_TASK_KEYS))}; its own: {', '.join(own) or 'none'})") from None
            except ValueError as e:
                raise TasksError(f"{where}[{key!r}]: {e}") from None
        checked[name] = {**spec, "labels": labels}
        if new and kind.head_kind == "token":  # trained on single sentences, as training records it (Tagging.model_spec)
            checked[name].setdefault("text_pair", False)
    return checked


def checked_sharing(given) -> dict | None:
    """`sharing` as a MultiTaskConfig, from_encoder and from_trained take it (None: one encoder; {"type": "lora", "r", "alpha",
    "dropout", "targets"} or {"type": "task_layers", "layers"}), the keys it leaves out at the recipe's defaults
    (mtl.lora_r, ...), or a ValueError naming the key at fault."""
    if given is None:
        return None
    from pydantic import ValidationError

    from .recipe import CONFIG_SHARING_KEYS, MTLSpec, sharing_config

    kind = given.get("type") if isinstance(given, dict) else None
    if kind not in CONFIG_SHARING_KEYS:
        raise ValueError(f"sharing['type']: expected 'lora' or 'task_layers' (or sharing=None), got {kind!r}")
    keys = CONFIG_SHARING_KEYS[kind]
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}  # targets=("query", "value")
    for key, value in given.items():
        if key == "type":
            continue
        if key not in keys:
            raise ValueError(f"sharing[{key!r}]: not a key of {kind} sharing (its keys: {', '.join(keys)})")
        try:
            MTLSpec(**{keys[key]: value})
        except ValidationError as error:
            raise ValueError(f"sharing[{key!r}]: {error.errors()[0]['msg']}, got {value!r}") from None
    return sharing_config(MTLSpec(sharing=kind, **{keys[k]: v for k, v in given.items() if k != "type"}))


class MultiTaskModel(PreTrainedModel):
    """One encoder (`encoder`, any family in families.py) and one head per task (`heads`, heads.py).

    Build one with `from_encoder(encoder, tasks)` (a pretrained encoder folder or hub id, new heads) or
    `from_trained(source, tasks)` (transfer); load a saved one with `from_pretrained`. `forward(...,
    task=NAME, labels=...)` gives one head's logits and loss (what training calls); `forward_heads(...)`
    gives several heads' logits from one encoder pass (what the pipeline calls)."""

    config_class = MultiTaskConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    accepts_loss_kwargs = False  # transformers' Trainer: a head's loss is the batch mean; no num_items_in_batch

    def __init__(self, config: MultiTaskConfig):
        # every way in: from_encoder, a config, a saved folder (a task without labels: a ValueError naming it)
        config.tasks = checked_tasks(config.tasks, new=False)
        config.sharing = checked_sharing(config.sharing)
        super().__init__(config)
        try:  # heads have their own pooler; the encoder's would be an unused (DDP-unfriendly) parameter
            self.encoder = AutoModel.from_config(config.encoder, add_pooling_layer=False)
        except TypeError:
            self.encoder = AutoModel.from_config(config.encoder)
        kind = (config.sharing or {}).get("type")
        if kind == "task_layers":
            self.task_layers = sharing.split_top_layers(self.encoder, list(config.tasks), config.sharing["layers"])
        elif kind == "lora":
            sharing.add_lora_adapters(self.encoder, list(config.tasks), config.sharing)
        self._lora = sharing.lora_layers(self.encoder) if kind == "lora" else []
        self.heads = nn.ModuleDict({name: build_head(spec, config.encoder) for name, spec in config.tasks.items()})
        self.post_init()
        for layer in self._lora:  # post_init re-drew every Linear; a fresh adapter must start as a no-op (B = 0)
            for task in config.tasks:
                layer.reset_lora_parameters(task, True)

    def _init_weights(self, module):
        std = getattr(self.config.encoder, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def load_plain_encoder(self, state: dict[str, torch.Tensor]) -> None:
        """Load an ordinary encoder's weights (e.g. a pretrained BertModel's) into the shared encoder and,
        with task-specific layers, into every task's copy of the top layers."""
        encoder_state, task_state = sharing.to_model_keys(state, self)
        missing, unexpected = self.encoder.load_state_dict(encoder_state, strict=False)
        missing = [k for k in missing if not sharing.is_adapter_weight(k)]  # fresh adapters
        if missing or unexpected:
            raise ValueError(f"encoder weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if task_state:
            self.task_layers.load_state_dict(task_state, strict=True)

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """transformers' resize, also recorded in config.encoder, from which loading and export build the encoder."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        self.config.encoder.vocab_size = embeddings.num_embeddings
        return embeddings

    def checkpoint_activations(self) -> None:
        """transformers' activation checkpointing of every encoder layer, task layers included: each is run again
        in the backward pass instead of keeping its activations. Non-reentrant, which DDP's search for unused
        parameters (idle heads) and a frozen encoder both need."""
        options = {"use_reentrant": False}
        try:
            if hasattr(self, "activation_checkpointing_enable"):  # its name since transformers 5.x
                self.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
            else:
                self.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        except ValueError:  # no module of the encoder takes it
            raise ValueError(f"transformers cannot checkpoint the layers of a {self.config.encoder.model_type} "
                             "encoder") from None
        # transformers also makes the embeddings' output require grad, which only reentrant checkpointing needs: with
        # a frozen encoder, autograd would then run back through every frozen layer (and run each again) in each step
        self.disable_input_require_grads()
        if getattr(self.config.encoder, "use_cache", False):  # an encoder caches nothing; transformers would warn
            self.config.encoder.use_cache = False

    def encoder_state(self, task: str | None = None) -> dict[str, torch.Tensor]:
        """The encoder as ONE plain model's weights for `task` (adapter merged / task layers in place)."""
        return sharing.plain_state(self, task)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task uses (what PCGrad, CAGrad and MGDA combine): the encoder without adapters."""
        return [p for n, p in self.encoder.named_parameters() if p.requires_grad and not sharing.is_adapter_weight(n)]

    @classmethod
    def from_encoder(cls, encoder: str | PreTrainedModel, tasks: dict[str, dict], sharing: dict | None = None,
                     **load_kwargs) -> "MultiTaskModel":
        """A new model: pretrained encoder weights from `encoder` (path or hub id, loaded by pretrained_encoder,
        or an encoder it loaded), fresh heads.

        Head modules the checkpoint carries (families.py `base_head`: BERT's pooler) start from its weights.
        The model is float32 (training keeps fp32 weights, whatever dtype the checkpoint was saved in), or
        all of it in `dtype=` if given (a torch dtype, its name, or "auto": the checkpoint's). `sharing`: None
        (one encoder for every task), {"type": "lora", ...} or {"type": "task_layers", "layers": k}, see
        checked_sharing and sharing.py.
        """
        tasks = checked_tasks(tasks)
        dtype = load_kwargs.pop("dtype", None)
        if isinstance(dtype, str) and dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"dtype: {dtype!r} is not a torch dtype (e.g. float32, bfloat16) or 'auto'")
            dtype = getattr(torch, dtype)
        pretrained = encoder if isinstance(encoder, PreTrainedModel) else \
            pretrained_encoder(encoder, dtype="auto" if dtype == "auto" else torch.float32, **load_kwargs)
        if dtype == "auto":
            dtype = pretrained.dtype
        config = MultiTaskConfig(encoder=encoder_config(pretrained.config), tasks=tasks, sharing=sharing)
        model = cls(config)
        state = pretrained.state_dict()
        # the heads pool for themselves: the encoder's pooler is left out, unless it cannot be (SqueezeBERT)
        pooler = any(k.startswith("pooler.") for k in model.encoder.state_dict())
        model.load_plain_encoder({k: v for k, v in state.items() if pooler or not k.startswith("pooler.")})
        for name in model.family.base_head:
            weights = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}
            for head in model.heads.values():
                if weights and hasattr(head, name):
                    getattr(head, name).load_state_dict(weights)
        return model if dtype is None else model.to(dtype)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' from_pretrained, except that weights which do not fit the config are an error
        (ConfigMismatch), not random ones: saved heads of an older layout (a non-BERT model saved before heads
        became the family's own), and any other missing or unexpected weight or size (a config.json edited by
        hand, or made to exhaust memory: more layers than the weights hold are refused before any is built)."""
        if args and isinstance(args[0], (str, Path)) and not kwargs.get("subfolder"):
            refuse_run_folder(args[0])
        if args and "config" not in kwargs:  # e.g. the base encoder's folder, given instead of a trained model's
            hub = {k: v for k, v in kwargs.items() if k in ("revision", "token", "cache_dir", "local_files_only",
                                                            "force_download", "subfolder", "proxies")}
            saved = PreTrainedConfig.get_config_dict(args[0], **hub)[0]
            if saved.get("model_type") != MODEL_TYPE:
                raise ValueError(f"{args[0]}: a {saved.get('model_type') or 'model of no model_type'} checkpoint, not "
                                 "an mtnlp multi-task model; MultiTaskModel.from_encoder(it, tasks) builds one on its encoder")
            check_weights_fit(args[0], saved, hub, sizes=not kwargs.get("ignore_mismatched_sizes"))
        want_info = kwargs.pop("output_loading_info", False)
        name = args[0] if args else "the model"
        try:
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        except RuntimeError as e:  # transformers: a weight whose shape differs from the config's
            if "ignore_mismatched_sizes" not in str(e):
                raise
            raise ConfigMismatch(f"{name}: config.json does not fit its weights (a size it "
                                 "gives, e.g. hidden_size, vocab_size, a task's labels or max_position_embeddings, "
                                 "differs from the weights')") from None
        missing, unexpected = set(info["missing_keys"]), set(info["unexpected_keys"])
        stale = sorted(k for k in missing | unexpected if k.startswith("heads."))

        def head_tasks(keys):  # heads.TASK.... -> TASK
            return {k.split(".")[1] for k in keys if k.startswith("heads.")}

        held = head_tasks(unexpected) - set(model.config.tasks)
        lacking = head_tasks(missing) - head_tasks(unexpected)
        if held or lacking:  # a config given with other tasks than the weights hold (not an older layout)
            task, what = (min(held), "the weights hold, which the config has not") if held else \
                (min(lacking), "the config has, whose weights are not there")
            raise ConfigMismatch(f"{name}: a task {task!r} {what} (load it with its own config; choose heads per "
                                 "call: forward_heads(..., tasks=[...]), pipe(inputs, tasks=[...]))")
        if stale:
            raise ConfigMismatch(f"the saved heads do not fit this version's {model.family.name} heads "
                                 f"(e.g. {stale[0]}): the model was saved by an older mtnlp; train it again")
        if missing or unexpected:
            key = sorted(missing | unexpected)[0]
            raise ConfigMismatch(f"{name}: config.json does not fit its weights "
                                 f"({'no weight' if key in missing else 'a weight it has no place for'}: {key})")
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained, without the weights of an earlier save that this one did not write: a
        sharded save's model.safetensors.index.json beside a now single model.safetensors (a push would upload
        it), or the reverse (loading would read the older model.safetensors)."""
        folder = Path(save_directory)
        before = {name: file_version(folder / name) for name in WEIGHT_FILES}
        super().save_pretrained(save_directory, *args, **kwargs)
        written = [name for name in WEIGHT_FILES if file_version(folder / name) not in (None, before[name])]
        if len(written) == 1 and kwargs.get("is_main_process", True):
            for name in WEIGHT_FILES:
                if name not in written:
                    (folder / name).unlink(missing_ok=True)
        weights_readable_as_umask(save_directory)

    @classmethod
    def from_trained(cls, source: "MultiTaskModel", tasks: dict[str, dict], keep_heads: bool = True,
                     sharing: dict | None = None, encoder_of: str | None = None) -> "MultiTaskModel":
        """Transfer: a new model for `tasks` whose encoder (and, with keep_heads, each head whose task has
        the same name, type and labels) starts from a trained multi-task model. A soft-shared source
        gives the encoder of one of its tasks (its adapter merged / its layers in place): `encoder_of`, or
        the first new task it knows. The model is float32 (training keeps fp32 weights), as from_encoder's is,
        whatever dtype the source was loaded in."""
        tasks = checked_tasks(tasks)
        task = transfer_encoder_task(source, tasks, encoder_of)
        encoder = encoder_config(source.config.encoder) | {"dtype": "float32"}  # a bf16 source's says bfloat16
        model = cls(MultiTaskConfig(encoder=encoder, tasks=tasks, sharing=sharing))
        try:
            model.load_plain_encoder(source.encoder_state(task))
        except ValueError as e:
            raise ValueError(f"cannot transfer the encoder: {e}") from None
        for name, head in model.heads.items():
            if keep_heads and head_mismatch(name, source.config.tasks.get(name), tasks[name]) is None:
                head.load_state_dict(source.heads[name].state_dict())
        return model

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, task: str | None = None) -> torch.Tensor:
        """Encoder states for `task` (with soft sharing the task picks the adapter / top layers)."""
        if self._lora:
            sharing.activate_adapter(self._lora, task)
        return self.task_top(self.shared_states(input_ids, attention_mask, token_type_ids), attention_mask, task)

    @property
    def family(self) -> families.Family:
        return families.of(self.config.encoder)

    @property
    def uses_token_type_ids(self) -> bool:
        """Whether the encoder reads token_type_ids (any given to a family without them are dropped)."""
        return families.uses_token_type_ids(self.config.encoder)

    def shared_states(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """The shared encoder's output (with LoRA: under the active adapter)."""
        use = token_type_ids is not None and self.uses_token_type_ids
        kwargs = {"token_type_ids": token_type_ids} if use else {}
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state

    def task_top(self, hidden, attention_mask, task):
        """`task`'s own top layers on the shared states (the identity without task_layers sharing)."""
        if not hasattr(self, "task_layers"):
            return hidden
        return sharing.run_layers(self.task_layers[task], hidden, attention_mask, self.encoder)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, task: str | None = None,
                labels=None, return_dict: bool | None = None, **kwargs):
        """`task`'s logits (and loss, given labels). Inputs are (batch, length), or (batch, choices, length)
        for a head that scores several sequences per example (multiple choice): logits (batch, choices).
        The encoder's own outputs (hidden states, attentions) come from `model.encoder(...)` (with soft sharing
        not a task's: `encode(..., task=T)` gives T's last hidden states). An extractive QA
        head takes its labels as (batch, 2) start and end positions, or as transformers' start_positions and
        end_positions."""
        positions = [kwargs.pop(key, None) for key in ("start_positions", "end_positions")]
        # a typo (lables=) or an argument of transformers' models this one does not take; left at None or
        # False (as wrappers such as peft pass inputs_embeds, output_attentions, ...) it asks for nothing
        if unread := [key for key, value in kwargs.items() if value is not None and value is not False]:
            raise TypeError(unexpected_arguments(unread))
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model has: {', '.join(self.heads)}")
        head = self.heads[task]
        if positions != [None, None]:
            if head.task_type.head_kind != "span" or None in positions or labels is not None:
                raise TypeError("start_positions and end_positions (both, without labels) are an extractive QA "
                                f"head's labels; task {task!r} is {head.task_type.name}")
            labels = torch.stack([p.view(-1) for p in positions], -1)  # (batch,) or (batch, 1) each
        shape = input_ids.shape
        choices = len(shape) == 3  # (batch, choices, length): every choice is one sequence (multiple choice)
        if choices != (head.task_type.head_kind == "choice"):
            raise ValueError(f"task {task!r} ({head.task_type.name}) takes input_ids of shape "
                             f"{'(batch, choices, length)' if not choices else '(batch, length)'}, got {tuple(shape)}")
        if choices:
            input_ids, attention_mask, token_type_ids = (None if x is None else x.flatten(0, 1)
                                                         for x in (input_ids, attention_mask, token_type_ids))
        logits = head(self.encode(input_ids, attention_mask, token_type_ids, task), attention_mask)
        if choices:  # the head's one score per sequence, back as (batch, choices)
            logits = logits.view(shape[0], shape[1], -1).squeeze(-1)
        loss = head.task_type.loss(logits, labels, head.spec) if labels is not None else None
        if head.task_type.head_kind == "span":
            output = SpanOutput(loss=loss, logits=logits, start_logits=logits[..., 0], end_logits=logits[..., 1])
        else:
            output = OUTPUTS.get(head.task_type.head_kind, SequenceClassifierOutput)(loss=loss, logits=logits)
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()

    def forward_heads(self, input_ids, attention_mask=None, token_type_ids=None,
                      tasks: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Logits of several heads from ONE encoder pass (with LoRA adapters: one pass per task; with
        task-specific layers: one pass through the shared layers, then each task's own)."""
        tasks = list(self.heads) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
        if not tasks:
            raise ValueError(f"tasks: {NO_TASKS}")
        if unknown := [t for t in tasks if t not in self.heads]:
            raise KeyError(f"unknown task {unknown[0]!r}; this model has: {', '.join(self.heads)}")
        if input_ids.dim() != 2:  # e.g. a multiple-choice batch: failed deep in the encoder ("too many values to unpack")
            raise ValueError(f"forward_heads takes input_ids of shape (batch, length), got {tuple(input_ids.shape)}; "
                             "a multiple-choice head's (batch, choices, length): forward(..., task=NAME)")
        if self._lora:
            return {t: self.heads[t](self.encode(input_ids, attention_mask, token_type_ids, t), attention_mask)
                    for t in tasks}
        hidden = self.shared_states(input_ids, attention_mask, token_type_ids)
        return {t: self.heads[t](self.task_top(hidden, attention_mask, t), attention_mask) for t in tasks}


MODEL_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # evaluating's, one per model


@contextlib.contextmanager
def evaluating(model):
    """`model` in eval mode (no dropout) for the block, then each of its modules back in its own mode: an
    evaluation or a pipeline called in the middle of training leaves the model training (a frozen encoder kept
    in eval mode, too). Blocks on one model with something to switch take turns (pipelines on other tokenizers,
    another thread's evaluation): one could otherwise restore the training mode under another's feet. So do
    blocks on a LoRA model: its active adapter is module state, which another call's task would switch."""
    modules = list(model.modules()) if isinstance(model, nn.Module) else []  # (an ONNX model has no modes)
    if not modules:
        yield model
        return
    lock = MODEL_LOCKS.setdefault(model, threading.RLock())  # (one dict operation: atomic)
    with lock:  # (a caller that switches holds it until it has switched back)
        switching = any(m.training for m in modules) or bool(getattr(model, "_lora", None))
    if not switching:  # nothing to switch (a loaded model without adapters): calls need not take turns
        yield model
        return
    with lock:
        modes = [m.training for m in modules]  # (again: another caller may have switched in between)
        model.eval()
        try:
            yield model
        finally:
            for module, mode in zip(modules, modes):
                module.training = mode


def to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of a model input on `device` (non-blocking from pinned memory): the one place the
    pipeline, evaluation and training move inputs, so none is left behind (e.g. token_type_ids)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


AutoConfig.register("mtnlp", MultiTaskConfig)
AutoModel.register(MultiTaskConfig, MultiTaskModel)


def transfer_encoder_task(source: MultiTaskModel, tasks, encoder_of: str | None = None) -> str | None:
    """The source task whose encoder a transfer starts from: `encoder_of`, or the first of `tasks` the
    source has; None for a hard-shared source (one encoder for every task), which takes no `encoder_of`."""
    names = list(source.config.tasks)
    kind = (source.config.sharing or {}).get("type")
    if encoder_of is not None and kind is None:  # naming a task would suggest a choice there is not
        raise sharing.SharingError("model.init_encoder_of", "the source (mtl.sharing: hard) shares one encoder "
                                                            "among its tasks: leave init_encoder_of out")
    if encoder_of is not None and encoder_of not in names:
        raise sharing.SharingError("model.init_encoder_of", f"the source has no task '{encoder_of}' "
                                                             f"(it has: {', '.join(names)})")
    if kind is None:
        return None
    task = encoder_of or next((t for t in tasks if t in names), None)
    if task is None:
        parts = "adapters" if kind == "lora" else "top layers"
        raise sharing.SharingError("model.init_from", f"the source has per-task {parts} (mtl.sharing: {kind}) and "
                                                      f"none of its tasks ({', '.join(names)}) is a task here: name "
                                                      "the one whose encoder to start from in model.init_encoder_of")
    return task
