"""Training components, each small and used by the recipe scripts in recipes/ (the default loop:
recipes/multitask.py, which `mtnlp train` runs).

setup() builds a Run: Accelerate and the precision (precision.py), the tokenised tasks, the model (new, or
transferred from a trained one: transfer.py), optimizer and schedule, the loss weighting (weighting.py), the
gradient method (gradients.py) and the DataLoader whose batches the task sampler plans (a task is chosen each
step by sampling.TaskSampler, through loader.BatchPlan, the DataLoader's sampler). train_step() makes one
optimizer update: draw its micro-batches (draw_update: each one's share of its task's loss), then for
each, forward, the head's loss (its task type's, mtnlp/tasks, called by MultiTaskModel.forward), weighting,
backward. evaluate_and_select() keeps the best model; checkpoint() and resume() make a run
restartable; finish() evaluates the kept model and writes the run directory (report.py).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import shlex
import signal
import sys
import threading
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, set_seed
from safetensors.torch import load_file
from tqdm.auto import tqdm
from . import families, hub, precision, report
from .batches import StreamBatches, TaskBatches
from .checkpoint import load_checkpoint, prune_checkpoints, remove_checkpoints_after, save_checkpoint
from .data import RawTask, TaskData, load_task, model_rows, rows_signature, split_facts
from .encoders import encoder_error, load_encoder, load_tokenizer, resolve_encoder, vocabulary_problem
from .errors import UserError
from .evaluation import evaluate_split, fit_to_validation, main_metric, selection_score, truncation_note
from .folders import STATE_FILE, find_checkpoint, hold_run_folder, model_step, release_run_folder
from .gradients import GradientMethod, build_gradient_method, reduce_mean
from .loader import BatchPlan, training_loader
from .metrics import load_metrics
from .modeling import MultiTaskModel, to_device
from .recipe import (Recipe, TrainingSpec, check_training_paths, default_metrics, refuse_to_mix, run_directory,
                     sharing_config)
from .sampling import TaskSampler
from .sharing import SharingError, is_adapter_weight, lora_placement
from .spec import changed
from .transfer import say_transfer, trained_source, training_record
from .tasks import task_type
from .tasks.base import column
from .weighting import StaticWeighting, build_weighting


@dataclass
class TrainResult:
    run_dir: Path
    model: MultiTaskModel  # the best model (by mean main validation metric)
    last_model: MultiTaskModel  # the model as training left it
    metrics: dict
    accelerator: Accelerator
    loss_weights: dict  # each task's loss weight at the end (mtl.weighting)
    precision: precision.Precision


def make_accelerator(recipe: Recipe) -> tuple[Accelerator, precision.Precision]:
    """The Accelerator for the recipe, in the precision the policy picks for its device (precision.py)."""
    t = recipe.training
    # Accelerate keeps one global state per process; a second train() in the same process (tests,
    # notebooks) may ask for another precision. The distributed (partial) state is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    cpu = t.cpu
    missing = [name for name in ("RANK", "WORLD_SIZE") if name not in os.environ]
    if os.environ.get("LOCAL_RANK", "-1") != "-1" and missing and not torch.distributed.is_initialized():  # (-1: unset)
        raise UserError(f"LOCAL_RANK={os.environ['LOCAL_RANK']} is set, {' and '.join(missing)} not: a launcher's "
                        "variable left in the environment? Unset LOCAL_RANK, or start under torchrun or accelerate launch")
    state = PartialState(cpu=cpu, timeout=datetime.timedelta(seconds=t.ddp_timeout))  # (launched: forms the group)
    launched = torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1
    if launched and state.num_processes == 1:  # each process would train alone, into the same folder
        if state.device.type != "cpu":
            raise UserError(f"{recipe.where('training.cpu')}: training.cpu: launched as "
                            f"{torch.distributed.get_world_size()} processes, but Accelerate runs no DDP on "
                            f"{state.device.type} devices: launch one process, or set training.cpu: true")
        # a machine without a GPU: Accelerate makes DDP on CPUs only when told to (cpu=True)
        PartialState._reset_state()
        cpu, state = True, PartialState(cpu=True)
    chosen = precision.resolve(t.mixed_precision, state.device)
    try:
        accelerator = Accelerator(
            mixed_precision=chosen.accelerate,
            cpu=cpu,
            log_with=t.report_to or None,
            project_dir=str(run_directory(recipe)),
            # only the chosen task's head gets gradients in a step; with one task every parameter does (and
            # DDP warns that the search for unused ones is a cost for nothing)
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=len(recipe.tasks) > 1)],
        )
    except ValueError as e:  # e.g. fp16 requested on a machine without a GPU
        raise UserError(f"{recipe.where('training.mixed_precision')}: training.mixed_precision: {e}") from None
    return accelerator, chosen


def make_optimizer(model, t: TrainingSpec, weighting=None, weighting_lr: float = 1e-3):
    """AdamW (no weight decay on biases and norm weights: the 1-D parameters, whatever a family names
    them, and a table named a bias, as the Trainer: MPNet's relative_attention_bias) with linear warm-up, then
    `t.lr_schedule`; the heads at `head_lr` (default: lr). Learned loss weights (if any) are a group with their
    own learning rate."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tasks = set(getattr(getattr(model, "config", None), "tasks", None) or ())  # (any torch module trains)
    groups = []
    for is_head, lr in ((False, t.lr), (True, t.head_lr or t.lr)):
        part = [(n, p) for n, p in trainable if n.startswith("heads.") == is_head]
        groups += [{"params": [p for n, p in part if decayed(n, p, tasks)], "weight_decay": t.weight_decay, "lr": lr},
                   {"params": [p for n, p in part if not decayed(n, p, tasks)], "weight_decay": 0.0, "lr": lr}]
    if weighting is not None and list(weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0, "lr": weighting_lr})
    optimizer = torch.optim.AdamW(groups, lr=t.lr, fused=True)  # fused: ~3x faster steps on CPU
    warmup = min(math.ceil(t.warmup * t.steps), t.steps - 1)  # the last update's lr is never 0 (steps: 1)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, t.lr_schedule, warmup,
                                                                                     t.steps))


def decayed(name: str, parameter, tasks=()) -> bool:
    """Not a bias or norm weight (1-D), nor a table a module names a bias (its own name, not a task's: heads.T...,
    lora_A.T.weight)."""
    own = [part for part in name.split(".") if part not in tasks][-2:]
    return parameter.ndim >= 2 and not any("bias" in part.lower() for part in own)


