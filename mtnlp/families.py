"""Encoder families: what the rest of mtnlp asks about an encoder, per config.model_type.

One `Family` entry per family holds its facts:

- inputs: whether it takes token_type_ids (and only with more than one token type), how many tokens
  its position embeddings hold;
- heads: its own sequence (pooling) head, token head and multiple-choice head, built from its own
  transformers modules under the attribute names its AutoModelFor{SequenceClassification,
  TokenClassification,MultipleChoice} gives them, so a task head's state keys ARE the exported
  model's keys (`base_head` names the head modules that the exported model - and the pretrained
  checkpoint - keep inside the base model: BERT's pooler, RoBERTa's pooler of its choice head);
- soft sharing: where its transformer layers live, which modules follow them (ModernBERT's final
  norm), how to run a slice of them (task_layers) and its names for the LoRA targets.

An unknown family trains with a generic first-token head; exporting it or giving it task_layers is
a one-line UserError. Adding a family means adding one entry here (and its tests).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import UserError

# ------------------------------------------------------------------ how a head reads the encoder output


def first_token(hidden: torch.Tensor, attention_mask) -> torch.Tensor:
    return hidden[:, 0]


def mean_tokens(hidden: torch.Tensor, attention_mask) -> torch.Tensor:
    """ModernBERT's "mean" classifier pooling: the mean over the unmasked tokens."""
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device, dtype=torch.bool)
    return (hidden * attention_mask.unsqueeze(-1)).sum(dim=1) / attention_mask.sum(dim=1, keepdim=True)


# ------------------------------------------------------------------ how a slice of layers runs


def run_bert_layers(encoder, layers, hidden, attention_mask):
    """BERT-style layers: layer(hidden, mask), the mask built as the encoder builds it."""
    from transformers.masking_utils import create_bidirectional_mask

    # no skip: deciding to drop a mask without padding reads the mask back from the device (a host sync)
    mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask,
                                     allow_is_bidirectional_skip=False)
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def run_deberta_layers(encoder, layers, hidden, attention_mask):
    """DeBERTa-v2 layers take the relative positions and relative embeddings of the (shared) encoder."""
    stack = encoder.encoder
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    mask = stack.get_attention_mask(attention_mask)
    relative_pos, rel_embeddings = stack.get_rel_pos(hidden), stack.get_rel_embedding()
    for layer in layers:
        hidden, _ = layer(hidden, mask, relative_pos=relative_pos, rel_embeddings=rel_embeddings)
    return hidden


def run_modernbert_layers(encoder, layers, hidden, attention_mask):
    """ModernBERT layers take a mask and rotary embeddings per attention type (global / sliding window)."""
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    kwargs = {"config": encoder.config, "inputs_embeds": hidden, "attention_mask": attention_mask,
              "allow_is_bidirectional_skip": False}  # as in run_bert_layers: no host sync
    masks = {"full_attention": create_bidirectional_mask(**kwargs),
             "sliding_attention": create_bidirectional_sliding_window_mask(**kwargs)}
    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    rotary = {kind: encoder.rotary_emb(hidden, position_ids, kind) for kind in {layer.attention_type for layer in layers}}
    for layer in layers:
        hidden = layer(hidden, attention_mask=masks[layer.attention_type], position_embeddings=rotary[layer.attention_type])
    return hidden


# ------------------------------------------------------------------ the families


def head_config(config, num_outputs: int, dropout: float, dropout_key: str):
    """The encoder config as the family's ForXClassification sees it: num_labels and the head dropout."""
    config = copy.deepcopy(config)
    config.num_labels = num_outputs
    setattr(config, dropout_key, dropout)
    return config


def linear_token_head(config, num_labels: int, dropout: float):
    return None, {"dropout": nn.Dropout(dropout), "classifier": nn.Linear(config.hidden_size, num_labels)}


def linear_span_head(config, num_outputs: int, dropout: float):
    """Extractive QA (start and end logits per token): BERT's, RoBERTa's, ELECTRA's, DeBERTa-v2's layout."""
    return None, {"qa_outputs": nn.Linear(config.hidden_size, num_outputs)}


def first_token_head(config, num_outputs: int, dropout: float):
    """The generic head of an unknown family: dropout and a linear layer on the first token."""
    return first_token, {"dropout": nn.Dropout(dropout), "classifier": nn.Linear(config.hidden_size, num_outputs)}


