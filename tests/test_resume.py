"""The run directory over a run's life: a new run in a used output_dir, resuming from another run's or an
older checkpoint, changed settings on resume (methods, learning rates, number of processes)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import fake_checkpoint

from mtnlp.checkpoint import load_checkpoint
from mtnlp.folders import find_checkpoint
from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.train import make_optimizer, setup, train_step
from mtnlp.report import read_jsonl


def steps_of(folder):
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*"))


def test_a_new_run_in_a_used_output_dir_is_refused_unless_overwrite(make_recipe, tmp_path):
    run = tmp_path / "run"
    train(load_recipe(make_recipe(training={"steps": 6, "save_every": 3})))
    recipe = make_recipe(training={"steps": 2, "save_every": 1})
    with pytest.raises(UserError, match=rf"^{recipe}:\d+: output_dir: {run} holds another run \(checkpoints/, model/\); "
                                        r"continue it with training.resume_from=latest, or replace it with "
                                        r"overwrite_output_dir: true"):
        train(load_recipe(recipe))
    assert steps_of(run / "checkpoints") == [3, 6]  # untouched
    train(load_recipe(recipe, ["overwrite_output_dir=true"]))
    # only the new run's outputs: its checkpoints are not pruned in favour of the old ones, latest is its own
    assert steps_of(run / "checkpoints") == [1, 2]
    assert find_checkpoint(run, "latest").name == "step-000002"
    assert json.loads((run / "metrics.json").read_text())["best_step"] == 2
    assert [r["step"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())] == [1, 2]


def test_the_refusal_is_one_line_on_the_command_line(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 1})
    (tmp_path / "run" / "model").mkdir(parents=True)
    # said before the data is read: a missing data file is not what it reports
    done = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe),
                           f"tasks.sentiment.data.train={tmp_path / 'absent.jsonl'}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {recipe}:") and done.stderr.count("\n") == 1, done.stderr
    # a finished run without checkpoints (save_every 0) cannot be continued: the message does not offer it
    assert done.stderr.strip().endswith(f"output_dir: {tmp_path / 'run'} holds another run (model/) and no checkpoint "
                                        "to continue it from; replace it with overwrite_output_dir: true, or choose "
                                        "another output_dir"), done.stderr


def test_a_run_resumed_into_a_new_folder_carries_the_logs_up_to_its_step(make_recipe, tmp_path):
    """The new folder's metrics.json and card named a best step its history.jsonl and curves did not hold."""
    recipe = make_recipe(training={"steps": 4, "save_every": 2, "eval_every": 2})
    train(load_recipe(recipe))
    run, other = tmp_path / "run", tmp_path / "other"
    train(load_recipe(recipe, [f"output_dir={other}", f"training.resume_from={run / 'checkpoints' / 'step-000002'}"]))

    def lines(folder, name):
        return [json.loads(line) for line in (folder / name).read_text().splitlines()]

    assert [r["step"] for r in lines(other, "history.jsonl")] == [2, 4]
    assert lines(other, "history.jsonl")[0] == lines(run, "history.jsonl")[0]
    assert [r["step"] for r in lines(other, "train_log.jsonl")] == [1, 2, 3, 4]
    assert lines(other, "train_log.jsonl")[:2] == lines(run, "train_log.jsonl")[:2]
    # a damaged line (and bytes that are not UTF-8) in the source's log: the other lines are carried, with a warning
    log = run / "train_log.jsonl"
    first, *rest = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(first + b'{"step": 2, "lo\xff\n' + b"".join(rest))
    third = tmp_path / "third"
    with pytest.warns(UserWarning, match=rf"{log}: 1 line\(s\) not a log record, not carried over into {third}"):
        train(load_recipe(recipe, [f"output_dir={third}", f"training.resume_from={run / 'checkpoints' / 'step-000002'}"]))
    assert [r["step"] for r in lines(third, "train_log.jsonl")] == [1, 2, 3, 4]
    assert [r["step"] for r in lines(third, "history.jsonl")] == [2, 4]


def test_resuming_another_runs_checkpoint_into_a_new_folder_restores_the_best_model(make_recipe, tmp_path, capsys):
    """The new folder has no model of the best step (nothing evaluated after the resume improves: nothing is
    trained): it is restored from the best step's checkpoint, and the folder gets its recipe.yaml. Without
    such a checkpoint the final model is kept, with a warning."""
    from mtnlp import MultiTaskModel
    from safetensors.torch import load_file

    recipe = make_recipe(training={"steps": 3, "save_every": 3})
    train(load_recipe(recipe))
    other, source = tmp_path / "other", tmp_path / "run" / "checkpoints" / "step-000003"
    capsys.readouterr()
    result = train(load_recipe(recipe, [f"output_dir={other}", f"training.resume_from={source}"]))
    assert f"the best step's model (3) restored from {source}" in capsys.readouterr().out
    assert (other / "recipe.yaml").exists() and result.metrics["best_step"] == 3
    assert json.loads((other / "model" / "config.json").read_text())["mtnlp"]["step"] == 3
    restored = MultiTaskModel.from_pretrained(other / "model").state_dict()
    assert all(torch.equal(restored[k], v) for k, v in load_file(source / "model.safetensors").items())
    copied = shutil.copytree(source, tmp_path / "copied")  # no step-000003 beside it, no model/ of its run
    third = tmp_path / "third"
    with pytest.warns(UserWarning, match=rf"{third / 'model'} is missing, and no checkpoint holds the best step \(3\)"
                                         r".*final model \(step 3\)"):
        train(load_recipe(recipe, [f"output_dir={third}", f"training.resume_from={copied}"]))
    assert json.loads((third / "model" / "config.json").read_text())["mtnlp"]["step"] == 3


