"""Task heads. Each head turns encoder states into logits and computes its own loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SequenceHead(nn.Module):
    """classification / regression: a per-task pooler on [CLS] (as BertPooler), dropout, linear.

    The layout matches BertForSequenceClassification (pooler.dense + classifier), so a head can be
    exported as a plain transformers model.
    """

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, regression: bool):
        super().__init__()
        self.pooler = nn.ModuleDict({"dense": nn.Linear(hidden_size, hidden_size)})
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_outputs)
        self.regression = regression

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(self.pooler["dense"](hidden_states[:, 0]))
        logits = self.classifier(self.dropout(pooled))
        return logits.squeeze(-1) if self.regression else logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(logits.float(), labels.float())
        return F.cross_entropy(logits.float(), labels)


class TokenHead(nn.Module):
    """tagging: dropout and a linear layer per token; labels are -100 except on each word's first sub-token."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden_states))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


def build_head(spec: dict, hidden_size: int) -> nn.Module:
    """spec: the task's entry in MultiTaskConfig.tasks."""
    if spec["type"] == "tagging":
        return TokenHead(hidden_size, len(spec["labels"]), spec.get("dropout", 0.1))
    regression = spec["type"] == "regression"
    return SequenceHead(hidden_size, 1 if regression else len(spec["labels"]), spec.get("dropout", 0.1), regression)
