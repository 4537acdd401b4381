"""MultiTaskConfig and MultiTaskModel: one shared encoder, one head per task, transformers-style.

`config.tasks` maps each task name to {"type", "labels", "dropout"}; save_pretrained /
from_pretrained rebuild every head from it with no recipe at hand.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from .heads import build_head


class MultiTaskConfig(PreTrainedConfig):
    model_type = "mtnlp"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    tasks: dict | None = None  # name -> {"type": ..., "labels": [...], "dropout": float}

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.tasks = dict(self.tasks or {})


class MultiTaskModel(PreTrainedModel):
    config_class = MultiTaskConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: MultiTaskConfig):
        super().__init__(config)
        try:  # heads have their own pooler; the encoder's would be an unused (DDP-unfriendly) parameter
            self.encoder = AutoModel.from_config(config.encoder, add_pooling_layer=False)
        except TypeError:
            self.encoder = AutoModel.from_config(config.encoder)
        hidden = config.encoder.hidden_size
        self.heads = nn.ModuleDict({name: build_head(spec, hidden) for name, spec in config.tasks.items()})
        self.post_init()

    def _init_weights(self, module):
        std = getattr(self.config.encoder, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_encoder(cls, encoder: str, tasks: dict[str, dict], **load_kwargs) -> "MultiTaskModel":
        """A new model: pretrained encoder weights from `encoder` (path or hub id), fresh heads.

        Each sequence head's pooler starts from the encoder's pretrained pooler when it has one.
        """
        pretrained = AutoModel.from_pretrained(encoder, **load_kwargs)
        config = MultiTaskConfig(encoder=pretrained.config.to_dict(), tasks=tasks)
        model = cls(config)
        state = pretrained.state_dict()
        model.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("pooler.")}, strict=True)
        if "pooler.dense.weight" in state:
            for head in model.heads.values():
                if hasattr(head, "pooler"):
                    head.pooler["dense"].load_state_dict(
                        {"weight": state["pooler.dense.weight"], "bias": state["pooler.dense.bias"]})
        return model

    @classmethod
    def from_trained(cls, source: "MultiTaskModel", tasks: dict[str, dict], keep_heads: bool = True) -> "MultiTaskModel":
        """Transfer: a new model for `tasks` whose encoder (and, with keep_heads, each head whose task has
        the same name, type and labels) starts from a trained multi-task model."""
        model = cls(MultiTaskConfig(encoder=source.config.encoder.to_dict(), tasks=tasks))
        model.encoder.load_state_dict(source.encoder.state_dict())
        for name, head in model.heads.items():
            old = source.config.tasks.get(name)
            same = old is not None and (old["type"], old["labels"]) == (tasks[name]["type"], tasks[name]["labels"])
            if keep_heads and same:
                head.load_state_dict(source.heads[name].state_dict())
        return model

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, task: str | None = None,
                labels=None, **kwargs):
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model has: {', '.join(self.heads)}")
        head = self.heads[task]
        logits = head(self.encode(input_ids, attention_mask, token_type_ids))
        loss = head.loss(logits, labels) if labels is not None else None
        output = TokenClassifierOutput if self.config.tasks[task]["type"] == "tagging" else SequenceClassifierOutput
        return output(loss=loss, logits=logits)

    def forward_heads(self, input_ids, attention_mask=None, token_type_ids=None,
                      tasks: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Logits of several heads from ONE encoder pass."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return {name: self.heads[name](hidden) for name in (tasks or list(self.heads))}


AutoConfig.register("mtnlp", MultiTaskConfig)
AutoModel.register(MultiTaskConfig, MultiTaskModel)