def test_resuming_another_runs_checkpoint_restores_the_best_model_from_that_runs_model_folder(make_recipe, tmp_path,
                                                                                               capsys):
    """The best step (2) has no checkpoint (they are at 3 and 6), but the source run's model/ holds it: restored
    from there (the final model was kept before, with a warning: repro walk)."""
    from mtnlp import MultiTaskModel

    recipe = make_recipe(training={"steps": 6, "eval_every": 2, "save_every": 3, "lr": 1e-12, "head_lr": 1e-12,
                                   "keep_checkpoints": 5})
    train(load_recipe(recipe))
    source_model = tmp_path / "run" / "model"
    assert json.loads((source_model / "config.json").read_text())["mtnlp"]["step"] == 2
    other = tmp_path / "other"
    capsys.readouterr()
    result = train(load_recipe(recipe, [f"output_dir={other}",
                                        f"training.resume_from={tmp_path / 'run' / 'checkpoints' / 'step-000003'}"]))
    assert f"the best step's model (2) restored from {source_model}" in capsys.readouterr().out
    assert result.metrics["best_step"] == 2
    restored, kept = (MultiTaskModel.from_pretrained(folder).state_dict() for folder in (other / "model", source_model))
    assert all(torch.equal(restored[k], v) for k, v in kept.items())
    # a model/ beside the checkpoint whose run's history has another best score at that step (another run's
    # model: review) is not taken, nor one without a history
    fake = tmp_path / "fake"
    shutil.copytree(tmp_path / "run" / "checkpoints" / "step-000003", fake / "checkpoints" / "step-000003")
    shutil.copytree(source_model, fake / "model")
    for history in ('{"step": 2, "score": 0.125, "best": true}\n', None):
        (fake / "history.jsonl").unlink(missing_ok=True)
        if history:
            (fake / "history.jsonl").write_text(history)
        third = tmp_path / f"third-{bool(history)}"
        with pytest.warns(UserWarning, match=r"no checkpoint holds the best step \(2\)"):
            result = train(load_recipe(recipe, [f"output_dir={third}",
                                                f"training.resume_from={fake / 'checkpoints' / 'step-000003'}"]))
        assert result.metrics["best_step"] == 6


def test_a_resumed_run_whose_later_models_are_worse_keeps_the_best_steps_model(make_recipe, tmp_path):
    """Resumed at step 2 (its best so far) with a learning rate too small to change a score (none improves):
    model/ (the first run's best: step 6 here, every evaluation improved) ends as step 2's model, restored
    from its checkpoint; it was the final model, reported as the best step (6)."""
    from mtnlp import MultiTaskModel
    from safetensors.torch import load_file

    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 6, "save_every": 2, "eval_every": 2, "keep_checkpoints": 5})
    train(load_recipe(recipe))
    assert json.loads((run / "model" / "config.json").read_text())["mtnlp"]["step"] == 6
    still = ["training.lr=1e-12", "training.head_lr=1e-12"]
    result = train(load_recipe(recipe, [f"training.resume_from={run}/checkpoints/step-000002", *still]))
    assert [h["best"] for h in read_jsonl(run / "history.jsonl")] == [True, False, False]
    assert result.metrics["best_step"] == 2
    kept = MultiTaskModel.from_pretrained(run / "model")
    assert kept.config.mtnlp["step"] == 2
    assert all(torch.equal(kept.state_dict()[k], v)
               for k, v in load_file(run / "checkpoints" / "step-000002" / "model.safetensors").items())


def test_resuming_an_older_checkpoint_drops_the_newer_ones(make_recipe, tmp_path):
    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 6, "save_every": 2, "eval_every": 2, "keep_checkpoints": 3})
    train(load_recipe(recipe))
    assert steps_of(run / "checkpoints") == [2, 4, 6]
    # continue from step 2 another way (here: stop there): the abandoned steps 4 and 6 must not be `latest`
    result = train(load_recipe(recipe, ["training.steps=2", f"training.resume_from={run}/checkpoints/step-000002"]))
    assert steps_of(run / "checkpoints") == [2]
    # model/ was kept at the best of steps 2, 4, 6; the run resumed at 2 knows only step 2's: it reports that
    assert result.metrics["best_step"] == 2
    assert json.loads((run / "model" / "config.json").read_text())["mtnlp"]["step"] == 2


@pytest.mark.parametrize("before, after", [
    ({}, {"mtl.weighting": "dwa", "mtl.dwa_window": 1}),
    ({}, {"mtl.gradient": "pcgrad"}),
    ({"mtl.gradient": "pcgrad", "training.grad_accum": 2}, {"mtl.gradient": "pcgrad"}),  # 12 draws: not 9's multiple
    ({"mtl.gradient": "pcgrad"}, {}),
    ({"mtl.gradient": "pcgrad"}, {"mtl.gradient": "cagrad"}),
], ids=["static->dwa", "sum->pcgrad", "pcgrad-grad_accum", "pcgrad->sum", "pcgrad->cagrad"])
def test_resuming_with_another_weighting_or_gradient_method_continues(make_recipe, tmp_path, capsys, before, after):
    recipe = make_recipe(training={"steps": 4, "grad_accum": 3})
    first = setup(load_recipe(recipe, [f"{k}={v}" for k, v in before.items()]))
    for _ in range(2):
        train_step(first)
    from mtnlp.train import checkpoint

    folder = checkpoint(first)
    capsys.readouterr()
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}", *(f"{k}={v}" for k, v in after.items())]))
    for _ in range(2):
        train_step(resumed)
    assert resumed.progress.step == 4
    # the resume names what changed (it was silent: only recipe.before-step-N.yaml told)
    defaults = {"mtl.weighting": "static", "mtl.gradient": "sum", "mtl.dwa_window": 50, "training.grad_accum": 3}
    changed = [f"{k}: {before.get(k, defaults[k])} -> {after.get(k, defaults[k])}" for k in sorted({*before, *after})
               if before.get(k, defaults[k]) != after.get(k, defaults[k])]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resumed with other settings")]
    assert said == ["resumed with other settings than those that trained up to step 2: " + "; ".join(changed)]


