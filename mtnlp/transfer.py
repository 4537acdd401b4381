"""Transfer (model.init_from): the trained model a run starts from, what it takes of it (the encoder, heads
whose task name, type and labels match), and what the new model's config records of its source."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, hub
from .encoders import for_words, is_local_path
from .errors import NoRevision, NotFound, UserError
from .folders import model_step, unfinished_run
from .modeling import MultiTaskModel, head_mismatch, transfer_encoder_task
from .tasks.base import reads
from .pipeline import load_pretrained
from .recipe import Recipe

if TYPE_CHECKING:
    from .train import Run


def trained_source(recipe: Recipe) -> tuple[MultiTaskModel, Any, str]:
    """The model named by model.init_from (a run directory, a model folder or a hub id), its tokenizer and
    where it is."""
    path = Path(recipe.model.init_from).expanduser()
    if (path / "model" / "config.json").exists():
        if why := unfinished_run(path):
            step = model_step(path / "model")
            raise UserError(f"{recipe.where('model.init_from')}: model.init_from: {path}: a run that has not finished "
                            f"({why}): finish it (training.resume_from), or give {path / 'model'} to start from "
                            f"its best model so far{'' if step is None else f' (step {step})'}")
        path = path / "model"
    where = str(path) if path.exists() else recipe.model.init_from
    revision = recipe.model.init_revision
    hub_kwargs = {"revision": revision} if revision else {}
    if revision and path.exists():
        raise UserError(f"{recipe.where('model.init_revision')}: model.init_revision: {where} is a local folder; "
                        "a revision is for a hub id")
    try:
        model, tokenizer = load_pretrained(where, **hub_kwargs)
    except UserError as e:  # not found, another model type (a base encoder), damaged weights, ...
        local = "" if path.exists() or is_local_path(where) or not isinstance(e, NotFound) else (
            f"; nor is it a folder in the current folder ({Path.cwd()}), where a relative model.init_from is read")
        key = "model.init_revision" if isinstance(e, NoRevision) else "model.init_from"
        raise UserError(f"{recipe.where(key)}: {key}: {e}{local}") from None
    if not isinstance(model, MultiTaskModel):
        raise UserError(f"{recipe.where('model.init_from')}: model.init_from: {where} is an ONNX export; give the "
                        "run or model folder it was exported from")
    # a source trained without a tagging task kept its tokenizer as pretrained
    tokenizer = for_words(recipe, tokenizer, where, **hub_kwargs)
    return model, tokenizer, where


def training_record(recipe: Recipe, metrics: dict, source: MultiTaskModel | None = None,
                    source_path: str | None = None) -> dict:
    """config.mtnlp of a new model: its metrics, max_length and where it comes from (base_model; with
    model.init_from, the source, its commit, its tasks and the task whose encoder was taken: None for a
    hard-shared source, whose one encoder is every task's). Sources are recorded by hub id only: config.json
    is pushed with the model, and a local path (/home/...) must not go with it (the run's recipe.yaml has it)."""
    record = {"metrics": metrics, "max_length": recipe.model.max_length, "version": __version__}
    if source is None:
        return record | {"base_model": hub.hub_id(recipe.model.encoder)}
    source_id = None if Path(source_path).exists() else hub.hub_id(source_path)
    return record | {"base_model": source_id or (source.config.mtnlp or {}).get("base_model"),
                     "init_from": {"model": source_id, "revision": hub.loaded_commit(source_id, recipe.model.init_revision)
                                   if source_id else None, "tasks": list(source.config.tasks),
                                   "encoder_of": transfer_encoder_task(source, recipe.tasks, recipe.model.init_encoder_of)}}


def transfer_report(source: MultiTaskModel, model: MultiTaskModel, keep_heads: bool) -> dict[str, str]:
    """Per head of a transferred model: kept from its source, or new and why (as from_trained decided)."""
    report = {}
    for name, spec in model.config.tasks.items():
        old = source.config.tasks.get(name)
        mismatch = head_mismatch(name, old, spec)
        report[name] = f"new: {mismatch}" if mismatch else "kept" if keep_heads else "new (model.init_heads: false)"
        if report[name] == "kept" and old.get("text_pair") is not None and old.get("text_pair") != spec.get("text_pair"):
            report[name] += f" (trained on {reads(old)}, now {reads(spec)})"  # it fits, but may need to learn again
        if report[name].startswith("kept") and old.get("label_weights") != spec.get("label_weights"):
            report[name] += (" (its label_weights dropped: the recipe gives none)" if spec.get("label_weights") is None
                             else " (label_weights: this recipe's, not the source's)")
    return report


def say_transfer(run: Run, source: MultiTaskModel, source_path: str) -> None:
    """What a transferred model (model.init_from) took from its source: the encoder, and which heads."""
    recipe, model = run.recipe, run.unwrapped
    heads = transfer_report(source, model, recipe.model.init_heads)
    encoder_of = model.config.mtnlp["init_from"]["encoder_of"]  # as training_record found it
    lora = (source.config.sharing or {}).get("type") == "lora"
    part = "adapter" if lora else "layers"
    soft = f" of task {encoder_of} (its {part}{' merged' if lora else ''})" if encoder_of else ""
    if encoder_of:  # a kept head of another task was trained on its own adapter / layers, not on this encoder
        heads = {name: why.replace("kept", f"kept (trained on {name}'s {part}; the encoder is {encoder_of}'s)", 1)
                 if why.startswith("kept") and name != encoder_of else why for name, why in heads.items()}
    commit = model.config.mtnlp["init_from"]["revision"]  # a hub source's: the commit loaded
    at = f" (commit {commit[:12]})" if commit else ""
    run.accelerator.print(f"init_from {source_path}{at}: the encoder{soft}, and\n"
                          + "\n".join(f"  head {name}: {why}" for name, why in heads.items()))
    kept = any(why.startswith("kept") for why in heads.values())
    if recipe.model.init_heads and not kept and run.accelerator.is_main_process:
        key = "model.init_heads" if "model.init_heads" in recipe.key_lines else "model.init_from"
        warnings.warn(f"{recipe.where(key)}: model.init_heads: no head of the source matches a task here "
                      "(same name, type and labels): every head starts new", stacklevel=3)