def lr_factor(schedule: str, warmup: int, steps: int, step: int) -> float:
    """The learning rate's factor at `step`: transformers' get_{linear,cosine,constant}_schedule_with_warmup,
    written out (importing transformers.optimization pulls in its Trainer utilities and peft: 3 s of every start-up)."""
    if step < warmup:
        return step / warmup
    if schedule == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))
    return 1.0 if schedule == "constant" else max(0.0, (steps - step) / max(1, steps - warmup))


def set_group_settings(optimizer, scheduler, wanted: list[dict]) -> None:
    """Make `wanted` ({"initial_lr", "weight_decay"} of each group: the recipe's) the groups' learning rates before
    the schedule's factor and their weight decay (a resumed run's optimizer and scheduler state bring the
    checkpoint's: training.lr, head_lr and weight_decay given now apply from here on)."""
    scheduler.base_lrs = [settings["initial_lr"] for settings in wanted]
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group, settings in zip(optimizer.param_groups, wanted):
        group.update(settings, lr=settings["initial_lr"] * factor)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports


def training_batches(recipe: Recipe, tasks: dict[str, TaskData], accelerator: Accelerator):
    """The task sampler, each task's batch iterator (this rank's share) and its training rows."""
    t = recipe.training
    options = recipe.sampling.model_dump(exclude={"strategy", "group_by_length"})  # the strategies' own keys
    sampler = TaskSampler({n: d.train_size() for n, d in tasks.items()}, recipe.sampling.strategy, t.seed,
                          steps=t.steps, per_step=t.grad_accum, **options)
    rank, world = accelerator.process_index, accelerator.num_processes
    for d in tasks.values():  # said at start, not when the sampler first picks the task (if ever)
        if d.stream and d.stream.size < world:
            raise UserError(f"{d.stream.source.name}: {d.stream.size} example(s) in an epoch (its size); training "
                            f"needs at least one per process ({world})")
    batches = {n: StreamBatches(d.stream.examples, d.stream.encode, t.batch_size, t.seed + i, rank, world,
                                d.stream.source.name, d.stream.size) if d.stream
               else TaskBatches(column(d.splits["train"], "length"), t.batch_size, t.seed + i, recipe.sampling.group_by_length,
                                rank, world, t.batch_tokens)
               for i, (n, d) in enumerate(tasks.items())}
    # a streamed task's batches come as rows already (StreamBatches); the others' as indices into these
    return sampler, batches, {n: model_rows(d.splits["train"]) for n, d in tasks.items() if not d.stream}


def tasks_with_validation(tasks: dict[str, TaskData]) -> list[str]:
    """The tasks with a validation split: the ones model selection and early stopping go by."""
    return [name for name, d in tasks.items() if "validation" in d.splits]


def validation_signatures(tasks: dict[str, TaskData]) -> dict[str, str]:
    return {name: rows_signature(tasks[name].splits["validation"], tasks[name].labels, tasks[name].options)
            for name in tasks_with_validation(tasks)}


def load_tasks(recipe: Recipe, tokenizer, accelerator: Accelerator,
               raw: dict[str, RawTask] | None = None) -> dict[str, TaskData]:
    """Every task tokenised; `raw` (read beforehand, e.g. by the CLI) is consumed, so its examples
    are freed once tokenised."""
    raw = raw if raw is not None else {}
    with accelerator.main_process_first():  # rank 0 tokenises and fills the cache; others read it
        return {name: load_task(recipe, name, spec, tokenizer, recipe.model.max_length, raw=raw.pop(name, None))
                for name, spec in recipe.tasks.items()}


@dataclass
class Progress:
    """Where training is; saved in every checkpoint."""

    step: int = 0
    best_score: float | None = None  # the selection score of the kept model
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    best_validation: dict | None = None  # the kept model's validation metrics
    best_by_label: dict | None = None  # and its validation figures per label (evaluation.evaluate_split's by_label)
    best_metrics: dict | None = None  # and the metrics they are: each task's metric names then
    selected_by: dict | None = None  # each evaluated task's main metric: the rule best_score was computed by
    selected_on: dict | None = None  # each evaluated task's validation rows (data.rows_signature): the data it was computed on
    ended_early: bool = False  # early stopping ended training before training.steps


@dataclass
class Run:
    """Everything a training loop works with, as setup() builds it."""

    recipe: Recipe
    run_dir: Path
    accelerator: Accelerator
    precision: precision.Precision
    tokenizer: Any
    tasks: dict[str, TaskData]
    metrics: dict[str, list[str]]  # each task's metric names; the first is its main metric
    model: torch.nn.Module  # as Accelerate prepared it (DDP-wrapped under several processes)
    unwrapped: MultiTaskModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    weighting: StaticWeighting
    gradient: GradientMethod
    plan: BatchPlan
    batches: Iterator  # (task, padded batch, plan positions after it) from the DataLoader
    positions: dict  # the plan positions after the last batch trained on: what a checkpoint saves
    progress: Progress
    log: report.LossLog
    data_facts: dict  # per task and split: examples, labels, truncation (data.split_facts)
    bar: tqdm | None
    drawn: list = field(default_factory=list)  # the update's micro-batches not yet trained on (draw_update)
    grad_norm: torch.Tensor | None = None  # the last update's gradient norm before clipping (on the device)
    resumed_from: Path | None = None  # the checkpoint folder training.resume_from found
    lock: Path | None = None  # run_dir as the main process holds it (folders.hold_run_folder)