def test_learning_rates_and_weight_decay_given_on_resume_apply(make_recipe, tmp_path):
    """The weight decay given on resume was recorded and said (0.01 -> 0.5), but the checkpoint's optimizer
    state put the old one back: resuming with 0.01 and with 0.9 gave bit-identical weights."""
    recipe = make_recipe(training={"steps": 6, "warmup": 0.0})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    from mtnlp.train import checkpoint

    folder = checkpoint(run)
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}", "training.lr=2e-4", "training.head_lr=4e-4",
                                         "training.weight_decay=0.5"]))
    factor = (6 - 3) / 6  # linear decay, no warm-up
    lrs = [g["lr"] for g in resumed.optimizer.param_groups]
    assert lrs == pytest.approx([2e-4 * factor] * 2 + [4e-4 * factor] * 2)
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == [0.5, 0.0, 0.5, 0.0]  # (biases, norms: none)
    assert resumed.scheduler.get_last_lr() == pytest.approx(lrs)
    train_step(resumed)
    assert resumed.scheduler.get_last_lr()[0] == pytest.approx(2e-4 * 2 / 6)


def test_resuming_with_another_number_of_processes_warns_and_keeps_the_counts(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 4})
    run = setup(load_recipe(recipe))
    for _ in range(2):
        train_step(run)
    from mtnlp.train import checkpoint

    folder = checkpoint(run)
    seen = json.loads((folder / "rank-0.json").read_text())["seen"]
    # as if written by 2 processes: rank 1 trained on other examples, its own count
    rank1 = {t: {"batches": c["batches"], "examples": c["examples"] + 1} for t, c in seen.items()}
    (folder / "rank-1.json").write_text(json.dumps({"seen": rank1}))
    for suffix in ("json", "safetensors"):
        shutil.copy(folder / f"rng-0.{suffix}", folder / f"rng-1.{suffix}")
    with pytest.warns(UserWarning, match=rf"{folder}: written by 2 process\(es\), resumed with 1: the batches differ"):
        resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}"]))
    assert resumed.plan.seen == {t: {"batches": c["batches"], "examples": 2 * c["examples"] + 1} for t, c in seen.items()}
    # 1 -> 2 processes: the second counts from 0 (the first carries every example so far)
    (folder / "rank-1.json").unlink()
    state = load_checkpoint(folder, resumed.unwrapped, resumed.optimizer, rank=1, world_size=2)
    assert state["ranks"] == 1 and all(c["examples"] == 0 for c in state["seen"].values())
    state = load_checkpoint(folder, resumed.unwrapped, resumed.optimizer, rank=0, world_size=2)
    assert state["seen"] == seen


def test_resuming_with_another_batch_size_trains_each_epochs_other_examples(make_recipe, tmp_path):
    """A task's place in its epoch was a count of batches: read with batch_size 5 instead of 8 it skipped examples
    (or, smaller, took some again) without a word. A training set of another size starts its epoch again, said."""
    from conftest import DATA

    from mtnlp.batches import TaskBatches
    from mtnlp.data import column
    from mtnlp.train import checkpoint

    recipe = make_recipe(training={"steps": 9, "batch_size": 8}, sampling={"strategy": "round_robin"})
    run = setup(load_recipe(recipe))
    for _ in range(5):
        train_step(run)
    folder = checkpoint(run)
    state = json.loads((folder / "trainer_state.json").read_text())["batches"]
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}", "training.batch_size=5"]))
    for i, (name, data) in enumerate(run.tasks.items()):
        lengths = column(data.splits["train"], "length")
        cut = state[name]["cut"]
        assert (cut["examples"], cut["batch_size"], cut["seed"], state[name]["position"] > 0) == (len(lengths), 8, 1 + i, True)
        original = TaskBatches(lengths, 8, 1 + i, cut["group_by_length"])  # the seed: the recipe's 1, + the task's index
        original.load_state_dict(state[name])
        taken = [int(k) for batch in original._batches[:state[name]["position"]] for k in batch]
        rest, tb = [], resumed.plan.batches[name]
        while tb.position < len(tb._batches):  # to the end of its epoch
            rest += next(tb)
        assert sorted(taken + rest) == list(range(len(lengths))), name
    grown = tmp_path / "ner.conll"
    grown.write_text((DATA / "ner_sample.conll").read_text() + "\n\nMore NN O O\n")  # one sentence more
    with pytest.warns(UserWarning, match=rf"{folder}: task ner had \d+ training examples, it has \d+ now: its epoch "
                                         r"\d+ starts again from its beginning"):
        setup(load_recipe(recipe, [f"training.resume_from={folder}", f"tasks.ner.data.train={grown}"]))


def test_one_step_trains():
    from mtnlp.recipe import TrainingSpec

    model = torch.nn.Linear(2, 2)
    optimizer, _ = make_optimizer(model, TrainingSpec(steps=1, lr=1e-3))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the only update's: no warm-up to 0


