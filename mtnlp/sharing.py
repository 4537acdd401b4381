"""Soft and partial sharing of the encoder (config.sharing):

- {"type": "lora", "r", "alpha", "dropout", "targets"}: one peft LoRA adapter per task on the shared
  encoder; a task's forward pass runs with its own adapter active.
- {"type": "task_layers", "layers": k}: the bottom layers are shared, the top k are copied per task
  (with the modules that follow the layers, e.g. ModernBERT's final norm).

Both can be turned back into a plain encoder state for one task (`plain_state`), which is how a
head is exported as an ordinary transformers model. Where each family keeps its layers and how a
slice of them runs is in families.py.
"""

from __future__ import annotations

import copy
import re
import warnings

import torch
from torch import nn

from . import families


class SharingError(ValueError):
    """A sharing setting that does not fit the encoder or a transfer; `key` is the recipe key (mtl.*,
    model.init_*) that sets it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def is_adapter_weight(name: str) -> bool:
    """A LoRA adapter's parameter (peft names them ...lora_A.<task>... / ...lora_B.<task>...)."""
    return "lora_" in name


def add_lora_adapters(encoder: nn.Module, tasks: list[str], spec: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    targets = families.of(encoder.config).lora_targets(list(spec["targets"]))  # BERT's names -> the family's
    for task in tasks:
        config = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                            target_modules=targets)
        try:
            with warnings.catch_warnings():  # "multiple adapters in the model": one per task is the point
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(config, encoder, adapter_name=task)
        except ValueError as e:
            raise SharingError("mtl.lora_targets", str(e).splitlines()[0]) from None
    encoder.requires_grad_(True)  # peft freezes the base weights; freezing is a training choice (mtl.freeze_encoder)