def build_model(recipe: Recipe, tasks: dict[str, TaskData], encoder, source) -> MultiTaskModel:
    """A new multi-task model on the recipe's encoder (as encoders.load_encoder loaded it), or one transferred
    from a trained model."""
    heads = {name: {"type": d.type, "labels": d.labels, "dropout": recipe.tasks[name].dropout,
                    **task_type(d.type).model_spec(recipe.tasks[name])} for name, d in tasks.items()}
    for name, d in tasks.items():
        try:
            weights = task_type(d.type).label_weights(recipe.tasks[name], d.labels, d.splits.get("train"))
        except ValueError as e:
            key = f"tasks.{name}.label_weights"
            raise UserError(f"{recipe.where(key)}: {key}: {e}") from None
        if weights is not None:
            heads[name]["label_weights"] = weights
    sharing = sharing_config(recipe.mtl)
    # nn.ModuleDict (heads, task layers) and nn.ParameterDict (peft's LoRA on an embedding, keyed by task)
    # refuse a key that is one of their attributes
    dicts = (torch.nn.ModuleDict(), torch.nn.ParameterDict())
    for name in heads:
        if any(hasattr(d, name) for d in dicts):
            key = f"tasks.{name}"
            raise UserError(f"{recipe.where(key)}: {key}: a name torch's module dicts have for their own "
                            f"(`.{name}`): rename the task")
    try:
        if source:  # transfer: multi-task model -> new run (e.g. fine-tune one target task)
            model = MultiTaskModel.from_trained(source, heads, keep_heads=recipe.model.init_heads, sharing=sharing,
                                                encoder_of=recipe.model.init_encoder_of)
        else:
            model = MultiTaskModel.from_encoder(encoder, heads, sharing=sharing)
    except ValueError as e:  # a sharing setting that does not fit this encoder (which loaded)
        key = e.key if isinstance(e, SharingError) else "model.init_from" if source else "mtl.sharing"
        raise UserError(f"{recipe.where(key)}: {str(e).splitlines()[0]}") from None
    limit = families.max_tokens(model.config.encoder)
    if limit is not None and recipe.model.max_length > limit:  # e.g. RoBERTa: 514 positions hold 512 tokens
        raise UserError(f"{recipe.where('model.max_length')}: model.max_length: {recipe.model.max_length} is more "
                        f"than the encoder's position embeddings hold ({limit})")
    if recipe.mtl.freeze_encoder:  # soft sharing only: adapters / task layers and heads train
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(is_adapter_weight(name))
    if recipe.training.gradient_checkpointing:
        try:
            model.checkpoint_activations()
        except ValueError as e:  # an encoder whose layers transformers cannot checkpoint
            raise UserError(f"{recipe.where('training.gradient_checkpointing')}: training.gradient_checkpointing: "
                            f"{e}") from None
    return model


def resume(run: Run, folder: Path, own: bool) -> None:
    """Continue from a checkpoint: weights, optimizer, schedule, batch plan, loss weights and log, progress.
    In the run's own folder (`own`), what was written after the checkpoint's step is written again."""
    recipe, accelerator, optimizer, t = run.recipe, run.accelerator, run.optimizer, run.recipe.training
    where = f"{recipe.where('training.resume_from')}: training.resume_from"
    wanted = [{key: group[key] for key in ("initial_lr", "weight_decay")} for group in optimizer.param_groups]
    state = load_checkpoint(folder, run.unwrapped, optimizer, accelerator.process_index, accelerator.num_processes,
                            accelerator.scaler)
    # the optimizer's head parameters, learned loss weights and batch seeds go by the tasks' order
    if state.get("tasks", list(run.tasks)) != list(run.tasks):
        raise UserError(f"{where}: {folder}: the checkpoint's tasks are in the order {', '.join(state['tasks'])}, "
                        f"the recipe's {', '.join(run.tasks)}: list them in the checkpoint's order to resume")
    if state["ranks"] != accelerator.num_processes and accelerator.is_main_process:
        warnings.warn(f"{folder}: written by {state['ranks']} process(es), resumed with {accelerator.num_processes}: "
                      "the batches differ from an uninterrupted run's", stacklevel=3)
    run.scheduler.load_state_dict(state["scheduler"])
    set_group_settings(optimizer, run.scheduler, wanted)  # this recipe's lr, head_lr and weight_decay
    run.plan.load_state_dict(state)
    for name, batches in state["batches"].items():  # (a streamed task's size is not known up front)
        had = batches.get("cut", {}).get("examples")
        if had is not None and had != run.tasks[name].train_size() and accelerator.is_main_process:
            warnings.warn(f"{folder}: task {name} had {had} training examples, it has {run.tasks[name].train_size()} "
                          f"now: its epoch {batches['epoch']} starts again from its beginning", stacklevel=3)
    run.weighting.load_state_dict_json(state.get("weighting", {}))  # this rank's own DWA sums
    run.gradient.load_state_dict_json(state.get("gradient", {}))
    run.log.load_state_dict(state.get("loss_log", {}), accelerator.device)  # the losses since the last record
    run.progress = Progress(**{f.name: state[f.name] for f in fields(Progress) if f.name in state})
    if "steps" not in state:  # a checkpoint of an mtnlp before 12-04 did not record its run's steps: its recipe did
        state["steps"] = report.planned_steps(folder.parent.parent, state["step"]) or t.steps
    # stopped by early stopping (a checkpoint written before that was recorded: it ended before its steps), and
    # still so by this recipe's patience: a larger one trains on
    ended = state.get("ended_early", state["step"] < state["steps"])
    patience = t.early_stopping_patience
    run.progress.ended_early = ended and patience is not None and run.progress.bad_evals >= patience
    rule = run.progress.selected_by  # scores of two rules do not compare: the kept model would be the wrong one
    if rule and run.progress.best_score is not None:
        changed = [n for n in rule if n in run.metrics and run.metrics[n][0] != rule[n]]
        if changed:
            key = f"tasks.{changed[0]}.metrics"
            raise UserError(f"{recipe.where(key)}: {key}: {folder} chose its best model by {changed[0]}'s "
                            f"{rule[changed[0]]}, this recipe's main metric is {run.metrics[changed[0]][0]}: keep "
                            f"{rule[changed[0]]} first to resume (or start a new run)")
        evaluated = tasks_with_validation(run.tasks)
        if sorted(rule) != sorted(evaluated):
            raise UserError(f"{where}: {folder} chose its best model by the validation splits of "
                            f"{', '.join(rule)}; this recipe has {', '.join(evaluated) or 'none'}: give the same "
                            "validation splits to resume (or start a new run)")
        if run.progress.selected_on:  # (a checkpoint of an mtnlp before it has none)
            now = validation_signatures(run.tasks)
            changed = [n for n in evaluated if run.progress.selected_on.get(n, now[n]) != now[n]]
            if changed:
                name = changed[0]
                settings = "".join(f", {key}" for key in run.tasks[name].options if key != "text_pair")
                raise UserError(f"{recipe.where(f'tasks.{name}')}: tasks.{name}: {folder} chose its best model by "
                                f"another validation split of {name}: its examples or what scores them differ "
                                f"(data: another file or carve, other columns; model.max_length; labels{settings}): "
                                "give the same to resume (or start a new run)")
    step = run.progress.step  # (not past training.steps: check_training_paths)
    if accelerator.is_main_process and own:
        report.forget_after(run.run_dir, step)  # logs and checkpoints after it are written again
        remove_checkpoints_after(run.run_dir / "checkpoints", step)
        changed = report.resume_recipe(run.run_dir, recipe, run.precision, step)
        if changed:
            print(f"resumed with other settings than those that trained up to step {step}: " + "; ".join(changed))
    accelerator.print(f"resumed from {folder} at step {step}")
    if stopped_early(run) and step < t.steps:
        accelerator.print(f"the run had stopped early (no improvement in {plural(run.progress.bad_evals, 'evaluation')}): nothing "
                          "to train; a larger training.early_stopping_patience trains on")
    if state["steps"] != t.steps:  # the schedule's decay is stretched (or shortened) from here
        accelerator.print(f"training.steps: {t.steps} (the checkpoint's run: {state['steps']}); the learning "
                          f"rate follows the schedule for {t.steps} steps: {run.scheduler.get_last_lr()[0]:.3g} from "
                          f"step {step + 1}")