@pytest.mark.parametrize("kind", ["cuda", "mps", "xpu"])
def test_the_accelerator_generator_is_saved_and_restored(tmp_path, monkeypatch, kind):
    """(On CPU the device calls are stand-ins: what matters is that a checkpoint carries the generator; a
    resumed run on Apple's mps drew other dropout masks when only CUDA's was saved.)"""
    from mtnlp.checkpoint import save_checkpoint

    generator, restored = torch.arange(16, dtype=torch.uint8), []
    device = getattr(torch, kind)
    monkeypatch.setattr(device, "is_available", lambda: True)
    monkeypatch.setattr(device, "is_initialized", lambda: True, raising=False)  # (torch.mps has none)
    monkeypatch.setattr(device, "get_rng_state", lambda: generator)
    monkeypatch.setattr(device, "set_rng_state", restored.append)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    load_checkpoint(save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1}), model, optimizer)
    assert len(restored) == 1 and torch.equal(restored[0], generator)


@pytest.mark.parametrize("resume_from,problem", [("latest", "no complete checkpoint in {run}/checkpoints"),
                                                 ("{tmp}/nowhere", "{tmp}/nowhere: checkpoint folder not found"),
                                                 ("{tmp}", "{tmp} is not a complete checkpoint")])
def test_a_checkpoint_that_is_not_there_names_the_recipe_line(make_recipe, tmp_path, resume_from, problem):
    recipe = make_recipe(training={"steps": 2, "resume_from": resume_from.format(tmp=tmp_path)})
    problem = problem.format(tmp=tmp_path, run=tmp_path / "run")
    with pytest.raises(UserError, match=rf"^{recipe}:\d+: training.resume_from: {problem}"):
        train(load_recipe(recipe))


def test_resuming_with_the_tasks_in_another_order_is_a_recipe_error(make_recipe, tmp_path):
    """The optimizer state of the heads and the batch seeds go by the tasks' order: a reordered recipe
    would hand one head's Adam moments to another's weights (a crash in fused AdamW, or silent mixing)."""
    from conftest import tiny_tasks

    run = setup(load_recipe(make_recipe(training={"steps": 4})))
    train_step(run)
    from mtnlp.train import checkpoint

    folder = checkpoint(run)
    tasks = tiny_tasks()
    reordered = make_recipe(tasks=dict(reversed(tasks.items())), training={"steps": 4, "resume_from": str(folder)},
                            name="reordered.yaml")
    with pytest.raises(UserError, match=rf"^{reordered}:\d+: training.resume_from: {folder}: the checkpoint's tasks "
                                        rf"are in the order {', '.join(tasks)}, the recipe's "
                                        rf"{', '.join(reversed(tasks))}: list them in the checkpoint's order"):
        setup(load_recipe(reordered))
    resumed = setup(load_recipe(make_recipe(training={"steps": 4, "resume_from": str(folder)}, name="same.yaml")))
    assert resumed.progress.step == 1


def test_a_checkpoint_keeps_the_losses_since_the_last_log_record():
    from mtnlp.report import LossLog

    log = LossLog()
    for task, loss in (("a", 0.5), ("b", 2.0), ("a", 0.25)):
        log.add(task, torch.tensor(loss))
    restored = LossLog()
    restored.load_state_dict(json.loads(json.dumps(log.state_dict())), torch.device("cpu"))  # as a checkpoint keeps it
    restored.add("b", torch.tensor(1.0))
    assert restored.flush(["a", "b"]) == {"a": 0.375, "b": 1.5}
    assert log.flush(["a", "b", "c"]) == {"a": 0.375, "b": 2.0} and LossLog().state_dict() == {"sums": {}, "counts": {}}
    assert log.flush(["a", "b"]) == {}  # nothing since


def test_a_resume_with_another_number_of_processes_keeps_every_ranks_losses_since_the_last_record(make_recipe):
    """Every rank takes the mean of the ranks' loss-log and DWA sums and counts (LossLog.flush sums them over the
    ranks, DWA averages them): both stay the mean of all ranks' losses, the steps before the resume weighing as
    those after it."""
    from mtnlp.train import checkpoint

    recipe = make_recipe(training={"steps": 4, "log_every": 4}, mtl={"weighting": "dwa", "dwa_window": 4})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    folder = checkpoint(run)
    own = json.loads((folder / "rank-0.json").read_text())
    log = own["loss_log"]
    other = {"seen": own["seen"], "loss_log": {"sums": {t: 3 * v for t, v in log["sums"].items()}, "counts": log["counts"]},
             "weighting": dict(own["weighting"], sums={t: v + 2.0 for t, v in own["weighting"]["sums"].items()})}
    (folder / "rank-1.json").write_text(json.dumps(other))  # as if written by a second process
    alone = load_checkpoint(folder, run.unwrapped, run.optimizer, rank=0, world_size=1)
    assert alone["loss_log"] == {"sums": {t: pytest.approx(2 * v) for t, v in log["sums"].items()},
                                 "counts": log["counts"]}
    assert alone["weighting"]["sums"] == {t: pytest.approx(v + 1.0) for t, v in own["weighting"]["sums"].items()}
    third = load_checkpoint(folder, run.unwrapped, run.optimizer, rank=2, world_size=3)
    assert third["loss_log"] == alone["loss_log"] and third["weighting"]["sums"] == alone["weighting"]["sums"]


