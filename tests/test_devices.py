"""Every tensor the pipeline, evaluation and training give the model is on the model's device, and the
training loop reads nothing back from the device per step.

A CPU-only machine cannot run CUDA, so the model goes to the `meta` device: any input the code forgets
to move stays on the CPU, which a hook on the encoder sees before anything is computed.
"""

import sys
from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.data import load_task
from mtnlp.evaluation import predict
from mtnlp.tasks import task_type
from mtnlp.loader import BatchPlan, training_loader
from mtnlp.recipe import load_recipe
from mtnlp.batches import TaskBatches
from mtnlp.sampling import TaskSampler
from mtnlp.recipes.multitask import train

TASKS = {"sentiment": {"type": "classification", "labels": ["negative", "positive"], "dropout": 0.1},
         "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER"], "dropout": 0.1}}


class Stop(Exception):
    """Raised by the hook once the inputs are checked: a meta model computes nothing real."""


def meta_model(tiny_encoder):
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS).to("meta")
    seen = []

    def check(module, args, kwargs):
        seen.extend((name, value.device.type) for name, value in
                    list(enumerate(args)) + list(kwargs.items()) if isinstance(value, torch.Tensor))
        raise Stop

    model.encoder.register_forward_pre_hook(check, with_kwargs=True)
    return model, seen


def test_pipeline_puts_every_input_on_the_model_device(tiny_encoder):
    model, seen = meta_model(tiny_encoder)
    pipe = MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder), device="meta")
    with pytest.raises(Stop):
        pipe("John lives in Paris .")
    assert {name for name, _ in seen} >= {"input_ids", "attention_mask", "token_type_ids"}  # BERT takes all three
    assert all(device == "meta" for _, device in seen), seen


def test_the_pipeline_keeps_a_model_on_the_device_it_is_on(tiny_encoder):
    """Without `device`, a model already on an accelerator (cuda:1 here stands as meta) is not moved to cuda:0."""
    model, seen = meta_model(tiny_encoder)
    pipe = MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder))
    assert pipe.device.type == "meta" and next(pipe.model.parameters()).device.type == "meta"
    with pytest.raises(Stop):
        pipe("John lives in Paris .")
    assert seen and all(device == "meta" for _, device in seen), seen


def test_evaluation_puts_every_input_on_the_model_device(tiny_encoder, make_recipe):
    recipe = load_recipe(make_recipe())
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    data = load_task(recipe, "ner", recipe.tasks["ner"], tokenizer, 32)
    model, seen = meta_model(tiny_encoder)
    with pytest.raises(Stop):
        predict(model, data.splits["validation"], "ner", task_type("tagging"), model.config.tasks["ner"], 4,
                tokenizer.pad_token_id)
    assert {name for name, _ in seen} >= {"input_ids", "attention_mask", "token_type_ids"}
    assert all(device == "meta" for _, device in seen), seen


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_follow_the_plan_for_any_worker_count(tiny_encoder, make_recipe, workers):
    """Workers only pad rows: the batches and the positions they carry are the plan's, in order."""
    recipe = load_recipe(make_recipe())
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    tasks = {n: load_task(recipe, n, s, tokenizer, 32) for n, s in recipe.tasks.items()}

    def plan():
        sampler = TaskSampler({n: len(d.splits["train"]) for n, d in tasks.items()}, "proportional", 3)
        return BatchPlan(sampler, {n: TaskBatches(d.splits["train"]["length"], 4, i, True)
                                   for i, (n, d) in enumerate(tasks.items())})

    rows = {n: d.splits["train"] for n, d in tasks.items()}
    expected = plan()
    loader = iter(training_loader(plan(), rows, tokenizer.pad_token_id, {n: d.type for n, d in tasks.items()},
                                  torch.device("cpu"), workers))
    for (task, indices, positions), (got_task, batch, got_positions) in zip(iter(expected), loader):
        assert (got_task, got_positions) == (task, positions)
        assert batch["input_ids"].shape[0] == len(indices)
        first = rows[task][indices[0]]["input_ids"]
        assert batch["input_ids"][0, :len(first)].tolist() == first
        if positions["sampler"]["draw"] == 12:
            break


def test_resume_is_exact_with_loader_workers(make_recipe, tmp_path):
    from safetensors.torch import load_file

    training = {"steps": 6, "save_every": 3, "grad_accum": 2, "dataloader_workers": 2}
    path = make_recipe(training=training)
    train(load_recipe(path))
    resumed = tmp_path / "resumed"
    train(load_recipe(path, [f"output_dir={resumed}", f"training.resume_from={tmp_path / 'run'}/checkpoints/step-000003"]))
    a = load_file(tmp_path / "run" / "checkpoints" / "step-000006" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "step-000006" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def count_syncs(monkeypatch) -> Counter:
    """Calls that copy a tensor's value to the host, made from mtnlp's own code or transformers' attention
    masks, by file:line."""
    counts = Counter()
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, __original=original, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "/mtnlp/" in caller.replace("\\", "/") or caller.endswith("masking_utils.py"):
                counts[f"{caller}:{sys._getframe(1).f_lineno}"] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return counts


@pytest.mark.parametrize("mtl", [{}, {"weighting": "dwa", "dwa_window": 100}, {"weighting": "uncertainty"},
                                 {"sharing": "task_layers", "task_layers": 1}])
def test_no_host_sync_per_training_step(make_recipe, monkeypatch, mtl):
    """Reading a loss (loss.item()) waits for the GPU: the loop may do it at log steps, not every step.
    Three steps and nine steps, each logged and evaluated once, read the device equally often - but for
    transformers' own check in each encoder pass (is anything padded? if not, SDPA may take its flash
    kernel), which mtnlp does not repeat for the task layers it runs itself."""
    counts = count_syncs(monkeypatch)
    runs = []
    for steps in (3, 9):
        counts.clear()
        train(load_recipe(make_recipe(training={"steps": steps, "log_every": 100, "grad_accum": 2}, mtl=mtl,
                                      overwrite_output_dir=True)))  # the second run replaces the first
        runs.append(dict(counts))
    own = [{k: v for k, v in run.items() if "/mtnlp/" in k.replace("\\", "/")} for run in runs]
    assert own[0] and own[0] == own[1]
    masks = [sum(v for k, v in run.items() if "masking_utils" in k) for run in runs]
    assert masks[1] - masks[0] <= (9 - 3) * 2  # at most one per training micro-batch: the encoder's own