def setup(recipe: Recipe, raw: dict[str, RawTask] | None = None) -> Run:
    """Everything the loop needs, resumed from a checkpoint if training.resume_from says so.
    `raw`: the tasks' examples if already read (data.read_task)."""
    t, m = recipe.training, recipe.mtl
    check_training_paths(recipe)  # (mtnlp train checks them before the data is read; a Python caller here)
    run_dir = run_directory(recipe)
    # resuming this run's own checkpoint continues it; a new run, or one resumed from another run's
    # checkpoint, must not mix with what run_dir holds
    folder = find_checkpoint(run_dir, t.resume_from, f"{recipe.where('training.resume_from')}: "
                             "training.resume_from") if t.resume_from else None
    own = folder is not None and folder.resolve().parent == (run_dir / "checkpoints").resolve()
    if not own:
        refuse_to_mix(run_dir, recipe)
    accelerator, chosen = make_accelerator(recipe)
    if recipe.push_to_hub and accelerator.is_main_process:  # a token problem is said now, not after training
        try:
            hub.check_push_access(recipe.hub_repo_id)
        except UserError as e:
            raise UserError(f"{recipe.where('push_to_hub')}: push_to_hub: {e}") from None
    set_seed(t.seed)
    source, tokenizer, source_path = trained_source(recipe) if recipe.model.init_from else (None, None, None)
    encoder = resolve_encoder(recipe.model.encoder)
    if tokenizer is None:  # a transferred model brings its own
        tokenizer = load_tokenizer(recipe, encoder)
    pretrained = None if source else load_encoder(recipe, encoder)  # (its errors before the data is tokenised)
    tasks = load_tasks(recipe, tokenizer, accelerator, raw)
    metrics = {name: default_metrics(recipe, name, tasks[name].labels) for name in recipe.tasks}
    load_metrics(name for names in metrics.values() for name in names)  # e.g. a read-only HF_HOME: said before step 1
    model = build_model(recipe, tasks, pretrained, source)
    del pretrained  # (its weights were copied into the model)
    if problem := vocabulary_problem(tokenizer, model.config.encoder):
        raise encoder_error(recipe, problem)
    model.config.mtnlp = training_record(recipe, metrics, source, source_path)

    weighting = build_weighting(m.weighting, {n: recipe.tasks[n].loss_weight for n in tasks},
                                **m.model_dump()).to(accelerator.device)
    optimizer, scheduler = make_optimizer(model, t, weighting, m.weighting_lr)
    if accelerator.ddp_handler is not None and getattr(model.encoder, "pooler", None) is not None:
        accelerator.ddp_handler.find_unused_parameters = True  # a pooler the encoder cannot be built without
        # (SqueezeBERT), which no loss reaches: one task's run failed at step 2 under DDP
    prepared, optimizer = accelerator.prepare(model, optimizer)
    gradient = build_gradient_method(m.gradient, t.seed, **m.model_dump())
    sampler, batches, train_rows = training_batches(recipe, tasks, accelerator)
    plan = BatchPlan(gradient.task_order(sampler, list(tasks), t.grad_accum), batches)
    data_facts = {n: ({"train": {"examples": d.stream.size, "labels": len(d.labels), "streamed": True}} if d.stream else {})
                  | {split: split_facts(ds, d.type, d.labels, tokenizer.unk_token_id) for split, ds in d.splits.items()}
                  for n, d in tasks.items()}
    run = Run(recipe, run_dir, accelerator, chosen, tokenizer, tasks, metrics, prepared, accelerator.unwrap_model(prepared),
              optimizer, scheduler, weighting, gradient, plan, batches=iter(()), positions={}, progress=Progress(),
              log=report.LossLog(), data_facts=data_facts, bar=None)  # batches and bar: once resumed

    accelerator.print(chosen.describe())  # after the set-up, whose errors must be the only output
    accelerator.print(trainable_line(run.unwrapped))
    if accelerator.is_main_process:
        say_what_the_model_leaves_unread(run, new_adapters=m.sharing == "lora" and source is None)
    if accelerator.num_processes > 1:
        accelerator.print(f"{accelerator.num_processes} processes (DDP, {accelerator.distributed_type.value})")
    if source is not None:
        say_transfer(run, source, source_path)
    if chosen.warning and accelerator.is_main_process:
        key = "training.mixed_precision"
        warnings.warn(f"{recipe.where(key)}: {key}: {chosen.warning}", stacklevel=2)
    accelerator.print(report.data_table(data_facts, recipe.model.max_length))
    for name, splits in data_facts.items():  # e.g. cased text on an uncased vocabulary: words the model cannot tell apart
        unknown = next(((split, f["unknown_tokens"]) for split, f in splits.items() if f.get("unknown_tokens", 0) > 0.05), None)
        if unknown and accelerator.is_main_process:
            key = f"tasks.{name}.data"
            warnings.warn(f"{recipe.where(key)}: {key}: the {unknown[0]} split: {unknown[1]:.1%} of its tokens are "
                          f"{tokenizer.unk_token}, words the tokenizer's vocabulary lacks (cased text on an uncased "
                          "vocabulary? another script?): the model reads them all alike", stacklevel=2)
        # QA: said of the train split now, as evaluation says it of its splits
        if splits.get("train", {}).get("answers_in_no_window") and accelerator.is_main_process:
            warnings.warn(truncation_note(tasks[name], "train"), stacklevel=2)
    evaluated = tasks_with_validation(tasks)
    if not evaluated and t.eval_every and t.eval_every < t.steps and accelerator.is_main_process:
        key = "training.early_stopping_patience" if t.early_stopping_patience is not None else "training.eval_every"
        warnings.warn(f"{recipe.where(key)}: {key}: not read: no task has a validation split, so nothing is evaluated "
                      "during training and the final model is kept", stacklevel=2)
    if 0 < len(evaluated) < len(tasks) and t.eval_every and t.eval_every < t.steps:
        others = [n for n in tasks if n not in evaluated]
        by = "model selection and early stopping go" if t.early_stopping_patience is not None else "model selection goes"
        accelerator.print(f"{by} by the validation splits of {', '.join(evaluated)}; "
                          f"{', '.join(others)} {'has' if len(others) == 1 else 'have'} none")
    if accelerator.is_main_process:  # before anything is written: a run started beside this one into its folder is refused
        run.lock = hold_run_folder(run_dir)
        if not own:  # again, held: such a run may have ended since (and left its model)
            refuse_to_mix(run_dir, recipe)
    if folder is not None:
        resume(run, folder, own)
        run.resumed_from = folder
    carried = {}  # another run's log lines up to its checkpoint's step (main process)
    if accelerator.is_main_process and not own:
        report.start_run(run_dir, recipe, chosen)
        if folder is not None and folder.parent.name == "checkpoints":
            carried = report.carry_logs(folder.parent.parent, run_dir, run.progress.step)
    run_dir.mkdir(parents=True, exist_ok=True)
    if t.report_to:  # resumed: TensorBoard hides what an abandoned branch logged after the checkpoint's step
        accelerator.init_trackers(recipe.name, init_kwargs={"tensorboard": {"purge_step": run.progress.step + 1}}
                                  if folder is not None else {})
        for name, scalars in (("train_log.jsonl", report.train_scalars), ("history.jsonl", report.eval_scalars)):
            for record in carried.get(name, []):  # logged as the run they come from did
                accelerator.log(scalars(record), step=record["step"])
    loader = training_loader(plan, train_rows, tokenizer.pad_token_id, {n: d.type for n, d in tasks.items()},
                             accelerator.device, t.dataloader_workers)
    run.batches, run.positions = iter(loader), plan.state_dict()
    every = redraw_every(sys.stderr)
    shown = {} if accelerator.is_local_main_process else {"disable": True}  # (given, it would override TQDM_DISABLE)
    run.bar = tqdm(total=t.steps, initial=run.progress.step, desc="train", mininterval=every, maxinterval=max(every, 10),
                   **shown)
    prepared.train()
    return run