def test_resuming_with_more_steps_says_so_and_updates_the_runs_recipe(make_recipe, tmp_path, capsys):
    import yaml

    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 4, "save_every": 2, "warmup": 0.0, "keep_checkpoints": 5})
    train(load_recipe(recipe))
    capsys.readouterr()
    train(load_recipe(recipe, ["training.steps=6", "training.resume_from=latest"]))
    # the decay is the one for 6 steps from step 4 on: 2/6 of the lr left, where the 4-step run had none
    lr = yaml.safe_load((run / "recipe.yaml").read_text())["training"]["lr"]
    assert f"training.steps: 6 (the checkpoint's run: 4); the learning rate follows the schedule for 6 steps: " \
           f"{lr * 2 / 6:.3g} from step 5" in capsys.readouterr().out
    log = {r["step"]: r for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}
    assert log[5]["lr"] == pytest.approx(lr * 2 / 6)  # the rate step 5's update applied, as the line says
    assert yaml.safe_load((run / "recipe.yaml").read_text())["training"]["steps"] == 6
    assert yaml.safe_load((run / "recipe.before-step-000004.yaml").read_text())["training"]["steps"] == 4
    assert [r["step"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())][-1] == 6
    # resumed at step 4 again with other settings: the recipe that trained steps 1-4 stays the one kept
    capsys.readouterr()
    train(load_recipe(recipe, ["training.steps=8", f"training.resume_from={run}/checkpoints/step-000004"]))
    assert "training.steps: 4 -> 8" not in capsys.readouterr().out  # (the resume says what it does with the steps itself)
    assert yaml.safe_load((run / "recipe.before-step-000004.yaml").read_text())["training"]["steps"] == 4
    assert yaml.safe_load((run / "recipe.yaml").read_text())["training"]["steps"] == 8
    train(load_recipe(recipe, ["training.steps=6", f"training.resume_from={run}/checkpoints/step-000004"]))
    # fewer steps than the checkpoint has trained: nothing to do, said as a recipe error
    with pytest.raises(UserError, match=r"training.steps: 4, but .*step-000006 is at step 6: set more steps"):
        train(load_recipe(run / "recipe.yaml", ["training.steps=4", f"output_dir={run}", "training.resume_from=latest"]))
    # resuming an older checkpoint with the recipe that trained up to it: nothing differs, nothing is kept
    capsys.readouterr()
    train(load_recipe(recipe, ["training.resume_from=" + str(run / "checkpoints" / "step-000002")]))
    assert not list(run.glob("recipe.before-step-*")) and "other settings" not in capsys.readouterr().out
    # with other settings: compared with (and kept) the recipe that trained up to that step, which a resume
    # at a later step had replaced; a second resume there with the first settings has nothing to keep
    train(load_recipe(recipe, ["training.lr=2e-3", "training.resume_from=" + str(run / "checkpoints" / "step-000004")]))
    assert "training.lr: 0.001 -> 0.002" in capsys.readouterr().out
    train(load_recipe(recipe, ["training.lr=2e-3", "training.resume_from=" + str(run / "checkpoints" / "step-000002")]))
    assert "training.lr: 0.001 -> 0.002" in capsys.readouterr().out
    assert [p.name for p in run.glob("recipe.before-step-*")] == ["recipe.before-step-000002.yaml"]
    assert yaml.safe_load((run / "recipe.before-step-000002.yaml").read_text())["training"]["lr"] == 1e-3
    train(load_recipe(recipe, ["training.resume_from=" + str(run / "checkpoints" / "step-000002")]))
    assert not list(run.glob("recipe.before-step-*")) and "other settings" not in capsys.readouterr().out
    train(load_recipe(recipe, ["training.lr=2e-3", "training.resume_from=" + str(run / "checkpoints" / "step-000002")]))
    train(load_recipe(recipe, ["overwrite_output_dir=true"]))  # a fresh run forgets them all
    assert not list(run.glob("recipe.before-step-*"))
    # a run folder moved elsewhere resumes there: its place is no other setting; and with the run's own
    # recipe.yaml, though the run was started with overwrite_output_dir (a command, not kept in it)
    shutil.copytree(run, tmp_path / "moved")
    capsys.readouterr()
    train(load_recipe(tmp_path / "moved" / "recipe.yaml", [f"output_dir={tmp_path / 'moved'}", "training.resume_from=latest"]))
    assert "other settings" not in capsys.readouterr().out and not list((tmp_path / "moved").glob("recipe.before-*"))


def test_pcgrad_conflicts_since_the_last_log_record_survive_a_resume(make_recipe):
    from mtnlp.train import checkpoint

    recipe = make_recipe(training={"steps": 4, "log_every": 4}, mtl={"gradient": "pcgrad"})
    first = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(first)
    assert len(first.gradient.conflicts) == 3
    resumed = setup(load_recipe(recipe, [f"training.resume_from={checkpoint(first)}"]))
    assert resumed.gradient.conflicts == pytest.approx(first.gradient.conflicts)  # the step-4 record's mean


def test_each_rank_keeps_its_own_dwa_sums(make_recipe):
    """DWA sums each rank's own losses until a window ends: a resume must give each rank its own, not rank 0's."""
    from mtnlp.train import checkpoint

    recipe = make_recipe(training={"steps": 4}, mtl={"weighting": "dwa", "dwa_window": 4})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    folder = checkpoint(run)
    own = json.loads((folder / "rank-0.json").read_text())["weighting"]
    assert sum(own["counts"].values()) == 3 and own == json.loads(json.dumps(run.weighting.state_dict_json()))
    rank1 = dict(own, sums={t: s + 1.0 for t, s in own["sums"].items()})  # as if written by a second process
    (folder / "rank-1.json").write_text(json.dumps({"seen": run.positions["seen"], "weighting": rank1}))
    assert load_checkpoint(folder, run.unwrapped, run.optimizer, rank=1, world_size=2)["weighting"] == rank1
    assert load_checkpoint(folder, run.unwrapped, run.optimizer, rank=0, world_size=2)["weighting"] == own


