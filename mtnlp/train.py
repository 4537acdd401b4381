"""Multi-task training with Accelerate: one task's batch per step, chosen by the task sampler.

Read `train()` top to bottom: set-up (precision.py picks the precision), the loop (the next batch
from the DataLoader, whose task the sampler drew in loader.BatchPlan; forward; weighted loss;
update), then evaluation of the best model. A head computes its task's loss (heads.py), weighting.py
weights it, and with mtl.gradient=pcgrad each update takes one batch of every task (`pcgrad_update`).
Run-directory writing lives in report.py, checkpoints in checkpoint.py.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from . import hub, precision, report
from .checkpoint import find_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .data import RawTask, TaskData, load_task, model_rows
from .encoders import resolve_encoder
from .errors import UserError
from .evaluation import evaluate_split, main_metric, selection_score
from .loader import BatchPlan, training_loader
from .modeling import MultiTaskModel, to_device
from .pcgrad import project_conflicting
from .recipe import Recipe, TrainingSpec, default_metrics, sharing_config
from .sharing import is_adapter_weight
from .sampling import EveryTask, TaskBatches, TaskSampler
from .weighting import build_weighting


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
    chosen = precision.resolve(t.mixed_precision, PartialState(cpu=t.cpu).device)
    try:
        accelerator = Accelerator(
            mixed_precision=chosen.accelerate,
            cpu=t.cpu,
            log_with=t.report_to or None,
            project_dir=str(run_directory(recipe)),
            # only the chosen task's head gets gradients in a step
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
    except ValueError as e:  # e.g. fp16 requested on a machine without a GPU
        raise UserError(f"{recipe.source}: training.mixed_precision: {e}") from None
    return accelerator, chosen


def make_optimizer(model, t: TrainingSpec, weighting=None, weighting_lr: float = 1e-3):
    """AdamW (no weight decay on biases and LayerNorm weights) with linear warm-up and decay.
    Learned loss weights (if any) are a third group with their own learning rate."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if not n.endswith(no_decay)], "weight_decay": t.weight_decay},
              {"params": [p for n, p in trainable if n.endswith(no_decay)], "weight_decay": 0.0}]
    if weighting is not None and list(weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0, "lr": weighting_lr})
    optimizer = torch.optim.AdamW(groups, lr=t.lr, fused=True)  # fused: ~3x faster steps on CPU
    # transformers' get_linear_schedule_with_warmup, written out: importing transformers.optimization
    # pulls in its Trainer utilities and peft (3 s of every start-up)
    warmup = math.ceil(t.warmup * t.steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: step / max(1, warmup) if step < warmup else max(0.0, (t.steps - step) / max(1, t.steps - warmup)))


def task_streams(recipe: Recipe, tasks: dict[str, TaskData], accelerator: Accelerator):
    """The task sampler, each task's batch iterator (this rank's share) and its training rows."""
    t = recipe.training
    sampler = TaskSampler({n: len(d.splits["train"]) for n, d in tasks.items()}, recipe.sampling.strategy,
                          t.seed, recipe.sampling.temperature, total_draws=t.steps * t.grad_accum)
    batches = {n: TaskBatches(d.splits["train"]["length"], t.batch_size, t.seed + i, recipe.sampling.group_by_length,
                              accelerator.process_index, accelerator.num_processes, t.batch_tokens)
               for i, (n, d) in enumerate(tasks.items())}
    return sampler, batches, {n: model_rows(d.splits["train"]) for n, d in tasks.items()}


def run_directory(recipe: Recipe) -> Path:
    return Path(recipe.output_dir or f"runs/{recipe.name}")


def trained_source(recipe: Recipe) -> tuple[MultiTaskModel, str]:
    """The model named by model.init_from (a run directory, a model folder or a hub id) and where it is."""
    path = Path(recipe.model.init_from).expanduser()
    if (path / "model" / "config.json").exists():
        path = path / "model"
    where = str(path) if path.exists() else recipe.model.init_from
    try:
        return MultiTaskModel.from_pretrained(where), where
    except (OSError, ValueError) as e:
        raise UserError(f"{recipe.source}: model.init_from: not an mtnlp run or model "
                        f"({str(e).splitlines()[0]})") from None