def lora_placement(encoder: nn.Module, targets: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Where `targets`' adapters went in `encoder`: the targets that adapted no layer (peft fails only when none
    does: MPNet's attention is attn.q/k/v/o, so the default adapted its feed-forward layers alone), and the kinds
    (layer_kind) of linear layers adapted and of those left without an adapter, for the messages."""
    from peft.tuners.lora import LoraLayer

    family = families.of(encoder.config)
    adapted = [name for name, m in encoder.named_modules() if isinstance(m, LoraLayer)]
    unmatched = [t for t in targets if not any(name == own or name.endswith("." + own) for name in adapted
                                               for own in family.lora_targets([t]))]
    left = {layer_kind(name) for name, m in encoder.named_modules() if isinstance(m, nn.Linear)
            and not any(name == a or name.startswith(a + ".") for a in adapted)}  # (an adapter's own Linears too)
    return unmatched, sorted(set(map(layer_kind, adapted))), sorted(left)


def layer_kind(name: str) -> str:
    """A module's name within its layer (after the last layer number): encoder.layer.3.attention.output.dense ->
    attention.output.dense, encoder.layer.3.output.dense -> output.dense; a name without one, whole."""
    parts = name.split(".")
    last = max((i for i, part in enumerate(parts) if part.isdigit()), default=-1)
    return ".".join(parts[last + 1:])


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in encoder.modules() if isinstance(m, LoraLayer)]


def activate_adapter(layers: list[nn.Module], task: str) -> None:
    """Make `task`'s adapter the active one. (peft's set_adapter would also freeze the other tasks'
    adapters; every adapter must stay trainable, or DDP and the optimizer lose track of them.)"""
    for layer in layers:
        layer._active_adapter = [task]


def split_top_layers(encoder: nn.Module, tasks: list[str], k: int) -> nn.ModuleDict:
    """Remove the top k layers (and the modules after them, which become the identity in the shared
    encoder) from the shared encoder and return a copy of them per task: [layer, ..., after, ...]."""
    family = families.of(encoder.config)
    stack = family.layer_stack(encoder)
    shared = len(stack) - k
    if not family.min_shared_layers <= shared <= len(stack) - 1:
        most = len(stack) - family.min_shared_layers
        because = f" ({family.name} keeps {family.min_shared_layers} shared)" if family.min_shared_layers else ""
        raise SharingError("mtl.task_layers", f"must be between 1 and {most} of the encoder's {len(stack)} layers"
                                              f"{because}, got {k}")
    top = list(stack[shared:]) + [encoder.get_submodule(name) for name in family.after_layers]
    encoder.set_submodule(family.layers, stack[:shared])
    for name in family.after_layers:
        encoder.set_submodule(name, nn.Identity())
    return nn.ModuleDict({task: copy.deepcopy(nn.ModuleList(top)) for task in tasks})


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, attention_mask, encoder: nn.Module) -> torch.Tensor:
    """A task's own top layers (as its family runs them) on the shared encoder's output, then the
    modules that follow the layers."""
    family = families.of(encoder.config)
    count = len(layers) - len(family.after_layers)
    hidden = family.run_layers(encoder, layers[:count], hidden, attention_mask)
    for module in layers[count:]:
        hidden = module(hidden)
    return hidden


def task_layer_keys(encoder: nn.Module) -> tuple[str, int, list[str]]:
    """Where a task's copy sits in a plain encoder state: the layers' prefix, the number of shared
    layers (the copy's first index there) and the modules after the layers (the copy's last items)."""
    family = families.of(encoder.config)
    return family.layers, len(family.layer_stack(encoder)), list(family.after_layers)


def to_model_keys(plain: dict[str, torch.Tensor], model) -> tuple[dict, dict]:
    """Split a plain encoder state (no pooler) into the shared encoder's state and the task layers'
    state of `model` (a MultiTaskModel), following its sharing."""
    sharing = model.config.sharing or {}
    encoder_state, task_state = {}, {}
    if sharing.get("type") == "task_layers":
        layers, bottom, after = task_layer_keys(model.encoder)
        count = len(next(iter(model.task_layers.values()))) - len(after)
        for key, value in plain.items():
            index, rest = None, None
            if key.startswith(f"{layers}."):
                number, rest = key[len(layers) + 1:].split(".", 1)
                index = int(number) - bottom if int(number) >= bottom else None
            elif key.split(".")[0] in after:
                name, rest = key.split(".", 1)
                index = count + after.index(name)
            if index is None:
                encoder_state[key] = value
            else:
                for task in model.task_layers:
                    task_state[f"{task}.{index}.{rest}"] = value
        return encoder_state, task_state
    if sharing.get("type") == "lora":
        wrapped = {k.replace(".base_layer", ""): k for k in model.encoder.state_dict() if not is_adapter_weight(k)}
        return {wrapped.get(k, k): v for k, v in plain.items()}, task_state
    return dict(plain), task_state


def plain_state(model, task: str | None) -> dict[str, torch.Tensor]:
    """The encoder as one plain model for `task`: LoRA delta merged, or the task's top layers in place."""
    sharing = model.config.sharing or {}
    full = model.encoder.state_dict()
    state = {k: v for k, v in full.items() if not is_adapter_weight(k)}
    if sharing.get("type") == "lora":
        deltas = {}
        if task is not None:
            for name, module in model.encoder.named_modules():  # peft keeps an Embedding's in lora_embedding_A
                if hasattr(module, "get_delta_weight") and (task in getattr(module, "lora_A", {})
                                                            or task in getattr(module, "lora_embedding_A", {})):
                    deltas[f"{name}.base_layer.weight"] = module.get_delta_weight(task)
            adapted = {found[1] for k in full  # MODULE.lora_A.TASK.weight; a task may be lora_x
                       if (found := re.fullmatch(r"(.+?)\.lora_(?:embedding_)?[AB]\.([^.]+)(?:\.weight)?", k))
                       and found[2] == task}
            if missed := sorted(adapted - {k.rsplit(".base_layer", 1)[0] for k in deltas}):  # another kind of layer
                raise ValueError(f"the LoRA adapter of task {task} on {', '.join(missed)} cannot be merged")
        state = {k.replace(".base_layer", ""): v + deltas[k] if k in deltas else v for k, v in state.items()}
    elif sharing.get("type") == "task_layers":
        if task is None:
            raise ValueError("a model with task-specific layers has no plain encoder without naming a task")
        layers, bottom, after = task_layer_keys(model.encoder)
        count = len(model.task_layers[task]) - len(after)
        for key, value in model.task_layers[task].state_dict().items():
            index, rest = key.split(".", 1)
            where = f"{layers}.{bottom + int(index)}" if int(index) < count else after[int(index) - count]
            state[f"{where}.{rest}"] = value
    return state