def test_the_fp16_loss_scale_is_saved_and_restored(tmp_path):
    from mtnlp.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=7)
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    scaler.update(new_scale=512.0)  # as after a few overflows: a resumed run must not start at 2**16 again
    folder = save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1}, scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    load_checkpoint(folder, model, optimizer, scaler=fresh)
    assert fresh.get_scale() == 512.0 and fresh.get_growth_interval() == 7


def test_a_checkpoint_written_on_a_gpu_resumes_on_a_cpu(tmp_path):
    """optimizer.pt of a CUDA run holds tensors tagged cuda:0; torch.load without map_location fails on a
    machine without CUDA (and on N GPUs builds every rank's copy on cuda:0 first)."""
    import io
    import zipfile

    from mtnlp.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    folder = save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1})
    saved, tagged = zipfile.ZipFile(folder / "optimizer.pt"), io.BytesIO()
    with zipfile.ZipFile(tagged, "w") as out:  # the pickle's storage locations, as a CUDA run writes them
        for item in saved.infolist():
            data = saved.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            out.writestr(item, data)
    (folder / "optimizer.pt").write_bytes(tagged.getvalue())
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(folder / "optimizer.pt", weights_only=True)
    fresh = torch.optim.AdamW(model.parameters())
    load_checkpoint(folder, model, fresh)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_resuming_with_another_main_metric_is_a_recipe_error(make_recipe, tmp_path):
    """The kept model's score and the new evaluations' would be of two rules: the kept model could be the worst."""
    from mtnlp.train import checkpoint, evaluate_and_select

    run = setup(load_recipe(make_recipe(training={"steps": 4})))
    train_step(run)
    evaluate_and_select(run)
    assert run.progress.selected_by == {"sentiment": "accuracy", "score": "pearsonr", "ner": "seqeval"}
    folder = checkpoint(run)
    recipe = make_recipe(training={"steps": 4, "resume_from": str(folder)}, name="other.yaml")
    with pytest.raises(UserError, match=rf"^{recipe} \(command-line override\): tasks.score.metrics: {folder} chose its "
                                        r"best model by score's pearsonr, this recipe's main metric is mse: keep "
                                        r"pearsonr first to resume \(or start a new run\)$"):
        setup(load_recipe(recipe, ["tasks.score.metrics=[mse]"]))
    assert setup(load_recipe(recipe, ["tasks.score.metrics=[pearsonr, mse]"])).progress.step == 1


def test_a_nan_validation_score_is_no_better_model_and_metrics_json_stays_strict(make_recipe, tmp_path):
    from conftest import tiny_tasks

    tasks = {"score": {**tiny_tasks()["score"], "metrics": ["mse"]}}
    recipe = make_recipe(tasks=tasks, training={"steps": 4, "eval_every": 2, "lr": 1e30, "head_lr": 1e30,
                                                "max_grad_norm": None, "warmup": 0.0})
    with pytest.warns(UserWarning, match="a validation metric is NaN"):
        train(load_recipe(recipe))
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["best"] for h in history] == [False, False] and history[0]["score"] is None
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert metrics["tasks"]["score"]["validation"]["mse"] is None
    from mtnlp.cli import main

    out = tmp_path / "eval.json"  # and mtnlp evaluate's file
    assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "--output", str(out)]) == 0
    evaluated = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {out.name}"))
    assert evaluated["tasks"]["score"]["validation"]["mse"] is None


def test_resuming_with_other_validation_splits_is_a_recipe_error(make_recipe, tmp_path):
    from mtnlp.train import checkpoint, evaluate_and_select

    run = setup(load_recipe(make_recipe(training={"steps": 4})))
    train_step(run)
    evaluate_and_select(run)
    folder = checkpoint(run)
    recipe = make_recipe(training={"steps": 4, "resume_from": str(folder)}, name="other.yaml")
    with pytest.raises(UserError, match=rf"training.resume_from: {folder} chose its best model by the validation splits "
                                        r"of sentiment, score, ner; this recipe has sentiment, score: give the same"):
        setup(load_recipe(recipe, ["tasks.ner.data.validation=null"]))


def test_resuming_with_another_validation_file_or_max_length_is_a_recipe_error(make_recipe, tmp_path):
    """The kept model's score was of other examples: it would be compared with the new ones', and reported as
    this recipe's validation metrics. The same examples in a file elsewhere resume."""
    from conftest import DATA

    from mtnlp.train import checkpoint, evaluate_and_select

    run = setup(load_recipe(make_recipe(training={"steps": 4})))
    train_step(run)
    evaluate_and_select(run)
    folder = checkpoint(run)
    dev = (DATA / "ner_sample_dev.conll").read_text()
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "dev.conll").write_text(dev)
    blocks = dev.split("\n\n")
    assert blocks[0].startswith("-DOCSTART-")
    (tmp_path / "fewer.conll").write_text("\n\n".join(blocks[:1] + blocks[2:]))  # one sentence less
    recipe = make_recipe(training={"steps": 4, "resume_from": str(folder)}, name="other.yaml")
    for override in (f"tasks.ner.data.validation={tmp_path / 'fewer.conll'}", "model.max_length=8"):
        task = "ner" if "ner" in override else "sentiment"  # the first task whose rows differ
        with pytest.raises(UserError, match=rf"^{recipe}:\d+: tasks.{task}: {folder} chose its best model by another "
                                            rf"validation split of {task}: its examples or what scores them differ"):
            setup(load_recipe(recipe, [override]))
    resumed = setup(load_recipe(recipe, [f"tasks.ner.data.validation={tmp_path / 'moved' / 'dev.conll'}"]))
    assert resumed.progress.step == 1 and resumed.progress.selected_on == run.progress.selected_on