def load_tasks(recipe: Recipe, tokenizer, accelerator: Accelerator,
               raw: dict[str, RawTask] | None = None) -> dict[str, TaskData]:
    """Every task tokenised; `raw` (read beforehand, e.g. by the CLI) is consumed, so its examples
    are freed once tokenised."""
    raw = raw if raw is not None else {}
    with accelerator.main_process_first():  # rank 0 tokenises and fills the cache; others read it
        return {name: load_task(recipe, name, spec, tokenizer, recipe.model.max_length, raw=raw.pop(name, None))
                for name, spec in recipe.tasks.items()}


def train(recipe: Recipe, raw: dict[str, RawTask] | None = None) -> TrainResult:
    """Train the recipe's tasks; `raw`: the tasks' examples if already read (data.read_task)."""
    t = recipe.training
    run_dir = run_directory(recipe)
    accelerator, chosen = make_accelerator(recipe)
    set_seed(t.seed)
    source, source_path = trained_source(recipe) if recipe.model.init_from else (None, None)
    encoder = resolve_encoder(recipe.model.encoder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source_path or encoder)
    except (OSError, ValueError) as e:
        raise UserError(f"{recipe.source}: model.encoder: cannot load '{recipe.model.encoder}' "
                        f"({str(e).splitlines()[0]})") from None
    tasks = load_tasks(recipe, tokenizer, accelerator, raw)
    metrics = {name: default_metrics(spec, tasks[name].labels) for name, spec in recipe.tasks.items()}
    heads = {name: {"type": d.type, "labels": d.labels, "dropout": recipe.tasks[name].dropout}
             for name, d in tasks.items()}
    m = recipe.mtl
    sharing = sharing_config(m)
    try:
        if source:  # transfer: multi-task model -> new run (e.g. fine-tune one target task)
            model = MultiTaskModel.from_trained(source, heads, keep_heads=recipe.model.init_heads, sharing=sharing)
            base_model = (getattr(source.config, "mtnlp", None) or {}).get("base_model", recipe.model.init_from)
        else:
            model = MultiTaskModel.from_encoder(encoder, heads, sharing=sharing)
            base_model = recipe.model.encoder
    except ValueError as e:  # a sharing setting that does not fit this encoder
        raise UserError(f"{recipe.source}: {str(e).splitlines()[0]}") from None
    if m.freeze_encoder:  # soft sharing only: adapters / task layers and heads train
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(is_adapter_weight(name))
    model.config.mtnlp = {"metrics": metrics, "base_model": base_model, "max_length": recipe.model.max_length}

    weighting = build_weighting(m.weighting, {n: recipe.tasks[n].loss_weight for n in tasks},
                                dwa_temperature=m.dwa_temperature, dwa_window=m.dwa_window).to(accelerator.device)
    optimizer, scheduler = make_optimizer(model, t, weighting, m.weighting_lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    accelerator.print(chosen.describe())  # after the set-up, whose errors must be the only output
    if chosen.warning and accelerator.is_main_process:
        warnings.warn(f"training.mixed_precision: {chosen.warning}", stacklevel=2)

    sampler, batches, train_rows = task_streams(recipe, tasks, accelerator)
    plan = BatchPlan(EveryTask(list(tasks), t.grad_accum) if m.gradient == "pcgrad" else sampler, batches)

    state = {"step": 0, "best_score": None, "best_step": None, "bad_evals": 0}
    if t.resume_from:
        folder = find_checkpoint(run_dir, t.resume_from)
        state = load_checkpoint(folder, unwrapped, optimizer, accelerator.process_index)
        scheduler.load_state_dict(state["scheduler"])
        plan.load_state_dict(state)
        weighting.load_state_dict_json(state.get("weighting", {}))
        if accelerator.is_main_process:
            run_dir.mkdir(parents=True, exist_ok=True)
            report.forget_after(run_dir, state["step"])  # logs written after the checkpoint are replayed
        accelerator.print(f"resumed from {folder} at step {state['step']}")
    elif accelerator.is_main_process:
        report.start_run(run_dir, recipe, chosen)
    run_dir.mkdir(parents=True, exist_ok=True)
    if t.report_to:
        accelerator.init_trackers(recipe.name)

    log = report.LossLog()
    bar = tqdm(total=t.steps, initial=state["step"], disable=not accelerator.is_local_main_process, desc="train")
    loader = iter(training_loader(plan, train_rows, tokenizer.pad_token_id, {n: d.type for n, d in tasks.items()},
                                  accelerator.device, t.dataloader_workers))
    positions = plan.state_dict()  # the sampler positions after the last batch trained on

    def checkpoint(step: int) -> Path:
        state.update(scheduler=scheduler.state_dict(), **positions, weighting=weighting.state_dict_json())
        folder = save_checkpoint(run_dir / "checkpoints" / f"step-{step:06d}", unwrapped, optimizer, state,
                                 accelerator.process_index, accelerator.num_processes)
        if accelerator.is_main_process:
            prune_checkpoints(run_dir / "checkpoints", t.keep_checkpoints)
        return folder

    def backward(sync: bool) -> str:
        """The next micro-batch: its head's loss, weighted, back-propagated. Returns its task. The loss
        stays on the device (read at log steps only): no host sync per micro-batch."""
        nonlocal positions
        task, batch, positions = next(loader)
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            loss = model(**to_device(batch, accelerator.device), task=task).loss
            accelerator.backward(weighting(task, loss) / t.grad_accum)
        weighting.observe(task, loss.detach())
        log.add(task, loss.detach())
        return task

    def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(tensor, "mean") if accelerator.num_processes > 1 else tensor

    conflicts = []  # pcgrad: fraction of conflicting task pairs per update, logged as a mean
    loss_text = ""  # mean losses of the last log step, for the progress bar
    model.train()
    with stop_after_step_on_signal(accelerator) as stop:
        while state["step"] < t.steps:
            if m.gradient == "pcgrad":
                task = "all"
                conflicts.append(pcgrad_update(unwrapped, list(tasks), backward, t, state["step"], reduce_mean))
            else:
                for micro in range(t.grad_accum):  # accumulated micro-batches may come from different tasks
                    task = backward(sync=micro == t.grad_accum - 1)
            for p in weighting.parameters():  # DDP does not see the loss weights: average them here
                if p.grad is not None:
                    p.grad = reduce_mean(p.grad)
            weighting.end_step(state["step"] + 1, reduce_mean)
            if t.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            step = state["step"]
            bar.update(1)
            bar.set_postfix_str(f"task={task} {loss_text}", refresh=False)

            if step % t.log_every == 0 or step == t.steps:
                losses = log.flush()
                loss_text = " ".join(f"{n}={v:.3f}" for n, v in losses.items())
                record = {"step": step, "lr": scheduler.get_last_lr()[0], "loss": losses, "weights": weighting.weights()}
                if conflicts:
                    record["pcgrad_conflicts"] = sum(conflicts) / len(conflicts)
                    conflicts.clear()
                if accelerator.is_main_process:
                    report.append(run_dir / "train_log.jsonl", record)
                if t.report_to:
                    accelerator.log({f"train/loss/{n}": v for n, v in losses.items()}
                                    | {f"train/weight/{n}": v for n, v in weighting.weights().items()}, step=step)
            if (t.eval_every and step % t.eval_every == 0) or step == t.steps:
                if evaluate_and_select(recipe, run_dir, unwrapped, tokenizer, tasks, metrics, state, accelerator):
                    accelerator.print(f"early stopping at step {step}: no improvement in {state['bad_evals']} evaluations")
                    break
            saved = t.save_every and step % t.save_every == 0
            if saved:
                checkpoint(step)
            if stop.requested:
                bar.close()
                folder = run_dir / "checkpoints" / f"step-{step:06d}" if saved else checkpoint(step)
                print(f"\ninterrupted at step {step}: checkpoint saved to {folder}; "
                      "resume with training.resume_from=latest", file=sys.stderr)
                raise Interrupted(stop.requested)
    bar.close()
    del loader  # stops its worker processes
    accelerator.wait_for_everyone()  # rank 0 may still be writing run_dir/model
    best = MultiTaskModel.from_pretrained(run_dir / "model").to(accelerator.device)
    final = report.final_metrics(recipe, run_dir, best, tokenizer, tasks, metrics, state, accelerator, chosen)
    if accelerator.is_main_process:
        datasets = sorted({spec.data.hub for spec in recipe.tasks.values() if spec.data.hub})
        hub.write_card(run_dir / "model", run_dir, datasets)
        if recipe.push_to_hub:
            accelerator.print(f"pushed to {hub.push(run_dir / 'model', recipe.hub_repo_id, recipe.hub_private)}")
    if t.report_to:
        accelerator.end_training()
    return TrainResult(run_dir, best, unwrapped, final, accelerator, weighting.weights(), chosen)


def pcgrad_update(model: MultiTaskModel, task_names: list[str], backward, t: TrainingSpec, step: int,
                  reduce_mean) -> float:
    """Gradients for one PCGrad update: grad_accum micro-batches of EVERY task, each task's shared-parameter
    gradient kept apart, averaged over DDP ranks (all backward passes skip DDP's own sync), projected
    and summed into .grad. Head / adapter / task-layer gradients come from one task each and are summed
    as usual. Returns the fraction of task pairs that conflicted."""
    shared = model.shared_parameters()
    sizes = [p.numel() for p in shared]
    per_task = torch.zeros(len(task_names), sum(sizes), device=shared[0].device)
    for row, task in zip(per_task, task_names):
        for _ in range(t.grad_accum):
            drawn = backward(sync=False)
            assert drawn == task, (drawn, task)  # the batch plan gives every task in turn (sampling.EveryTask)
        for p, part in zip(shared, row.split(sizes)):
            if p.grad is not None:
                part.copy_(p.grad.flatten())
            p.grad = None
    own = [p for p in model.parameters() if p.grad is not None]
    if own:  # the task-specific gradients, averaged across ranks like DDP would
        flat = reduce_mean(torch.cat([p.grad.flatten() for p in own]))
        for p, g in zip(own, flat.split([p.numel() for p in own])):
            p.grad = g.view_as(p)
    # the projection order is random but the same on every rank and on resume
    combined, conflicts = project_conflicting(reduce_mean(per_task), np.random.default_rng([t.seed, step]))
    for p, g in zip(shared, combined.split(sizes)):
        p.grad = g.view_as(p)
    return conflicts


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a checkpoint; the exit status is 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class stop_after_step_on_signal:
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM, Kubernetes and spot instances send before a kill) asks
    the loop to stop after the current step; it then checkpoints and exits. A second Ctrl-C
    interrupts at once. With several processes the signals keep their usual meaning."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, accelerator: Accelerator):
        self.active = accelerator.num_processes == 1 and threading.current_thread() is threading.main_thread()
        self.requested = 0  # the signal number once one arrived

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = self.requested or signum
        how = "Ctrl-C again to stop now" if signum == signal.SIGINT else "SIGINT to stop now"
        print(f"\n{signal.Signals(signum).name}: stopping after this step ({how})", file=sys.stderr)

    def __enter__(self):
        if self.active:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        if self.active:
            for s, handler in self._previous.items():
                signal.signal(s, handler)


