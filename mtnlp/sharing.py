"""Soft and partial sharing of the encoder (config.sharing):

- {"type": "lora", "r", "alpha", "dropout", "targets"}: one peft LoRA adapter per task on the shared
  encoder; a task's forward pass runs with its own adapter active.
- {"type": "task_layers", "layers": k}: the bottom layers are shared, the top k are copied per task.

Both can be turned back into a plain encoder state for one task (`plain_state`), which is how a
head is exported as an ordinary transformers model.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def is_adapter_weight(name: str) -> bool:
    """A LoRA adapter's parameter (peft names them ...lora_A.<task>... / ...lora_B.<task>...)."""
    return "lora_" in name


def add_lora_adapters(encoder: nn.Module, tasks: list[str], spec: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    for task in tasks:
        config = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                            target_modules=list(spec["targets"]))
        try:
            with warnings.catch_warnings():  # "multiple adapters in the model": one per task is the point
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(config, encoder, adapter_name=task)
        except ValueError as e:
            raise ValueError(f"mtl.lora_targets: {str(e).splitlines()[0]}") from None
    encoder.requires_grad_(True)  # peft freezes the base weights; freezing is a training choice (mtl.freeze_encoder)


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in encoder.modules() if isinstance(m, LoraLayer)]


def activate_adapter(layers: list[nn.Module], task: str) -> None:
    """Make `task`'s adapter the active one. (peft's set_adapter would also freeze the other tasks'
    adapters; every adapter must stay trainable, or DDP and the optimizer lose track of them.)"""
    for layer in layers:
        layer._active_adapter = [task]


def split_top_layers(encoder: nn.Module, tasks: list[str], k: int) -> nn.ModuleDict:
    """Remove the top k layers from the shared encoder and return a copy of them per task."""
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise ValueError(f"mtl.task_layers needs a BERT-style encoder (encoder.layer); "
                         f"{type(encoder).__name__} has none")
    if not 1 <= k <= len(stack):
        raise ValueError(f"mtl.task_layers: must be between 1 and the encoder's {len(stack)} layers, got {k}")
    top = stack[len(stack) - k:]
    encoder.encoder.layer = stack[:len(stack) - k]
    return nn.ModuleDict({task: copy.deepcopy(top) for task in tasks})


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, attention_mask, config) -> torch.Tensor:
    """The task's own top layers, with the attention mask built as the encoder builds it."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def shared_layer_count(encoder: nn.Module) -> int:
    return len(encoder.encoder.layer)


def to_model_keys(plain: dict[str, torch.Tensor], model) -> tuple[dict, dict]:
    """Split a plain encoder state (BERT keys, no pooler) into the shared encoder's state and the
    task layers' state of `model` (a MultiTaskModel), following its sharing."""
    sharing = model.config.sharing or {}
    encoder_state, task_state = {}, {}
    if sharing.get("type") == "task_layers":
        bottom = shared_layer_count(model.encoder)
        for key, value in plain.items():
            parts = key.split(".")
            if parts[:2] == ["encoder", "layer"] and int(parts[2]) >= bottom:
                rest = ".".join([str(int(parts[2]) - bottom)] + parts[3:])
                for task in model.task_layers:
                    task_state[f"{task}.{rest}"] = value
            else:
                encoder_state[key] = value
        return encoder_state, task_state
    if sharing.get("type") == "lora":
        wrapped = {k.replace(".base_layer", ""): k for k in model.encoder.state_dict() if not is_adapter_weight(k)}
        return {wrapped.get(k, k): v for k, v in plain.items()}, task_state
    return dict(plain), task_state


def plain_state(model, task: str | None) -> dict[str, torch.Tensor]:
    """The encoder as one plain model for `task`: LoRA delta merged, or the task's top layers in place."""
    sharing = model.config.sharing or {}
    state = {k: v for k, v in model.encoder.state_dict().items() if not is_adapter_weight(k)}
    if sharing.get("type") == "lora":
        deltas = {}
        if task is not None:
            for name, module in model.encoder.named_modules():
                if hasattr(module, "get_delta_weight") and task in getattr(module, "lora_A", {}):
                    deltas[f"{name}.base_layer.weight"] = module.get_delta_weight(task)
        state = {k.replace(".base_layer", ""): v + deltas[k] if k in deltas else v for k, v in state.items()}
    elif sharing.get("type") == "task_layers":
        if task is None:
            raise ValueError("a model with task-specific layers has no plain encoder without naming a task")
        bottom = shared_layer_count(model.encoder)
        for key, value in model.task_layers[task].state_dict().items():
            index, rest = key.split(".", 1)
            state[f"encoder.layer.{bottom + int(index)}.{rest}"] = value
    return state