def test_the_rows_signature_covers_what_scoring_reads_and_not_how_it_is_stored():
    """QA answers and words' tags past max_length are read by scoring, not by the model: a change there was
    missed. Storage (chunks, integer widths) is no change."""
    import datasets
    import pyarrow as pa

    from mtnlp.data import rows_signature

    rows = {"input_ids": [[101, 7, 102], [101, 8, 9, 102]], "labels": [[-100, 1, -100], [-100, 0, 1, -100]],
            "tags": [["B-ORG"], ["O", "B-PER", "O"]]}
    base = rows_signature(datasets.Dataset.from_dict(rows), ["O", "B-ORG"], {"threshold": 0.5})
    assert rows_signature(datasets.Dataset.from_dict({**rows, "tags": [["B-ORG"], ["O", "B-PER", "B-ORG"]]}),
                          ["O", "B-ORG"], {"threshold": 0.5}) != base  # a word past max_length
    assert rows_signature(datasets.Dataset.from_dict(rows), ["O", "B-ORG"], {"threshold": 0.2}) != base
    assert rows_signature(datasets.Dataset.from_dict(rows), ["B-ORG", "O"], {"threshold": 0.5}) != base
    chunked = pa.concat_tables([pa.table({k: v[:1] for k, v in rows.items()}), pa.table({k: v[1:] for k, v in rows.items()})])
    wide = chunked.cast(pa.schema([("input_ids", pa.list_(pa.int64())), ("labels", pa.list_(pa.int8())),
                                   ("tags", pa.list_(pa.string()))]))
    assert rows_signature(datasets.Dataset(wide), ["O", "B-ORG"], {"threshold": 0.5}) == base
    assert rows_signature(datasets.Dataset.from_dict(rows).select([1, 0]), ["O", "B-ORG"], {"threshold": 0.5}) != base


def test_an_early_stopped_run_checkpoints_its_last_step_and_resumes_as_stopped(make_recipe, tmp_path, capsys):
    """Nothing improves (a learning rate too small to change a prediction), patience 1: training stops at
    the second evaluation. Its last step is checkpointed; resuming it trains no further, unless a larger
    patience is given."""
    run = tmp_path / "run"
    training = {"steps": 8, "eval_every": 1, "save_every": 5, "lr": 1e-12, "head_lr": 1e-12, "warmup": 0.0,
                "early_stopping_patience": 1, "log_every": 1}
    recipe = make_recipe(training=training)
    train(load_recipe(recipe))
    assert steps_of(run / "checkpoints") == [2]
    metrics = (run / "metrics.json").read_text()
    state = run / "checkpoints" / "step-000002" / "trainer_state.json"  # as written before ended_early was
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != "ended_early"}))
    capsys.readouterr()
    train(load_recipe(recipe, ["training.resume_from=latest"]))
    out = capsys.readouterr().out
    assert "the run had stopped early (no improvement in 1 evaluation): nothing to train" in out, out
    assert [r["step"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())] == [1, 2]
    assert json.loads((run / "metrics.json").read_text())["best_step"] == json.loads(metrics)["best_step"] == 1
    train(load_recipe(recipe, ["training.resume_from=latest", "training.early_stopping_patience=3"]))
    assert steps_of(run / "checkpoints") == [2, 4]  # two more evaluations without improvement
    assert [r["step"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())] == [1, 2, 3, 4]


def test_the_last_step_is_checkpointed_when_save_every_does_not_divide_steps(make_recipe, tmp_path):
    train(load_recipe(make_recipe(training={"steps": 5, "save_every": 3, "keep_checkpoints": 4})))
    assert steps_of(tmp_path / "run" / "checkpoints") == [3, 5]
    train(load_recipe(make_recipe(training={"steps": 7, "save_every": 3, "keep_checkpoints": 4,
                                            "resume_from": "latest"})))
    assert steps_of(tmp_path / "run" / "checkpoints") == [3, 5, 6, 7]


def test_a_task_without_validation_is_said_to_be_out_of_model_selection(make_recipe, capsys, recwarn):
    train(load_recipe(make_recipe(training={"steps": 2, "eval_every": 1}), ["tasks.ner.data.validation=null"]))
    assert "model selection goes by the validation splits of sentiment, score; ner has none" \
        in capsys.readouterr().out
    assert not [w for w in recwarn if "no task has a validation split" in str(w.message)]  # (some have one)


def test_early_stopping_without_any_validation_split_is_said_to_be_unread(make_recipe):
    """With no validation split at all, eval_every and early_stopping_patience did nothing, without a word."""
    no_validation = ["tasks.ner.data.validation=null", "tasks.sentiment.data.validation_from_train=null",
                     "tasks.score.data.validation_from_train=null"]
    recipe = make_recipe(training={"steps": 2, "eval_every": 1, "early_stopping_patience": 1})
    with pytest.warns(UserWarning, match=r"training.early_stopping_patience: not read: no task has a validation split"):
        train(load_recipe(recipe, no_validation))
    with pytest.warns(UserWarning, match=r"training.eval_every: not read: no task has a validation split"):
        train(load_recipe(recipe, [*no_validation, "training.early_stopping_patience=null", "overwrite_output_dir=true"]))