def draw_update(run: Run) -> None:
    """Draw the update's micro-batches (the task sampler's picks, through loader.BatchPlan; as many as the
    gradient method's `micro_batches`) and each one's share of its task's loss in the update: its loss items
    (TaskType.loss_items: rows; labelled tokens for tagging) x the task's micro-batches in the update / the
    task's items in them, over all processes. A task's part of the update is then its loss averaged over all
    its items there, as one larger batch's is (the Trainer pools an update's tokens likewise); micro-batches of
    equal size have share 1. The items are counted on the host; under DDP one all-reduce of the tasks' totals
    on the device, and the shares stay there (no host sync)."""
    t, processes = run.recipe.training, run.accelerator.num_processes
    drawn = [next(run.batches) for _ in range(run.gradient.micro_batches(t.grad_accum, list(run.tasks)))]
    tasks = [task for task, _, _ in drawn]
    update = list(dict.fromkeys(tasks))  # the update's tasks, in order
    items = torch.stack([torch.as_tensor(task_type(run.tasks[task].type).loss_items(batch["labels"]),
                                         dtype=torch.float32) for task, batch, _ in drawn])
    totals = torch.stack([items[[i for i, drew in enumerate(tasks) if drew == task]].sum() for task in update])
    if processes > 1:
        device = run.accelerator.device
        totals = totals.pin_memory() if device.type == "cuda" else totals  # a copy that waits for no GPU work
        totals = run.accelerator.reduce(totals.to(device, non_blocking=True), "sum")
    shares = [items[i] * tasks.count(task) * processes / totals[update.index(task)].clamp(min=1)
              for i, task in enumerate(tasks)]
    run.drawn = [(task, batch, positions, share) for (task, batch, positions), share in zip(drawn, shares)]


def forward_backward(run: Run, sync: bool) -> str:
    """The next micro-batch draw_update drew: its head's loss, times its share, weighted, back-propagated.
    Returns the task. The loss stays on the device (read at log steps only): no host sync per micro-batch."""
    if not run.drawn:
        raise RuntimeError(f"{type(run.gradient).__name__}.accumulate took more micro-batches than its micro_batches() "
                           f"gives, which draw_update drew")
    task, batch, run.positions, share = run.drawn.pop(0)
    with contextlib.nullcontext() if sync else run.accelerator.no_sync(run.model):
        # the head's loss: the task type's loss function (mtnlp/tasks/<type>.py, `loss`)
        loss = run.model(**to_device(batch, run.accelerator.device), task=task).loss * share
        run.accelerator.backward(run.weighting(task, loss) / run.recipe.training.grad_accum)
    run.weighting.observe(task, loss.detach())
    run.log.add(task, loss.detach())
    return task


