"""Export one head as a plain transformers checkpoint: AutoModelFor{SequenceClassification,
TokenClassification,MultipleChoice,QuestionAnswering}, as its task type says (export_class), or the
encoder alone as the family's base model (AutoModel: export_encoder).

A task head is built from its encoder family's own head modules under the family's own names
(families.py), so the export is a mapping of keys: the encoder (adapter merged / task layers in
place) under the model's base prefix, the head's keys as they are (or moved into the base model
where the family keeps them there: BERT's pooler). The exported model needs no mtnlp to load and
gives the same logits.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import transformers
from transformers import AutoConfig, AutoModel

from .encoders import save_tokenizer
from .errors import UserError
from .folders import weights_readable_as_umask
from .modeling import MultiTaskModel
from .tasks import task_type


def export_config(model: MultiTaskModel, task: str):
    """The encoder's config as the family's model for `task`'s head (labels, problem type, dropout)."""
    spec = model.config.tasks[task]
    config = AutoConfig.for_model(**{**model.config.encoder.to_dict(), "architectures": None})
    task_type(spec["type"]).export_config(config, spec)
    setattr(config, model.family.dropout_key, spec.get("dropout", 0.1))
    return config


def checked_task(model: MultiTaskModel, task: str | None) -> str:
    """`task`, one of the model's (None: the first)."""
    if task is None:
        return next(iter(model.config.tasks))
    if task not in model.config.tasks:
        raise UserError(f"--task {task}: the model has no such task (it has: {', '.join(model.config.tasks)})")
    return task


def export_head(model: MultiTaskModel, task: str):
    checked_task(model, task)
    family = model.family
    family.check_export(model.config.encoder)
    config = export_config(model, task)
    auto = getattr(transformers, task_type(model.config.tasks[task]["type"]).export_class)
    try:
        exported = auto.from_config(config)
    except ValueError:  # transformers has no such class for this family (e.g. no *ForMultipleChoice)
        raise UserError(f"cannot export the {task} head: transformers has no {auto.__name__} class for "
                        f"{family.name} encoders") from None
    prefix = exported.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in model.encoder_state(task).items()}  # adapter merged / layers in place
    state.update({family.export_key(k, prefix): v for k, v in model.heads[task].state_dict().items()})
    return with_weights(exported, state, f"the {family.name} head")


def with_weights(exported, state: dict, what: str):
    """`exported` holding exactly `state`, in eval mode; a UserError naming `what` when their keys differ (a family
    entry that does not match its transformers classes)."""
    expected = set(exported.state_dict())
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise UserError(f"cannot export {what} as {type(exported).__name__}: its layout differs "
                        f"(missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]})")
    exported.load_state_dict(state, strict=True)
    return exported.eval()


def pooler_task(model: MultiTaskModel, task: str) -> str | None:
    """The task whose head's pooler the exported encoder gets: `task`'s, or the first head's that has one
    (the family's base model keeps it, families.py base_head: BERT's), or None when no head has one."""
    return next((t for t in dict.fromkeys([task, *model.heads]) if any(
        hasattr(model.heads[t], name) for name in model.family.base_head)), None)


def encoder_load_kwargs(model: MultiTaskModel, task: str | None = None) -> dict:
    """What AutoModel.from_pretrained needs besides the folder to load export_encoder's model as it was saved: a
    base model that keeps a pooler no head has is saved without one, and its config cannot say so (BERT builds
    one unless told add_pooling_layer=False: a random one, which transformers' LOAD REPORT lists as missing; MPNet,
    ALBERT and other families mtnlp has no head entry for alike)."""
    task = checked_task(model, task)
    return {"add_pooling_layer": False} if takes_pooling_option(model) and pooler_task(model, task) is None else {}


def takes_pooling_option(model: MultiTaskModel) -> bool:
    """Whether the family's base model is built with or without a pooler as told (add_pooling_layer: BERT, MPNet)."""
    return "add_pooling_layer" in inspect.signature(type(model.encoder).__init__).parameters


def export_encoder(model: MultiTaskModel, task: str | None = None):
    """The encoder alone as the family's plain base model (what AutoModel.from_pretrained loads) for `task`
    (default the first; with hard sharing every task has the same encoder): its adapter merged / its layers in
    place, with the pooler of `task`'s head (or of the first head that has one) where the base model keeps one,
    and built without a pooler where no head has one (BERT: add_pooling_layer=False; loading it so needs
    encoder_load_kwargs), so no weight is random."""
    task = checked_task(model, task)
    family = model.family  # (any family: the base model is transformers' own, whatever mtnlp knows of its heads)
    config = AutoConfig.for_model(**{**model.config.encoder.to_dict(), "architectures": None})
    state = dict(model.encoder_state(task))  # adapter merged / layers in place
    pooled = pooler_task(model, task)
    if pooled is not None:
        state.update({k: v for k, v in model.heads[pooled].state_dict().items() if k.split(".")[0] in family.base_head})
    exported = AutoModel.from_config(config, **({"add_pooling_layer": pooled is not None}
                                                if takes_pooling_option(model) else {}))
    return with_weights(exported, state, f"the {family.name} encoder")  # (e.g. a pooler no head has)


def export_folder(model: MultiTaskModel, tokenizer, task: str, out: str | Path) -> Path:
    """What `mtnlp export` writes: the exported head's model and the model's tokenizer, in `out`. For a
    family without token types the tokenizer stops giving token_type_ids (e.g. the BERT tokenizer of
    a RoBERTa-family model), so `exported(**tokenizer(texts))` and transformers' pipelines just work;
    its model_max_length is the length the model was trained with."""
    export_head(model, task).save_pretrained(out)
    return save_export_tokenizer(model, tokenizer, out)


def export_encoder_folder(model: MultiTaskModel, tokenizer, out: str | Path, task: str | None = None) -> Path:
    """What `mtnlp export --encoder` writes: export_encoder's base model and the tokenizer (as export_folder's),
    in `out`: `AutoModel.from_pretrained(out)` loads it without mtnlp."""
    export_encoder(model, task).save_pretrained(out)
    return save_export_tokenizer(model, tokenizer, out)


def save_export_tokenizer(model: MultiTaskModel, tokenizer, out: str | Path) -> Path:
    """The model's tokenizer beside an exported model in `out` (see export_folder)."""
    weights_readable_as_umask(out)
    tokenizer = copy.deepcopy(tokenizer)
    if not model.uses_token_type_ids and "token_type_ids" in tokenizer.model_input_names:
        names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = names
    trained = (model.config.mtnlp or {}).get("max_length")
    if trained:  # truncation=True (transformers' pipelines) then cuts where training and mtnlp predict do
        tokenizer.model_max_length = tokenizer.init_kwargs["model_max_length"] = trained
    save_tokenizer(tokenizer, out)
    return Path(out)