def test_a_run_whose_patience_ran_out_at_its_last_step_trains_on_with_more_steps(make_recipe, tmp_path, capsys):
    """It ended at its own last step, not early: resumed with more steps it trains on to the next evaluation."""
    run = tmp_path / "run"
    training = {"steps": 3, "eval_every": 1, "save_every": 3, "lr": 1e-12, "head_lr": 1e-12, "warmup": 0.0,
                "early_stopping_patience": 2, "log_every": 1}
    recipe = make_recipe(training=training)
    assert train(load_recipe(recipe)).metrics["steps"] == {"trained": 3, "planned": 3}
    capsys.readouterr()
    result = train(load_recipe(recipe, ["training.resume_from=latest", "training.steps=6"]))
    out = capsys.readouterr().out
    assert "had stopped early" not in out and "early stopping at step 4: no improvement in 3 evaluations" in out, out
    assert result.metrics["steps"] == {"trained": 4, "planned": 6}
    assert steps_of(run / "checkpoints") == [3, 4]


def test_the_best_steps_checkpoint_must_be_on_the_runs_way(tmp_path):
    """A step-N beside the resumed checkpoint that another history wrote (another best score) is not restored."""
    from types import SimpleNamespace

    from mtnlp.folders import STATE_FILE
    from mtnlp.train import checkpoint_of_step

    folder = tmp_path / "run" / "checkpoints" / "step-000002"
    folder.mkdir(parents=True)
    (folder / STATE_FILE).write_text(json.dumps({"best_step": 2, "best_score": 0.5}))
    run = SimpleNamespace(run_dir=tmp_path / "run", resumed_from=None, progress=SimpleNamespace(best_score=0.5))
    assert checkpoint_of_step(run, 2) == folder
    run.progress.best_score = 0.6
    assert checkpoint_of_step(run, 2) is None
    run.resumed_from, run.run_dir = folder.parent / "step-000004", tmp_path / "other"  # beside the resumed one
    run.progress.best_score = 0.5
    assert checkpoint_of_step(run, 2) == folder


@pytest.mark.parametrize("written_by", ["today", "an mtnlp before 12-06"])
def test_a_resume_that_asks_for_more_metrics_reports_them_for_the_kept_model_too(make_recipe, tmp_path, written_by):
    """The kept model's validation figures are those stored when it was evaluated; a resume that adds a metric
    (the main one unchanged) and finds no better model evaluates it again (the test split's are computed anew).
    An older checkpoint does not say which metrics they are: evaluated again too."""
    recipe = make_recipe(training={"steps": 4, "eval_every": 2, "save_every": 2, "lr": 1e-12, "log_every": 4})
    train(load_recipe(recipe))
    if written_by != "today":
        for state in (tmp_path / "run" / "checkpoints").glob("step-*/trainer_state.json"):
            saved = json.loads(state.read_text())
            del saved["best_metrics"]
            state.write_text(json.dumps(saved))
    train(load_recipe(recipe, ["training.steps=6", "training.resume_from=latest",
                               "tasks.ner.metrics=[seqeval, token_accuracy]"]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_step"] == 2  # (no later step is better at this learning rate)
    assert set(metrics["tasks"]["ner"]["validation"]) == {"precision", "recall", "f1", "token_accuracy"}


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_a_checkpoint_restores_pythons_numpys_and_torchs_random_state(tmp_path):
    """A resumed run drew other random numbers than the uninterrupted one where its Python or numpy state was
    not restored (only torch's)."""
    import random

    import numpy as np

    from mtnlp.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    folder = save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1})
    expected = random.random(), float(np.random.rand()), float(torch.rand(1))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    load_checkpoint(folder, model, optimizer)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_a_task_only_another_rank_drew_since_the_last_record_keeps_its_losses_on_a_resume():
    """Resumed on another number of processes, the ranks' loss-log and DWA sums were merged over the tasks the
    first rank named: a task only another rank had drawn since the last record lost its losses."""
    from mtnlp.checkpoint import mean_sums_and_counts

    ranks = [{"sums": {"a": 1.0}, "counts": {"a": 1}}, {"sums": {"a": 3.0, "b": 2.0}, "counts": {"a": 1, "b": 2}}]
    assert mean_sums_and_counts(ranks) == {"sums": {"a": 2.0, "b": 1.0}, "counts": {"a": 1.0, "b": 1.0}}


def test_pruning_keeps_the_newest_complete_checkpoints_and_a_resume_drops_only_later_ones(tmp_path):
    """keep_checkpoints kept one checkpoint more than asked (a disk filled up one step sooner than planned), and a
    run resumed at a step kept the checkpoint right after it, which `latest` then found instead of the new run's."""
    from mtnlp.checkpoint import prune_checkpoints, remove_checkpoints_after

    for step in (2, 3, 4, 5):
        fake_checkpoint(tmp_path / f"step-{step:06d}")
    prune_checkpoints(tmp_path, 3)
    assert steps_of(tmp_path) == [3, 4, 5]
    remove_checkpoints_after(tmp_path, 3)
    assert steps_of(tmp_path) == [3]


def test_a_checkpoint_saved_again_at_its_step_replaces_the_one_there(tmp_path):
    """A checkpoint saved where one of its step already was (a resumed run that saves the step it resumed at)
    failed: a folder is not renamed over a folder that has files."""
    from mtnlp.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    folder = save_checkpoint(tmp_path / "step-000001", model, optimizer, {"step": 1})
    save_checkpoint(folder, model, optimizer, {"step": 1, "again": True})
    assert load_checkpoint(folder, model, optimizer)["again"] is True