def train_step(run: Run) -> str:
    """One optimizer update; returns the task of its last micro-batch ("all" for PCGrad, CAGrad and MGDA; with grad_accum > 1
    the others may be of other tasks). The gradient method (mtl.gradient) calls forward_backward once per
    micro-batch of those draw_update drew, and combines their gradients."""
    draw_update(run)
    task = run.gradient.accumulate(run, forward_backward)
    if run.drawn:  # a batch drawn, not trained on: the task's mean would be wrong, and a resume would skip it
        raise RuntimeError(f"{type(run.gradient).__name__}.accumulate took fewer micro-batches than its "
                           f"micro_batches() gives ({len(run.drawn)} left)")
    learned = [p for p in run.weighting.parameters() if p.grad is not None]  # the drawn tasks' (as on every rank)
    if learned and run.accelerator.num_processes > 1:  # DDP does not see the loss weights: average them here
        for p, grad in zip(learned, reduce_mean(run.accelerator, torch.stack([p.grad for p in learned]))):
            p.grad = grad
    run.weighting.end_step(run.progress.step + 1, lambda x: reduce_mean(run.accelerator, x))
    if run.recipe.training.max_grad_norm:
        run.grad_norm = run.accelerator.clip_grad_norm_(run.model.parameters(), run.recipe.training.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.progress.step += 1
    return task


def trained_so_far(run: Run) -> dict[str, dict[str, int]]:
    """Each task's batches (per process; all processes train the same task in a step) and examples
    (summed over processes) trained on so far."""
    seen = run.positions["seen"]
    examples = [seen[n]["examples"] for n in run.tasks]
    if run.accelerator.num_processes > 1:
        examples = run.accelerator.reduce(torch.tensor(examples, device=run.accelerator.device), "sum").tolist()
    return {n: {"batches": seen[n]["batches"], "examples": int(e)} for n, e in zip(run.tasks, examples)}


def log_step(run: Run, task: str) -> None:
    """The progress bar; at log steps (the only host syncs of training) a train_log.jsonl record."""
    if is_log_step(run):
        write_log_record(run)
    # before update(), which draws the bar: the step's task and the newest record's losses
    run.bar.set_postfix_str(f"task={task} " + " ".join(f"{n}={v:.3f}" for n, v in run.log.last.items()), refresh=False)
    run.bar.update(1)


def is_eval_step(run: Run) -> bool:
    """Whether the loop evaluates after the step just trained: every training.eval_every steps, and the last."""
    eval_every, step = run.recipe.training.eval_every, run.progress.step
    return bool(eval_every) and step % eval_every == 0 or step == run.recipe.training.steps


def say_what_the_model_leaves_unread(run: Run, new_adapters: bool) -> None:
    """Recipe keys the built model does not read, warned of: a head's dropout where the family's head has none
    (BERT's span head: transformers' *ForQuestionAnswering layout, which export keeps); with `new_adapters`, a
    lora_target that adapted nothing (peft refuses only targets that all miss: MPNet's attention is attn.q/k/v/o, so
    the default targets adapted its feed-forward layers alone, without a word), and for a family mtnlp has no entry
    for, the layers adapted are named."""
    recipe, encoder = run.recipe, run.unwrapped.encoder
    for name, task in recipe.tasks.items():
        if changed(task, "dropout") and not any(
                isinstance(module, torch.nn.Dropout) for module in run.unwrapped.heads[name].modules()):
            key, family = f"tasks.{name}.dropout", run.unwrapped.family
            why = " (mtnlp's first-token head)" if family is families.GENERIC else " (transformers' own layout, which export keeps)"
            warnings.warn(f"{recipe.where(key)}: {key}: not read: the {family.name} family's {task.type} head has no "
                          f"dropout{why}", stacklevel=3)
    if not new_adapters:
        return
    unmatched, adapted, left = lora_placement(encoder, recipe.mtl.lora_targets)
    without = f"{', '.join(left[:12])}{' ...' if len(left) > 12 else ''}"
    key, kind = "mtl.lora_targets", encoder.config.model_type
    if unmatched:
        where = recipe.where(key if "lora_targets" in recipe.mtl.model_fields_set else "mtl.sharing")
        warnings.warn(f"{where}: {key}: {', '.join(unmatched)} adapted no layer of this {kind} encoder; its linear "
                      f"layers without an adapter: {without} (name them in {key})", stacklevel=3)
    elif families.of(encoder.config) is families.GENERIC:
        print(f"lora adapters on {', '.join(adapted)} of this {kind} encoder" + (f"; without: {without}" if left else "")
              + f" ({key} chooses)")


def trainable_line(model) -> str:
    """E.g. 'parameters: 1,300,633 of 23,866,009 train (5.4%)': what mtl.freeze_encoder and soft sharing leave."""
    sizes = [(p.numel(), p.requires_grad) for p in model.parameters()]
    total, trained = sum(n for n, _ in sizes), sum(n for n, grad in sizes if grad)
    return f"parameters: {trained:,} of {total:,} train ({trained / total:.1%})"


def starts_a_transfer(run: Run) -> bool:
    """Whether the loop is at the start of a transfer (model.init_from), whose starting model is scored before
    training: kept unless training beats it, so that fine-tuning cannot end worse than its source unnoticed."""
    return run.progress.step == 0 and run.recipe.model.init_from is not None


def is_save_step(run: Run) -> bool:
    """Whether the loop checkpoints the step just trained: with training.save_every, every save_every steps
    and the last step (training.steps, or early stopping), so that a resume with more steps or patience
    goes on from there."""
    save_every, step = run.recipe.training.save_every, run.progress.step
    return bool(save_every) and (step % save_every == 0 or step == run.recipe.training.steps or stopped_early(run))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def stopped_early(run: Run) -> bool:
    """Whether early stopping ended training (before training.steps): training.early_stopping_patience
    evaluations without improvement (evaluate_and_select decides; resume reads it again with the resumed
    recipe's patience: a larger one trains on, as do more steps after a run that ended at its own last step)."""
    return run.progress.ended_early


def is_log_step(run: Run) -> bool:
    """Whether the step just trained writes a log record: the only steps that read the device."""
    step, t = run.progress.step, run.recipe.training
    return step % t.log_every == 0 or step == t.steps


def write_log_record(run: Run) -> None:
    """A train_log.jsonl record of the steps since the last one (and the report_to trackers')."""
    step, t = run.progress.step, run.recipe.training
    losses, seen = run.log.flush(list(run.tasks), run.accelerator), trained_so_far(run)
    factor = run.scheduler.lr_lambdas[0](step - 1)  # the update just made (the scheduler is on the next one's)
    record = {"step": step, "lr": run.scheduler.base_lrs[0] * factor, "head_lr": run.scheduler.base_lrs[2] * factor,
              "loss": losses, "weights": run.weighting.weights(), **run.gradient.log_record(),
              **({"grad_norm": float(run.grad_norm)} if run.grad_norm is not None else {}),
              "batches": {n: c["batches"] for n, c in seen.items()},
              "examples": {n: c["examples"] for n, c in seen.items()}}
    if run.accelerator.is_main_process:
        report.append(run.run_dir / "train_log.jsonl", record)
    if t.report_to:
        run.accelerator.log(report.train_scalars(record), step=step)


def checkpoint(run: Run) -> Path:
    """Write run_dir/checkpoints/step-N (model, optimizer, schedule, sampler positions, RNG, progress)."""
    step = run.progress.step
    state = {**asdict(run.progress), "scheduler": run.scheduler.state_dict(), **run.positions,
             "weighting": run.weighting.state_dict_json(), "gradient": run.gradient.state_dict_json(),
             "tasks": list(run.tasks), "steps": run.recipe.training.steps}
    # per rank: what each process counted and summed on its own (DWA sums its own losses until a window ends)
    own = {"seen": run.positions["seen"], "loss_log": run.log.state_dict(), "weighting": run.weighting.state_dict_json()}
    folder = save_checkpoint(run.run_dir / "checkpoints" / f"step-{step:06d}", run.unwrapped, run.optimizer, state,
                             run.accelerator.process_index, run.accelerator.num_processes, own, run.accelerator.scaler)
    if run.accelerator.is_main_process:
        prune_checkpoints(run.run_dir / "checkpoints", run.recipe.training.keep_checkpoints)
    return folder


def finish(run: Run) -> TrainResult:
    """Evaluate the kept model on validation and test (metrics.json, the printed table), write its
    model card, push it if the recipe says so."""
    run.bar.close()
    run.batches = None  # stops the DataLoader's worker processes
    # losses of the steps since the last log step (training stopped early): the same on every process (write_log_record
    # holds a collective): all train the same tasks' micro-batches, and a resume gives each the checkpoint's losses
    if run.log.counts:
        write_log_record(run)
    accelerator, run_dir = run.accelerator, run.run_dir
    accelerator.wait_for_everyone()  # rank 0 may still be writing run_dir/model
    kept = run_dir / "model" / "config.json"
    # a run resumed from another run's checkpoint, or from an older one, may have no model of its best step
    saved = (json.loads(kept.read_text(encoding="utf-8")).get("mtnlp") or {}).get("step") if kept.exists() else -1
    best_checkpoint = checkpoint_of_step(run, run.progress.best_step) if saved != run.progress.best_step else None
    if saved is None and best_checkpoint is None:  # model/ of an mtnlp before 12-03, which did not record its step:
        saved = run.progress.best_step  # the best, as then, unless the best step's checkpoint is there to restore
    accelerator.wait_for_everyone()  # every rank has read model/ before rank 0 may rewrite it
    if best_checkpoint is not None:  # e.g. resumed from the best step's checkpoint, a worse model saved since
        if accelerator.is_main_process:
            restore_model(run, best_checkpoint)
        accelerator.wait_for_everyone()
    elif saved != run.progress.best_step:
        if accelerator.is_main_process and run.progress.best_step is None:
            warnings.warn(f"no validation score was a number (or none was computed): keeping the final model "
                          f"(step {run.progress.step})", stacklevel=2)
        elif accelerator.is_main_process:
            found = "missing" if saved == -1 else f"from step {saved}"
            warnings.warn(f"{run_dir / 'model'} is {found}, and no checkpoint holds the best step ({run.progress.best_step}) "
                          f"the resumed checkpoint knows: keeping the final model (step {run.progress.step})", stacklevel=2)
        run.progress.best_step, run.progress.best_validation = run.progress.step, None
        if accelerator.is_main_process:
            keep_model(run)
        accelerator.wait_for_everyone()
    asked = run.progress.best_metrics  # None: a checkpoint of an mtnlp before 12-06, which did not say
    if asked is None or any(set(names) != set(run.metrics[n]) for n, names in asked.items()):
        run.progress.best_validation = None  # resumed with other metrics: evaluated again, with those asked for now
    best = MultiTaskModel.from_pretrained(run_dir / "model").to(accelerator.device)
    with warnings.catch_warnings():
        if not accelerator.is_main_process:  # every process fits the same: the first says what it warns of
            warnings.simplefilter("ignore")
        fitted = fit_to_validation(best, run.tasks, run.recipe.tasks, run.recipe.training.eval_batch_size,
                                   run.tokenizer.pad_token_id, accelerator.autocast)  # e.g. multi-label thresholds
    if fitted:
        run.progress.best_validation = None  # re-evaluated with what was fitted
        if accelerator.is_main_process:
            report.save_model(run_dir / "model", best, run.tokenizer)
    final = report.final_metrics(run.recipe, run_dir, best, run.tokenizer, run.tasks, run.metrics, run.progress,
                                 accelerator, run.precision, data=run.data_facts, seen=trained_so_far(run))
    if accelerator.is_main_process:
        datasets = sorted({spec.data.hub for spec in run.recipe.tasks.values() if spec.data.hub})
        hub.write_card(run_dir / "model", run_dir, datasets)
        if run.recipe.push_to_hub:
            try:
                url = hub.push(run_dir / "model", run.recipe.hub_repo_id, run.recipe.hub_private)
            except UserError as e:  # training is done and kept: say how to push it later
                raise UserError(f"{e} (the model is kept: `mtnlp push {shlex.quote(str(run_dir / 'model'))} "
                                f"{run.recipe.hub_repo_id}` "
                                "pushes it)") from None
            accelerator.print(f"pushed to {url}")
    if run.recipe.training.report_to:
        accelerator.end_training()
    release_run_folder(run.lock)
    return TrainResult(run_dir, best, run.unwrapped, final, accelerator, run.weighting.weights(), run.precision)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a checkpoint; the exit status is 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted(run: Run, signum: int, folder: Path) -> Interrupted:
    """The exception that ends a run stopped by a signal, after saying where its checkpoint is."""
    run.bar.close()
    release_run_folder(run.lock)  # a Python caller may resume it in another process
    if run.accelerator.is_main_process:
        print(f"\ninterrupted at step {run.progress.step}: checkpoint saved to {folder}; "
              "resume with training.resume_from=latest", file=sys.stderr)
    return Interrupted(signum)


class stop_after_step_on_signal:
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM, Kubernetes and spot instances send before a kill) asks
    the loop to stop after the current step; it then checkpoints and exits. A second Ctrl-C
    interrupts at once (so does any second signal after a Ctrl-C: a launcher passes a second Ctrl-C on
    as SIGTERM).

    With several processes (DDP) the launcher passes the signal to every rank, and they must stop
    after the same step: they agree at the next log or checkpoint step (a maximum over the ranks, read
    where the log record or the checkpoint already waits for every rank), so `requested` is 0 between.
    Every rank must read `requested` after every step (under DDP it is a collective at those steps); read
    again in the same step, it answers without another."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run: Run):
        if not isinstance(run, Run):  # a recipe copied before the ranks agreed passes run.accelerator
            raise TypeError("stop_after_step_on_signal takes the Run: `with stop_after_step_on_signal(run) as stop:`")
        self.run = run
        self.active = threading.current_thread() is threading.main_thread()
        self.signum = 0  # the signal number once one arrived in this process
        self.agreed = (-1, 0)  # (step, the ranks' answer for it)

    @property
    def requested(self) -> int:
        """The signal to stop on after the step just trained (0: go on)."""
        run = self.run
        if run.accelerator.num_processes == 1:
            return self.signum
        if not (is_log_step(run) or is_save_step(run)):
            return 0
        if self.agreed[0] != run.progress.step:
            flag = torch.tensor(self.signum, device=run.accelerator.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.agreed = (run.progress.step, int(flag.item()))
        return self.agreed[1]

    def _handle(self, signum, frame):
        if self.signum and signal.SIGINT in (signum, self.signum):
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        if self.run.accelerator.is_main_process:
            after = "this step" if self.run.accelerator.num_processes == 1 else "the next log or checkpoint step"
            how = "Ctrl-C again to stop now" if signum == signal.SIGINT else "SIGINT to stop now"
            print(f"\n{signal.Signals(signum).name}: stopping after {after} ({how})", file=sys.stderr)

    def __enter__(self):
        if self.active:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        if self.active:
            for s, handler in self._previous.items():
                signal.signal(s, handler)
        if exc[0] is not None:  # the run ends here (a second Ctrl-C, an error): in a notebook, say, the process lives on
            if self.run.bar is not None:  # left open, it would push the next run's bar a line down
                self.run.bar.close()
            release_run_folder(self.run.lock)  # else another process is told a run trains there


def redraw_every(stream) -> float:
    """Seconds between redraws of the progress bar: 30 into a file or a pipe (a log, CI), not 10 a second; tqdm's
    0.1 s for a terminal, a notebook (its widget bar, or its kernel's stream, whose file is the kernel's pipe), a
    stream that says it is a terminal (Spyder's) and one without a file (a wrapper's)."""
    stream = getattr(stream, "wrapped", stream)  # (cli.TrainingOutput, during `mtnlp train`)
    if any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__) or getattr(stream, "isatty", lambda: False)() \
            or type(stream).__module__.split(".")[0] == "ipykernel":
        return 0.1
    try:
        return 0.1 if os.isatty(stream.fileno()) else 30
    except (AttributeError, OSError, ValueError):
        return 0.1


