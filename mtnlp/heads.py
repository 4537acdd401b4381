"""Task heads. Each head turns encoder states into logits and computes its own loss.

The layers of a head are its encoder family's own (families.py): its direct children, under the
names the family's AutoModelFor* head class gives them (sequence, token, multiple-choice, QA), so that exporting a head
is a mapping of keys. The task type (mtnlp/tasks) decides the number of outputs and the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from . import families
from .precision import AUTOCAST_DEVICES
from .tasks import TaskType, task_type


class TaskHead(nn.Module):
    """A task's head: the encoder family's modules for the task type's kind of head (sequence, token,
    choice, span), run in order after `pool` (how the head reads the encoder output: e.g. the first token, or
    a masked mean; None: the first module reads the whole sequence); its number of outputs comes from
    the task type, and so does its loss (mtnlp/tasks: cross-entropy, MSE, BCE, ...)."""

    def __init__(self, modules: dict[str, nn.Module], pool, task_type: TaskType, spec: dict):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.pool = pool
        self.task_type, self.spec = task_type, spec

    def forward(self, hidden_states: torch.Tensor, attention_mask=None) -> torch.Tensor:
        device = hidden_states.device.type
        if self.task_type.fp32_head and device in AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):  # (a few small matmuls, whose outputs are the predictions)
                return self.forward(hidden_states.to(next(self.parameters()).dtype), attention_mask)
        x = hidden_states if self.pool is None else self.pool(hidden_states, attention_mask)
        for module in self.children():
            x = module(x)
        return x


def build_head(spec: dict, encoder_config) -> nn.Module:
    """spec: the task's entry in MultiTaskConfig.tasks; the head's layers are the encoder family's."""
    kind = task_type(spec["type"])
    pool, modules = families.of(encoder_config).head_modules(kind.head_kind, encoder_config,
                                                             kind.num_outputs(spec["labels"]), spec.get("dropout", 0.1))
    return TaskHead(modules, pool, kind, spec)