def evaluate_and_select(recipe, run_dir, model, tokenizer, tasks, metrics, state, accelerator) -> bool:
    """Evaluate on validation, keep the best model in run_dir/model; return True to stop early."""
    step = state["step"]
    results = evaluate_split(model, tokenizer, tasks, metrics, "validation", recipe.training.eval_batch_size,
                             accelerator.autocast)
    if not results:  # no validation data: the last model is the one kept
        if accelerator.is_main_process:
            report.save_model(run_dir / "model", model, tokenizer)
        state.update(best_step=step)
        accelerator.wait_for_everyone()
        return False
    score = selection_score(results, metrics)
    improved = state["best_score"] is None or score > state["best_score"]
    if improved:  # the kept model's validation metrics: final_metrics reports them without re-evaluating
        state.update(best_score=score, best_step=step, bad_evals=0, best_validation=results)
        if accelerator.is_main_process:
            report.save_model(run_dir / "model", model, tokenizer)
    else:
        state["bad_evals"] += 1
    if accelerator.is_main_process:
        main = {n: r[main_metric(metrics[n])[0]] for n, r in results.items()}
        report.append(run_dir / "history.jsonl",
                      {"step": step, "score": score, "best": improved, "main": main, "validation": results})
        accelerator.print(f"step {step}: " + report.one_line(results, metrics) + (" *" if improved else ""))
    if recipe.training.report_to:
        accelerator.log({f"eval/{n}/{k}": v for n, r in results.items() for k, v in r.items()}, step=step)
    accelerator.wait_for_everyone()
    patience = recipe.training.early_stopping_patience
    return patience is not None and state["bad_evals"] >= patience