def say(run: Run, text: str) -> None:
    """A line on stdout (main process) during training: above the progress bar, not glued to its end as a
    print would be where both go to one terminal."""
    if run.accelerator.is_local_main_process:
        tqdm.write(text, file=sys.stdout)


def checkpoint_of_step(run: Run, step: int | None) -> Path | None:
    """A checkpoint of `step` on this run's way (its best step and score are this run's), in the run's
    checkpoints/ or beside the checkpoint it resumed from; else the model/ of the run it resumed from, when
    that holds `step` and that run's history.jsonl has `step` as a best with this run's best score (the same
    history: a later best would be a later step)."""
    places = [run.run_dir / "checkpoints"] + ([run.resumed_from.parent] if run.resumed_from else [])
    for folder in (p / f"step-{step:06d}" for p in places if step is not None):
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (state.get("best_step"), state.get("best_score")) == (step, run.progress.best_score):
            return folder
    if run.resumed_from is None or step is None or run.resumed_from.parent.name != "checkpoints":
        return None
    source = run.resumed_from.parent.parent
    if source / "model" == run.run_dir / "model" or not (source / "model" / "model.safetensors").is_file():
        return None
    if model_step(source / "model") != step:
        return None
    try:
        bests = [json.loads(line) for line in (source / "history.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None  # (a line cut short: the history cannot vouch for the model)
    on_the_way = any(r.get("step") == step and r.get("best") and r.get("score") == run.progress.best_score
                     for r in bests if isinstance(r, dict))
    return source / "model" if on_the_way else None


def restore_model(run: Run, folder: Path) -> None:
    """Save the best step's model from its checkpoint (or its run's model/) to run_dir/model (the model training
    has is a later one)."""
    run.unwrapped.config.mtnlp["step"] = run.progress.best_step
    report.save_model(run.run_dir / "model", run.unwrapped, run.tokenizer, load_file(folder / "model.safetensors"))
    say(run, f"the best step's model ({run.progress.best_step}) restored from {folder}")


def keep_model(run: Run) -> None:
    """Save the model as training has it to run_dir/model, as the best step's (config.mtnlp["step"])."""
    run.unwrapped.config.mtnlp["step"] = run.progress.best_step
    report.save_model(run.run_dir / "model", run.unwrapped, run.tokenizer)


def evaluate_and_select(run: Run) -> bool:
    """Evaluate on validation, keep the best model in run_dir/model; return True to stop early."""
    progress, accelerator, recipe = run.progress, run.accelerator, run.recipe
    by_label, losses = {}, {}
    results = evaluate_split(run.unwrapped, run.tokenizer, run.tasks, run.metrics, "validation",
                             recipe.training.eval_batch_size, accelerator.autocast, say=lambda note: say(run, note),
                             by_label=by_label, losses=losses)
    if accelerator.num_processes > 1:  # every rank evaluates; rank 0's figures decide for all, or ranks whose
        results = broadcast_object_list([results])[0]  # kernels round otherwise could stop at different steps
    if not results:  # no validation data: the last model is the one kept
        progress.best_step = progress.step
        if accelerator.is_main_process:
            keep_model(run)
        accelerator.wait_for_everyone()
        return False
    score = selection_score(results, run.metrics)
    if math.isnan(score) and accelerator.is_main_process:
        warnings.warn(f"step {progress.step}: a validation metric is NaN (diverged?): not a better model", stacklevel=2)
    improved = not math.isnan(score) and (progress.best_score is None or score > progress.best_score)
    progress.selected_by = {n: run.metrics[n][0] for n in results}
    progress.selected_on = progress.selected_on or validation_signatures(run.tasks)
    if improved:  # the kept model's validation metrics: finish() reports them without re-evaluating
        progress.best_score, progress.best_step, progress.bad_evals = score, progress.step, 0
        progress.best_validation, progress.best_by_label = results, by_label
        progress.best_metrics = {n: list(run.metrics[n]) for n in results}
        if accelerator.is_main_process:
            keep_model(run)
    else:
        progress.bad_evals += 1
    main = {n: r[main_metric(run.metrics[n])[0]] for n, r in results.items()}
    record = {"step": progress.step, "score": score, "best": improved, "main": main, "validation": results,
              "loss": losses}
    if accelerator.is_main_process:
        report.append(run.run_dir / "history.jsonl", record)
        say(run, f"step {progress.step}: " + report.one_line(results, run.metrics) + (" *" if improved else ""))
    if recipe.training.report_to:
        accelerator.log(report.eval_scalars(record), step=progress.step)
    accelerator.wait_for_everyone()
    patience = recipe.training.early_stopping_patience
    if patience is not None and progress.bad_evals >= patience and progress.step < recipe.training.steps:
        progress.ended_early = True
        say(run, f"early stopping at step {progress.step}: no improvement in {plural(progress.bad_evals, 'evaluation')}")
    return stopped_early(run)