@dataclass(frozen=True)
class Family:
    name: str  # as users know it: error messages and the README
    model_types: tuple[str, ...]  # config.model_type values
    # (head config, num_outputs, dropout) -> (pool or None, {attribute name: module}) for sequence tasks
    sequence_head: Callable = first_token_head
    token_head: Callable = linear_token_head  # the same for tagging (no pooling)
    # the same for multiple choice (one output per (context, choice) sequence): its *ForMultipleChoice layout
    choice_head: Callable = first_token_head
    span_head: Callable = linear_span_head  # the same for extractive QA: start and end logits per token
    # head modules kept inside the base model (and pretrained with it), in whichever head kind has them:
    # the names are the family's own, so a name means one module of one head kind
    base_head: tuple[str, ...] = ()
    token_type_ids: bool = True  # has token type embeddings (used only with type_vocab_size > 1)
    padding_positions: bool = False  # positions are numbered from pad_token_id + 1 (RoBERTa)
    dropout_key: str = "classifier_dropout"  # the config field of the head dropout
    layers: str | None = "encoder.layer"  # the transformer layers (an nn.ModuleList) in the base model
    after_layers: tuple[str, ...] = ()  # base-model modules applied to the last layer's output
    run_layers: Callable | None = run_bert_layers  # (encoder, layers, hidden, attention_mask) -> hidden
    min_shared_layers: int = 0  # layers task_layers must leave in the shared encoder
    lora_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # BERT name -> this family's modules

    def label(self, config) -> str:
        return self.name if config.model_type in self.model_types else f"'{config.model_type}'"

    def head_modules(self, kind: str, config, num_outputs: int, dropout: float):
        """kind: a TaskType.head_kind ("sequence", "token", "choice", "span"), built by the family's
        `<kind>_head`. Returns (pool or None, {attribute name: module})."""
        build = getattr(self, f"{kind}_head")
        return build(head_config(config, num_outputs, dropout, self.dropout_key), num_outputs, dropout)

    def export_key(self, head_key: str, prefix: str) -> str:
        """A head weight's key in the family's AutoModelFor* head class (base model under `prefix`)."""
        return f"{prefix}.{head_key}" if head_key.split(".")[0] in self.base_head else head_key

    def check_export(self, config) -> None:
        if config.model_type not in self.model_types:  # the generic family has none
            raise UserError(f"cannot export a head of a {self.label(config)} encoder: mtnlp knows the "
                            f"heads of {', '.join(f.name for f in known())} only")

    def layer_stack(self, encoder: nn.Module) -> nn.ModuleList:
        """The base model's transformer layers, or a one-line error where task_layers cannot work."""
        if self.layers is None or self.run_layers is None:
            raise UserError(f"mtl.task_layers: not available for {self.label(encoder.config)} encoders "
                            "(mtnlp does not know how to run a slice of their layers); use sharing: lora or hard")
        return encoder.get_submodule(self.layers)

    def lora_targets(self, targets: list[str]) -> list[str]:
        """The recipe's targets (BERT's module names, or the family's own) as this family's module names."""
        out = []
        for target in targets:
            out += [name for name in self.lora_names.get(target, (target,)) if name not in out]
        return out


def bert_head(config, num_outputs, dropout):
    from transformers.models.bert.modeling_bert import BertPooler

    return None, {"pooler": BertPooler(config), "dropout": nn.Dropout(dropout),
                  "classifier": nn.Linear(config.hidden_size, num_outputs)}


def roberta_head(config, num_outputs, dropout):
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

    return None, {"classifier": RobertaClassificationHead(config)}


def xlm_roberta_head(config, num_outputs, dropout):
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaClassificationHead

    return None, {"classifier": XLMRobertaClassificationHead(config)}


def electra_head(config, num_outputs, dropout):
    from transformers.models.electra.modeling_electra import ElectraClassificationHead

    return None, {"classifier": ElectraClassificationHead(config)}


def deberta_v2_head(config, num_outputs, dropout):
    from transformers.models.deberta_v2.modeling_deberta_v2 import ContextPooler

    pooler = ContextPooler(config)
    return None, {"pooler": pooler, "dropout": nn.Dropout(dropout), "classifier": nn.Linear(pooler.output_dim, num_outputs)}


def distilbert_head(config, num_outputs, dropout):
    return first_token, {"pre_classifier": nn.Linear(config.dim, config.dim), "activation": nn.ReLU(),
                         "dropout": nn.Dropout(dropout), "classifier": nn.Linear(config.dim, num_outputs)}


def roberta_choice_head(config, num_outputs, dropout):
    """RobertaForMultipleChoice: the base model's pooler (dense + tanh on <s>; a copy per task, exported
    into the base model), dropout, a linear score."""
    from transformers.models.roberta.modeling_roberta import RobertaPooler

    return None, {"pooler": RobertaPooler(config), "dropout": nn.Dropout(dropout),
                  "classifier": nn.Linear(config.hidden_size, num_outputs)}


def xlm_roberta_choice_head(config, num_outputs, dropout):
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaPooler

    return None, {"pooler": XLMRobertaPooler(config), "dropout": nn.Dropout(dropout),
                  "classifier": nn.Linear(config.hidden_size, num_outputs)}


def electra_choice_head(config, num_outputs, dropout):
    """ElectraForMultipleChoice: its SequenceSummary (first token, dense, GELU, dropout), a linear score."""
    from transformers.models.electra.modeling_electra import ElectraSequenceSummary

    config.summary_last_dropout = dropout  # the summary's dropout is the head's (config: a copy, head_config)
    return None, {"sequence_summary": ElectraSequenceSummary(config),
                  "classifier": nn.Linear(config.hidden_size, num_outputs)}


def distilbert_span_head(config, num_outputs, dropout):
    return None, {"dropout": nn.Dropout(dropout), "qa_outputs": nn.Linear(config.dim, num_outputs)}


def modernbert_head(config, num_outputs, dropout):
    """ModernBERT's head on its configured pooling (classifier_pooling: cls or mean)."""
    pool = {"cls": first_token, "mean": mean_tokens}[config.classifier_pooling]
    return pool, modernbert_token_head(config, num_outputs, dropout)[1]


def modernbert_token_head(config, num_outputs, dropout):
    from transformers.models.modernbert.modeling_modernbert import ModernBertPredictionHead

    return None, {"head": ModernBertPredictionHead(config), "drop": nn.Dropout(dropout),
                  "classifier": nn.Linear(config.hidden_size, num_outputs)}


FAMILIES = [
    Family("BERT", ("bert",), bert_head, choice_head=bert_head, base_head=("pooler",)),
    Family("RoBERTa", ("roberta",), roberta_head, choice_head=roberta_choice_head, base_head=("pooler",),
           padding_positions=True),
    Family("XLM-RoBERTa", ("xlm-roberta",), xlm_roberta_head, choice_head=xlm_roberta_choice_head,
           base_head=("pooler",), padding_positions=True),
    Family("DeBERTa-v2", ("deberta-v2",), deberta_v2_head, choice_head=deberta_v2_head, dropout_key="cls_dropout",
           run_layers=run_deberta_layers, min_shared_layers=1,
           lora_names={"query": ("query_proj",), "key": ("key_proj",), "value": ("value_proj",)}),
    Family("ELECTRA", ("electra",), electra_head, choice_head=electra_choice_head),
    Family("DistilBERT", ("distilbert",), distilbert_head, choice_head=distilbert_head, span_head=distilbert_span_head,
           token_type_ids=False, dropout_key="seq_classif_dropout",
           layers="transformer.layer",
           lora_names={"query": ("q_lin",), "key": ("k_lin",), "value": ("v_lin",),
                       "dense": ("out_lin", "lin1", "lin2")}),
    Family("ModernBERT", ("modernbert",), modernbert_head, modernbert_token_head, choice_head=modernbert_head,
           span_head=modernbert_token_head,  # its ForQuestionAnswering: head, drop, classifier as for tokens
           token_type_ids=False,
           layers="layers", after_layers=("final_norm",), run_layers=run_modernbert_layers,
           lora_names={"query": ("Wqkv",), "key": ("Wqkv",), "value": ("Wqkv",), "dense": ("Wo", "Wi")}),
]
BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}
GENERIC = Family("generic", (), layers=None, run_layers=None)


def known() -> list[Family]:
    return list(FAMILIES)


def of(config) -> Family:
    """The family of an encoder config (the generic family for an unknown model_type)."""
    return BY_MODEL_TYPE.get(config.model_type, GENERIC)


def causal(config, model) -> bool:
    """Whether the encoder `model` (of `config`, e.g. built on the meta device) is decoder-only: each token sees
    only the ones before it (GPT-2, LLaMA, ...). Its config says so (is_decoder: a BERT built as a decoder), or its
    attention modules (transformers' `is_causal`); a model whose modules do not say is causal when transformers
    has a causal language model of its type but no masked one (BLOOM, Mamba, ...). XLNet, of those, attends both
    ways (attn_type "bi")."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    said = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    if getattr(config, "is_decoder", False) is True or any(said):
        return True
    model_type = config.model_type
    return not said and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and \
        model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES and getattr(config, "attn_type", None) != "bi"


def uses_token_type_ids(config) -> bool:
    """Token type ids go in only where the encoder has more than one token type (a BERT tokenizer gives
    them to every model; RoBERTa's single type would be indexed out of range by a sentence pair's 1s)."""
    return of(config).token_type_ids and (getattr(config, "type_vocab_size", 0) or 0) > 1


# Encoders mtnlp has no family for whose embeddings also number positions from pad_token_id + 1
# (transformers' RoBERTa-style embeddings, create_position_ids_from_input_ids)
PADDING_POSITIONS = ("camembert", "data2vec-text", "ibert", "longformer", "luke", "mpnet", "roberta-prelayernorm",
                     "xlm-roberta-xl", "xmod")


def max_tokens(config) -> int | None:
    """The longest input the position embeddings hold (None: no limit, e.g. relative positions).
    RoBERTa-style embeddings number positions from pad_token_id + 1."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None or positions <= 0 or getattr(config, "position_biased_input", True) is False:
        return None  # (XLNet says -1)
    offset = of(config).padding_positions or config.model_type in PADDING_POSITIONS
    return positions - (config.pad_token_id + 1 if offset else 0)
