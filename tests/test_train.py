"""End-to-end training runs on the tiny encoder: run directory, bf16, resume, TensorBoard, CLI."""

import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import fake_checkpoint, tiny_tasks
from safetensors.torch import load_file

from mtnlp.cli import main
from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_directory_contents(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 6, "eval_every": 3, "save_every": 3})
    result = train(load_recipe(recipe))
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").exists()
    assert (run / "model" / "tokenizer.json").exists()
    assert (run / "recipe.yaml").exists() and (run / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"sentiment", "score", "ner"}
    assert metrics["best_step"] in (3, 6) and metrics["processes"] == 1
    assert set(metrics["tasks"]["sentiment"]["validation"]) == {"accuracy", "f1"}
    assert set(metrics["tasks"]["score"]["validation"]) == {"pearsonr", "spearmanr", "mse"}
    assert set(metrics["tasks"]["ner"]["validation"]) == {"precision", "recall", "f1"}  # seqeval, from IOB labels
    history = read_jsonl(run / "history.jsonl")
    assert [h["step"] for h in history] == [3, 6]
    assert sum(h["best"] for h in history) >= 1
    assert result.model.config.tasks["ner"]["labels"][0] in ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "O")
    # the kept model is the best one and reloads with every head
    from mtnlp import MultiTaskModel

    reloaded = MultiTaskModel.from_pretrained(run / "model")
    assert set(reloaded.config.tasks) == {"sentiment", "score", "ner"}


def test_bf16_training_loss_falls(make_recipe, tmp_path):
    from conftest import DATA

    tasks = {"ner": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ner_sample.conll")}}}
    recipe = make_recipe(tasks=tasks, training={"steps": 30, "mixed_precision": "bf16", "lr": 3e-3, "warmup": 0.0,
                                                "batch_size": 8, "log_every": 1})
    result = train(load_recipe(recipe))
    assert result.accelerator.mixed_precision == "bf16"
    losses = [r["loss"]["ner"] for r in read_jsonl(tmp_path / "run" / "train_log.jsonl")]
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_resume_gives_same_batches_and_parameters(make_recipe, tmp_path):
    training = {"steps": 8, "save_every": 4, "keep_checkpoints": 5, "grad_accum": 2}
    full = make_recipe(training=training, sampling={"strategy": "temperature"}, name="full.yaml")
    train(load_recipe(full))
    run = tmp_path / "run"
    resumed_dir = tmp_path / "resumed"
    train(load_recipe(full, [f"output_dir={resumed_dir}", f"training.resume_from={run}/checkpoints/step-000004"]))
    a = load_file(run / "checkpoints" / "step-000008" / "model.safetensors")
    b = load_file(resumed_dir / "checkpoints" / "step-000008" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resumed run drew the same tasks and batches: identical per-step losses after step 4 (steps 1-4: the
    # lines carried over from the run it resumed)
    full_log = {r["step"]: r["loss"] for r in read_jsonl(run / "train_log.jsonl")}
    resumed_log = {r["step"]: r["loss"] for r in read_jsonl(resumed_dir / "train_log.jsonl")}
    assert sorted(resumed_log) == [1, 2, 3, 4, 5, 6, 7, 8]
    for step in resumed_log:
        assert resumed_log[step] == pytest.approx(full_log[step], rel=1e-6)  # outputs of two model instances
    state_a = json.loads((run / "checkpoints" / "step-000008" / "trainer_state.json").read_text())
    state_b = json.loads((resumed_dir / "checkpoints" / "step-000008" / "trainer_state.json").read_text())
    assert state_a["sampler"] == state_b["sampler"] and state_a["batches"] == state_b["batches"]
    # the per-task batch and example counts continue where the checkpoint left them
    counts = {r["step"]: (r["batches"], r["examples"]) for r in read_jsonl(run / "train_log.jsonl")}
    assert {r["step"]: (r["batches"], r["examples"]) for r in read_jsonl(resumed_dir / "train_log.jsonl")} == counts
    assert sum(counts[8][0].values()) == 16  # 8 steps of 2 micro-batches


def test_resume_latest_picks_newest_complete_checkpoint(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 4, "save_every": 2, "keep_checkpoints": 3})
    train(load_recipe(recipe))
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "step-000004" / "trainer_state.json").unlink()  # as if killed mid-write
    from mtnlp.folders import find_checkpoint

    assert find_checkpoint(tmp_path / "run", "latest").name == "step-000002"


def test_early_stopping_stops(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 40, "eval_every": 1, "early_stopping_patience": 1, "lr": 0.5,
                                   "log_every": 50, "save_every": 1, "keep_checkpoints": 1})
    result = train(load_recipe(recipe))
    history = read_jsonl(tmp_path / "run" / "history.jsonl")
    assert len(history) < 40
    assert not history[-1]["best"]
    stopped = history[-1]["step"]
    # the steps before the stop are logged (log_every is past them) and its checkpoint is written
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert [r["step"] for r in log] == [stopped]
    assert sum(log[0]["batches"].values()) == stopped == sum(c["batches"] for c in result.metrics["trained_on"].values())
    assert (tmp_path / "run" / "checkpoints" / f"step-{stopped:06d}").is_dir()
    # metrics.json and the card say where training ended
    assert result.metrics["steps"] == {"trained": stopped, "planned": 40}
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert f"Kept model: step {result.metrics['best_step']} of {stopped} trained (early stopping; 40 planned)." in card


def test_tensorboard_logs_each_tasks_loss_and_validation_metrics(make_recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = make_recipe(training={"steps": 3, "log_every": 1, "report_to": ["tensorboard"]})
    result = train(load_recipe(recipe))
    (folder,) = {path.parent for path in (tmp_path / "run").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(folder))
    events.Reload()
    tags = set(events.Tags()["scalars"])  # (an events file that logged nothing is 88 bytes: its size says nothing)
    assert {"train/lr", "train/head_lr"} <= tags and any(t.startswith("train/loss/") for t in tags), tags
    evaluated = {f"eval/{task}/{metric}" for task, splits in result.metrics["tasks"].items()
                 for metric in splits.get("validation", {})}
    assert evaluated and evaluated <= tags, (evaluated, tags)


def tensorboard_scalars(run_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = {path.parent for path in run_dir.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_holds_every_number_of_the_logs_at_their_steps(make_recipe, tmp_path):
    """The conflicts of the every-task methods, MGDA's coefficients, the examples and batches per task and the
    selection's score were in train_log.jsonl / history.jsonl alone."""
    recipe = make_recipe(training={"steps": 4, "log_every": 2, "eval_every": 2, "report_to": ["tensorboard"]},
                         mtl={"gradient": "mgda"})
    train(load_recipe(recipe))
    logged = tensorboard_scalars(tmp_path / "run")
    log, history = read_jsonl(tmp_path / "run" / "train_log.jsonl"), read_jsonl(tmp_path / "run" / "history.jsonl")
    assert {"mgda_conflicts", "coefficients", "examples", "batches", "loss", "weights", "lr"} <= set(log[0])
    names = {"weights": "weight", "coefficients": "coefficient", "validation": None}  # (eval/<task>/<metric>)
    for record, prefix in [(r, "train") for r in log] + [(r, "eval") for r in history]:
        for key, value in record.items():
            if key in ("step", "best", "main"):
                continue
            parts = [prefix, names.get(key, key)]
            leaves = [([*parts, task], v) for task, v in value.items()] if isinstance(value, dict) else [(parts, value)]
            if prefix == "eval" and key == "loss":  # eval/<task>/loss, beside the task's metrics
                leaves = [([prefix, task, "loss"], v) for task, v in value.items()]
            for path, leaf in [(p + [m], x) for p, v in leaves if isinstance(v, dict) for m, x in v.items()] + \
                              [(p, v) for p, v in leaves if not isinstance(v, dict)]:
                tag = "/".join(part for part in path if part is not None)
                assert logged[tag][record["step"]] == pytest.approx(leaf, rel=1e-6), tag
    tasks = list(log[0]["loss"])
    assert sorted(log[0]["coefficients"]) == sorted(tasks) and sum(log[0]["coefficients"].values()) > 0
    assert {f"train/coefficient/{t}" for t in tasks} | {"eval/score", "train/mgda_conflicts"} <= set(logged)
    assert {f"eval/{t}/loss" for t in tasks} <= set(logged)


def test_each_evaluation_gives_each_tasks_validation_loss_pooled_as_a_training_steps(make_recipe):
    """The Trainer's eval_loss, per task: the head's loss over the split's items (rows; a tagging task's labelled
    tokens), whatever the evaluation batches."""
    from conftest import set_up_run

    from mtnlp.data import collate, model_rows
    from mtnlp.evaluation import evaluate_split
    from mtnlp.modeling import evaluating

    with set_up_run(make_recipe(training={"steps": 2})) as run:
        losses = {}
        evaluate_split(run.unwrapped, run.tokenizer, run.tasks, run.metrics, "validation", 3, losses=losses)
        assert sorted(losses) == sorted(run.tasks)
        for name, data in run.tasks.items():
            rows = model_rows(data.splits["validation"])
            whole = collate([rows[i] for i in range(len(rows))], run.tokenizer.pad_token_id, data.type)
            with evaluating(run.unwrapped), torch.no_grad():
                expected = run.unwrapped(**whole, task=name).loss.item()  # one batch: its mean is the pooled one
            assert losses[name] == pytest.approx(expected, rel=1e-5), name


def test_tensorboard_scalars_are_the_records_numbers_by_their_paths_and_nothing_else():
    from mtnlp import report

    record = {"step": 3, "lr": 0.1, "loss": {"a": 1.0, "b": None}, "weights": {"a": 0.5}, "grad_norm": None,
              "mgda_conflicts": 0.25, "coefficients": {"a": 1.5}, "examples": {"a": 8}, "flag": True}
    assert report.train_scalars(record) == {"train/lr": 0.1, "train/loss/a": 1.0, "train/weight/a": 0.5,
                                            "train/mgda_conflicts": 0.25, "train/coefficient/a": 1.5,
                                            "train/examples/a": 8}
    assert report.eval_scalars({"step": 3, "score": 0.5, "best": True, "main": {"a": 0.7}, "loss": {"a": 0.2},
                                "validation": {"a": {"accuracy": 0.7, "f1": None}}}) == {
        "eval/score": 0.5, "eval/a/loss": 0.2, "eval/a/accuracy": 0.7}


def test_a_run_that_replaces_another_leaves_none_of_its_tensorboard_events(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 4, "report_to": ["tensorboard"]})
    train(load_recipe(recipe))
    train(load_recipe(recipe, ["overwrite_output_dir=true", "training.steps=2"]))
    assert len(list((tmp_path / "run").rglob("events.out.tfevents.*"))) == 1
    assert sorted(tensorboard_scalars(tmp_path / "run")["train/lr"]) == [1, 2]
    train(load_recipe(recipe, ["overwrite_output_dir=true", "training.steps=1", "name=other"]))  # another folder
    assert [p.parent.name for p in (tmp_path / "run").rglob("events.out.tfevents.*")] == ["other"]


def test_a_run_resumed_into_a_new_folder_logs_the_carried_lines_to_tensorboard_too(make_recipe, tmp_path):
    """history.jsonl and train_log.jsonl held the source run's lines up to the step; TensorBoard began after it."""
    recipe = make_recipe(training={"steps": 4, "eval_every": 1, "save_every": 2, "report_to": ["tensorboard"]})
    train(load_recipe(recipe))
    new = tmp_path / "new"
    train(load_recipe(recipe, [f"output_dir={new}", f"training.resume_from={tmp_path}/run/checkpoints/step-000002"]))
    logged = tensorboard_scalars(new)
    assert sorted(logged["eval/sentiment/accuracy"]) == sorted(logged["eval/score"]) == [1, 2, 3, 4]
    assert sorted(logged["train/lr"]) == [r["step"] for r in read_jsonl(new / "train_log.jsonl")] == [1, 2, 3, 4]
    source = tensorboard_scalars(tmp_path / "run")
    assert all(logged["train/lr"][step] == source["train/lr"][step] for step in (1, 2))


def test_tensorboard_drops_what_an_abandoned_branch_logged_after_the_resumed_step(make_recipe, tmp_path):
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = make_recipe(training={"steps": 4, "eval_every": 1, "save_every": 2, "keep_checkpoints": 5,
                                   "report_to": ["tensorboard"]})
    train(load_recipe(recipe))
    time.sleep(1.1)  # the events file of the resumed run is named by the second it starts: it sorts after
    train(load_recipe(recipe, [f"training.resume_from={tmp_path}/run/checkpoints/step-000002"]))
    (folder,) = {path.parent for path in (tmp_path / "run").rglob("events.out.tfevents.*")}
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/sentiment/accuracy")] == [1, 2, 3, 4]


def test_cli_train_and_evaluate(make_recipe, tmp_path, capsys):
    recipe = make_recipe(training={"steps": 3})
    assert main(["train", str(recipe), "training.steps=2"]) == 0
    assert len(read_jsonl(tmp_path / "run" / "train_log.jsonl")) == 2
    assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert "sentiment" in out and "ner" in out and "precision: fp32 (requested)" in out  # the recipe's
    assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "--precision", "auto"]) == 0
    assert "precision: fp32 (requested)" not in capsys.readouterr().out  # --precision wins over the recipe
    written = json.loads((tmp_path / "run" / "model" / "eval-validation.json").read_text())
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["tasks"]["ner"]["validation"] == pytest.approx(trained["tasks"]["ner"]["validation"])
    # evaluating with a shorter max_length warns once per truncated task
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "model.max_length=10",
                     "--split", "validation"]) == 0
    notes = [str(w.message) for w in caught if "longer than max_length=10" in str(w.message)]
    assert sorted(n.split(":")[0] for n in notes) == ["ner validation", "score validation", "sentiment validation"]


def test_evaluate_reads_at_the_trained_max_length_unless_the_recipe_sets_one(make_recipe, tmp_path, tiny_encoder, capsys):
    recipe = make_recipe(training={"steps": 2})
    assert main(["train", str(recipe), "model.max_length=12"]) == 0
    model = tmp_path / "run" / "model"
    bare = make_recipe(model={"encoder": tiny_encoder}, name="bare.yaml")  # no model.max_length
    assert main(["evaluate", str(model), str(bare), "--output", str(tmp_path / "eval.json")]) == 0
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())["tasks"]
    evaluated = json.loads((tmp_path / "eval.json").read_text())["tasks"]
    for task in trained:  # as training evaluated it: truncated at 12 tokens, not the default 128
        assert evaluated[task]["validation"] == pytest.approx(trained[task]["validation"]), task
    assert json.loads((tmp_path / "eval.json").read_text())["max_length"] == 12
    assert "reading at max_length" not in capsys.readouterr().out
    assert main(["evaluate", str(model), str(bare), "model.max_length=16", "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["max_length"] == 16
    assert "reading at max_length 16 (the recipe's model.max_length); the model was trained at 12" in capsys.readouterr().out
    assert main(["evaluate", str(model), str(bare), "model.max_length=2048"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bare} (command-line override): model.max_length: 2048 is more "
                                               "than the encoder's position embeddings hold (128)")


def test_a_diverged_head_scores_nan_and_is_named(make_recipe, tmp_path):
    from mtnlp import MultiTaskModel

    recipe = make_recipe(training={"steps": 2})
    assert main(["train", str(recipe)]) == 0
    model = MultiTaskModel.from_pretrained(tmp_path / "run" / "model")
    with torch.no_grad():  # the regression and classification heads' output layers diverged
        for task in ("score", "sentiment"):
            next(p for n, p in model.heads[task].named_parameters() if n.endswith("bias")).fill_(math.nan)
    model.save_pretrained(tmp_path / "run" / "model")
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "--output", str(tmp_path / "e.json")]) == 0
    notes = sorted(str(w.message) for w in caught if "infinite logits" in str(w.message))
    assert [n.split(":")[0] for n in notes] == ["score", "sentiment"]
    for note in notes:  # every row of the task: "score: 10 of 10 examples got NaN or infinite logits (...)"
        bad, total = note.split(": ")[1].split(" examples")[0].split(" of ")
        assert bad == total and int(total) > 0
    scores = json.loads((tmp_path / "e.json").read_text())["tasks"]
    # correlations of NaN predictions are NaN (null in JSON), which model selection passes over; before, they
    # were 0.0, the figure of a constant prediction
    assert scores["score"]["validation"]["pearsonr"] is None and scores["score"]["validation"]["spearmanr"] is None
    assert scores["ner"]["validation"]["f1"] is not None


def test_cli_evaluate_skips_tasks_without_the_split(make_recipe, tmp_path, capsys):
    recipe = make_recipe(training={"steps": 2})
    assert main(["train", str(recipe)]) == 0
    model = str(tmp_path / "run" / "model")
    assert main(["evaluate", model, str(recipe), "--split", "test"]) == 2  # no task has one
    assert "no task has a test split" in capsys.readouterr().err
    sentiment = yaml.safe_load(recipe.read_text())["tasks"]["sentiment"]["data"]
    dev = sentiment.get("validation") or sentiment["train"]
    assert main(["evaluate", model, str(recipe), f"tasks.sentiment.data.test={dev}", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "not evaluated (no test split): score, ner" in out
    assert set(json.loads((tmp_path / "run" / "model" / "eval-test.json").read_text())["tasks"]) == {"sentiment"}
    # some of the recipe's tasks (a run's recipe.yaml names them all)
    capsys.readouterr()
    assert main(["evaluate", model, str(recipe), "--tasks", "ner,score"]) == 0  # in the order given, as predict answers
    assert list(json.loads((tmp_path / "run" / "model" / "eval-validation.json").read_text())["tasks"]) == ["ner", "score"]
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith(("ner ", "score "))] == \
        ["ner", "score"]
    assert main(["evaluate", model, str(recipe), "--tasks", "ner,pos"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --tasks: {recipe} has no task 'pos' (it has: sentiment, score, ner)"
    assert main(["evaluate", model, str(recipe), "--tasks", "score, ner"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --tasks: {recipe} has no task ' ner' (it has: sentiment, score, "
                                               "ner); spaces count in a task name: 'ner' is one")
    # a label that data.label_names made: the message says which file value it was
    assert main(["evaluate", model, str(recipe), "--tasks", "sentiment", "tasks.sentiment.data.label_names={0: negative, 1: positive}"]) == 2
    said = capsys.readouterr().err
    assert "label 'negative' (the file's '0', renamed by data.label_names) is not one of the model's labels (known: 0, 1)" \
        in said, said
    # a recipe naming only held-out data: no training split needed (none is read)
    from conftest import DATA

    held_out = make_recipe(tasks={"ner": {"type": "tagging", "data": {"test": str(DATA / "ner_sample_dev.conll")}}},
                           name="held_out.yaml")
    assert main(["evaluate", model, str(held_out), "--split", "test"]) == 0
    assert set(json.loads((tmp_path / "run" / "model" / "eval-test.json").read_text())["tasks"]) == {"ner"}
    assert main(["train", str(held_out)]) == 2
    assert capsys.readouterr().err.strip().endswith("tasks.ner.data.train: a training split is required")
    carved = make_recipe(tasks={"ner": {"type": "tagging", "data": {"validation_from_train": 0.5}}}, name="carved.yaml")
    assert main(["evaluate", model, str(carved)]) == 2
    assert capsys.readouterr().err.strip().endswith("tasks.ner.data.train: validation_from_train carves the validation "
                                                    "split from it: give data.train")


def test_cli_user_errors_are_one_line_exit_2(make_recipe, tmp_path):
    recipe = make_recipe()
    for args, expected in [
        (["train", str(recipe), "training.lrr=1"], "unknown key 'training.lrr'"),
        (["train", str(recipe), "training.steps=abc"], "training.steps"),
        (["train", str(tmp_path / "missing.yaml")], "recipe file not found"),
        (["train", "training.steps=3", str(recipe)], "training.steps=3: recipe file not found (overrides key=value "
                                                     "come after the recipe file)"),
        (["train", str(recipe), "sampling.strategy=bogus"], "sampling.strategy"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "mtnlp", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_console_script_help():
    script = Path(sys.executable).parent / "mtnlp"  # the installed console script, beside this python
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "evaluate" in proc.stdout


def test_zero_loss_weight_leaves_that_head_untouched(make_recipe, tmp_path):
    from conftest import tiny_tasks

    tasks = tiny_tasks()
    tasks["sentiment"]["loss_weight"] = 0.0
    recipe = make_recipe(tasks=tasks, sampling={"strategy": "round_robin"},
                         training={"steps": 6, "weight_decay": 0.0, "warmup": 0.0})
    result = train(load_recipe(recipe))
    # sentiment's classifier got zero gradient every step; the others moved
    trained = result.last_model.heads
    assert torch.equal(trained["sentiment"].classifier.weight, _fresh_head(recipe, result, "sentiment"))
    assert not torch.equal(trained["score"].classifier.weight, _fresh_head(recipe, result, "score"))


def recipe_encoder(recipe_path):
    return load_recipe(recipe_path).model.encoder


def _fresh_head(recipe_path, result, task):
    """The head's initial weights: same seed, same construction as train()."""
    from transformers import set_seed

    from mtnlp import MultiTaskModel

    set_seed(load_recipe(recipe_path).training.seed)
    model = MultiTaskModel.from_encoder(recipe_encoder(recipe_path), result.last_model.config.tasks)
    return model.heads[task].classifier.weight


@pytest.mark.parametrize("precision", ["no", "fp16"])
def test_other_precisions_train(make_recipe, tmp_path, precision):
    recipe = make_recipe(training={"steps": 3, "mixed_precision": precision})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(load_recipe(recipe))
    said = [str(w.message) for w in caught if "fp16 on a CPU runs as fp32" in str(w.message)]
    line = next(i for i, text in enumerate(recipe.read_text().splitlines(), 1) if "mixed_precision" in text)
    assert said == ([f"{recipe}:{line}: training.mixed_precision: fp16 on a CPU runs as fp32 (Accelerate does not "
                     "autocast fp16 on a CPU); use bf16 or auto for half precision on a CPU"] if precision == "fp16" else [])
    assert result.accelerator.mixed_precision == "no"  # fp16 on a CPU: fp32, and the records say so
    used = json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"]
    assert (used["requested"], used["used"]) == ("fp32" if precision == "no" else "fp16", "fp32")
    losses = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert len(losses) == 3 and all(v == v for r in losses for v in r["loss"].values())


def test_a_transfer_scores_its_starting_model_and_keeps_it_unless_training_beats_it(make_recipe, tmp_path):
    """A fine-tune was first evaluated at eval_every: one that made the task worse kept its worse model as the
    best, and nothing recorded the score it started from."""
    from conftest import tiny_tasks
    from safetensors.torch import load_file

    train(load_recipe(make_recipe(training={"steps": 4}, name="first.yaml")))
    target = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2, "eval_every": 1, "lr": 1e-12},
                         name="second.yaml", output_dir=str(tmp_path / "second"))
    train(load_recipe(target, [f"model.init_from={tmp_path / 'run'}"]))
    history = read_jsonl(tmp_path / "second" / "history.jsonl")
    assert [(r["step"], r["best"]) for r in history] == [(0, True), (1, False), (2, False)]  # equal is not better
    assert json.loads((tmp_path / "second" / "metrics.json").read_text())["best_step"] == 0
    source, kept = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("run", "second"))
    assert all(torch.equal(kept[k], source[k]) for k in kept) and any(k.startswith("heads.ner") for k in kept)
    # no source, no step 0
    assert read_jsonl(tmp_path / "run" / "history.jsonl")[0]["step"] > 0


def test_init_from_transfers_encoder_and_matching_heads(make_recipe, tmp_path, tiny_encoder, capsys):
    """Multi-task run, then a second run on one target task starting from it (MT-DNN style refinement)."""
    from conftest import tiny_tasks

    from mtnlp import MultiTaskModel

    first = make_recipe(training={"steps": 4}, name="first.yaml")
    source = train(load_recipe(first)).model
    target = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 1, "lr": 1e-9, "warmup": 0.0},
                         name="second.yaml", output_dir=str(tmp_path / "second"), overwrite_output_dir=True)
    result = train(load_recipe(target, [f"model.init_from={tmp_path / 'run'}"]))
    assert f"init_from {tmp_path / 'run' / 'model'}: the encoder, and\n  head ner: kept\n" in capsys.readouterr().out
    assert list(result.last_model.config.tasks) == ["ner"]
    # a local source is recorded without its path: config.json is pushed with the model (the run's recipe has it)
    assert result.last_model.config.mtnlp["init_from"] == {"model": None, "revision": None,
                                                           "tasks": list(source.config.tasks), "encoder_of": None}
    assert str(tmp_path) not in (tmp_path / "second" / "model" / "config.json").read_text()
    card = (tmp_path / "second" / "model" / "README.md").read_text()  # a local source's path is not shown
    from mtnlp import __version__  # the model says which mtnlp made it

    assert result.last_model.config.mtnlp["version"] == __version__
    assert f"with 1 task head, trained with [mtnlp](https://pypi.org/project/mtnlp/) {__version__}, after multi-task " \
           f"training on {', '.join(source.config.tasks)}.\n" in card and str(tmp_path) not in card
    for (name, a), (_, b) in zip(source.encoder.state_dict().items(), result.last_model.encoder.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # lr 1e-9: one step moves nothing
    torch.testing.assert_close(source.heads["ner"].classifier.weight, result.last_model.heads["ner"].classifier.weight,
                               atol=1e-6, rtol=0)
    fresh = MultiTaskModel.from_trained(source, result.last_model.config.tasks, keep_heads=False)
    assert not torch.equal(fresh.heads["ner"].classifier.weight, source.heads["ner"].classifier.weight)
    # a hard-shared source has one encoder: naming a task's is a mistake, not silently ignored
    with pytest.raises(UserError, match=r"^.*second.yaml \(command-line override\): model.init_encoder_of: the "
                                        r"source \(mtl.sharing: hard\) shares one encoder among its tasks: leave "
                                        r"init_encoder_of out$"):
        train(load_recipe(target, [f"model.init_from={tmp_path / 'run'}", "model.init_encoder_of=ner"]))
    with pytest.raises(UserError, match="model.init_from: .*nowhere: model folder not found"):
        train(load_recipe(target, [f"model.init_from={tmp_path / 'nowhere'}"]))
    with pytest.raises(UserError, match="model.init_from: .*: a bert model, not an mtnlp multi-task model"):
        train(load_recipe(target, [f"model.init_from={tiny_encoder}"]))
    # labels that differ from the source's: the head starts new, and the run says so
    renamed = {"ner": {**tiny_tasks()["ner"], "data": {**tiny_tasks()["ner"]["data"], "label_names": {
        t: t.lower() for t in source.config.tasks["ner"]["labels"]}}}}
    other = make_recipe(tasks=renamed, training={"steps": 1}, name="third.yaml", output_dir=str(tmp_path / "third"))
    with pytest.warns(UserWarning, match="no head of the source matches"):
        train(load_recipe(other, [f"model.init_from={tmp_path / 'run'}"]))
    assert "  head ner: new: other labels than the source's (" in capsys.readouterr().out
    # a folder whose tokenizer lost its vocabulary (tokenizer.json) loads as special tokens only: every word [UNK]
    shutil.copytree(tmp_path / "run" / "model", tmp_path / "no-vocab")
    (tmp_path / "no-vocab" / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"model.init_from: .*no-vocab: not a complete model folder: no tokenizer "
                                        r"\(tokenizer_config.json and tokenizer.json\)$"):
        train(load_recipe(target, [f"model.init_from={tmp_path / 'no-vocab'}"]))
    # a checkpoint, or a run with checkpoints and no model yet, is named for what it is
    fake_checkpoint(tmp_path / "stopped" / "checkpoints" / "step-2")
    for folder in ("stopped", "stopped/checkpoints/step-2"):
        with pytest.raises(UserError, match="a training checkpoint, or a run that has not finished: finish it"):
            train(load_recipe(target, [f"model.init_from={tmp_path / folder}"]))
    # a run folder whose run has not finished: its model/ is a best-so-far, which was taken without a word
    import fcntl

    shutil.copytree(tmp_path / "run", tmp_path / "unfinished")
    unfinished = tmp_path / "unfinished"
    fake_checkpoint(unfinished / "checkpoints" / "step-000009")  # a later checkpoint than its metrics.json's
    with pytest.raises(UserError, match=rf"model.init_from: {unfinished}: a run that has not finished \(resumed, and "
                                        rf"stopped at step 9 before it finished \(its metrics.json is of step 4\)\): "
                                        rf"finish it \(training.resume_from\), or give {unfinished / 'model'} to start "
                                        rf"from its best model so far \(step \d\)$"):
        train(load_recipe(target, [f"model.init_from={unfinished}"]))
    (unfinished / "metrics.json").unlink()
    with pytest.raises(UserError, match=r"has not finished \(stopped before it finished: no metrics.json\)"):
        train(load_recipe(target, [f"model.init_from={unfinished}"]))
    with open(tmp_path / "run" / ".mtnlp-training.lock", "w") as lock:  # as a run training in it holds it
        lock.write("process 12 on host")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match=r"has not finished \(training now: process 12 on host\)"):
            train(load_recipe(target, [f"model.init_from={tmp_path / 'run'}"]))
    train(load_recipe(target, [f"model.init_from={unfinished / 'model'}"]))  # its model/ itself, if that is what is meant
    # a relative source that is neither here nor on the hub: where it was looked for
    with pytest.raises(UserError, match=r"runs-x/src: not in the local hub cache.*; nor is it a folder in the current "
                                        r"folder \(.*\), where a relative model.init_from is read$"):
        train(load_recipe(target, ["model.init_from=runs-x/src"]))


def test_an_encoder_with_a_slow_tokenizer_is_a_recipe_error(make_recipe, tiny_encoder, tmp_path):
    from conftest import minilm_path
    from transformers import BertTokenizerLegacy

    folder = shutil.copytree(tiny_encoder, tmp_path / "slow")
    (folder / "tokenizer.json").unlink()
    BertTokenizerLegacy(vocab_file=str(Path(minilm_path()) / "vocab.txt")).save_pretrained(folder)
    recipe = make_recipe(model={"encoder": str(folder)})
    with pytest.raises(UserError, match=rf"^{recipe}:\d+: model.encoder: {folder}: its tokenizer is a Python \(slow\) "
                                        r"one, BertTokenizerLegacy; mtnlp needs a fast one \(tokenizer.json\): load it"):
        train(load_recipe(recipe))


def test_a_split_whose_tokens_are_often_unknown_to_the_vocabulary_gets_a_warning(make_recipe, tiny_encoder, tmp_path):
    """An uncased vocabulary read without lowercasing: every capitalised word (the NER sample's names) is [UNK]."""
    from conftest import minilm_path
    from transformers import BertTokenizer

    folder = shutil.copytree(tiny_encoder, tmp_path / "cased")
    BertTokenizer(vocab=str(Path(minilm_path()) / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    recipe = make_recipe(model={"encoder": str(folder), "max_length": 64}, training={"steps": 1})
    with pytest.warns(UserWarning, match=r"tasks.ner.data: the train split: \d+\.\d% of its tokens are \[UNK\], words the "
                                         r"tokenizer's vocabulary lacks") as said:
        train(load_recipe(recipe))
    assert not [w for w in said if "tasks.sentiment" in str(w.message)]  # lower-case text: known words
    facts = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["tasks"]
    assert facts["ner"]["train"]["unknown_tokens"] > 0.05 > facts["sentiment"]["train"]["unknown_tokens"]


def test_unloadable_encoder_is_a_user_error(make_recipe, tmp_path):
    recipe = make_recipe(model={"encoder": str(tmp_path / "no-such-encoder")})
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe)], capture_output=True, text=True,
                          timeout=300)
    said = proc.stderr.strip()
    assert proc.returncode == 2 and said.endswith(f"model.encoder: {tmp_path / 'no-such-encoder'}: folder not found"), said
    (tmp_path / "empty").mkdir()  # a folder there is, but no model in it
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe), f"model.encoder={tmp_path / 'empty'}"],
                          capture_output=True, text=True, timeout=300)
    said = proc.stderr.strip()
    assert proc.returncode == 2 and said.endswith("empty: not a model folder (no config.json)"), said
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "bert"}')  # one that still fails to load
    (tmp_path / "empty" / "tokenizer.json").write_text("{}")
    (tmp_path / "empty" / "pytorch_model.bin").write_bytes(b"")  # (the tokenizer is loaded first)
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe), f"model.encoder={tmp_path / 'empty'}"],
                          capture_output=True, text=True, timeout=300)
    said = proc.stderr.strip()
    assert proc.returncode == 2 and "model.encoder: cannot load" in said and "Traceback" not in said, said


def test_a_task_named_as_an_attribute_of_torchs_module_dicts_is_refused(make_recipe):
    from conftest import tiny_tasks

    # by load_recipe, before any data is read (it was refused after tokenising, 6 s late); and by training, for a
    # name the list does not hold (an underscored one)
    recipe = make_recipe(tasks={"train": tiny_tasks()["ner"]})
    with pytest.raises(UserError, match=r"recipe.yaml:\d+: tasks.train: a name torch's module dicts have for their "
                                        r"own \(`.train`\): rename the task$"):
        load_recipe(recipe)
    recipe = make_recipe(tasks={"_modules": tiny_tasks()["ner"]})
    with pytest.raises(UserError, match=r"recipe.yaml:\d+: tasks._modules: a name torch's module dicts have"):
        train(load_recipe(recipe))


def test_the_recipes_list_of_torchs_module_dict_names_is_torchs():
    """Every name the recipe refuses is torch's (another torch may add names: training refuses those)."""
    from mtnlp.recipe import TORCH_DICT_NAMES

    names = set(dir(torch.nn.ModuleDict())) | set(dir(torch.nn.ParameterDict()))
    assert TORCH_DICT_NAMES <= names and {"train", "items", "keys", "to", "cuda", "forward"} <= TORCH_DICT_NAMES


def test_data_table_truncation_notes_and_batch_counts(make_recipe, tmp_path, capsys, tiny_encoder):
    """The start-of-training data facts, the once-per-split truncation note and the per-task counts."""
    from collections import Counter

    from conftest import DATA
    from transformers import AutoTokenizer

    from conftest import read_examples

    max_length = 12
    tasks = {"ner": {"type": "tagging", "data": {"train": str(DATA / "ner_sample.conll"),
                                                 "validation": str(DATA / "ner_sample_dev.conll")}},
             "sentiment": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                              "text_column": "sentence"}}}
    recipe = make_recipe(tasks=tasks, model={"encoder": tiny_encoder, "max_length": max_length},
                         training={"steps": 6, "eval_every": 2, "log_every": 1, "batch_size": 8})
    spec = load_recipe(recipe).tasks
    train(load_recipe(recipe))
    out = capsys.readouterr().out
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["max_length"] == max_length

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    for split, file in (("train", "ner_sample.conll"), ("validation", "ner_sample_dev.conll")):
        examples = read_examples(DATA / file, spec["ner"].data, "tagging")
        tags = Counter(t for ex in examples for t in ex["tags"])
        over = sum(len(tokenizer(ex["tokens"], is_split_into_words=True)["input_ids"]) > max_length for ex in examples)
        facts = metrics["data"]["tasks"]["ner"][split]
        assert facts["examples"] == len(examples) and facts["labels"] == len(tags)
        assert facts["over_max_length"] == over > 0
        assert facts["largest"] == [tags.most_common()[0][0], pytest.approx(tags.most_common()[0][1] / tags.total())]
    lines = read_examples(DATA / "sst2_sample.jsonl", spec["sentiment"].data, "classification")
    facts = metrics["data"]["tasks"]["sentiment"]["train"]
    assert facts["examples"] == len(lines) and facts["labels"] == 2
    assert facts["over_max_length"] == sum(len(tokenizer(ex["text"])["input_ids"]) > max_length for ex in lines)

    header = next(line for line in out.splitlines() if line.startswith("task "))
    assert header.split() == ["task", "split", "examples", "labels", "largest", "smallest", ">", "12", "tokens"]
    assert f"ner        validation  {len(read_examples(DATA / 'ner_sample_dev.conll', spec['ner'].data, 'tagging')):>8}" in out
    # three validation runs, one note; no validation split for sentiment, so no note for it
    assert out.count("ner validation: ") == 1 and "examples are longer than max_length=12" in out
    assert "sentiment validation" not in out

    log = read_jsonl(run / "train_log.jsonl")
    for record in log:
        assert sum(record["batches"].values()) == record["step"]  # one batch per step, grad_accum 1
        for task, batches in record["batches"].items():
            assert batches <= record["examples"][task] <= 8 * batches
    trained = {n: {"batches": log[-1]["batches"][n], "examples": log[-1]["examples"][n]} for n in tasks}
    assert metrics["trained_on"] == trained
    assert all(c["batches"] > 0 for c in trained.values())


@pytest.mark.parametrize("head_lr", [None, 1e-3])
def test_head_lr_moves_the_heads_that_much_faster_than_the_encoder(tiny_encoder, head_lr):
    from mtnlp.modeling import MultiTaskModel
    from mtnlp.recipe import TrainingSpec
    from mtnlp.train import make_optimizer

    model = MultiTaskModel.from_encoder(tiny_encoder, {"topic": {"type": "classification", "labels": ["a", "b", "c"]}})
    optimizer, scheduler = make_optimizer(model, TrainingSpec(lr=1e-5, head_lr=head_lr, warmup=0.0, steps=10))
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter once
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**{"input_ids": torch.tensor([[101, 2023, 102]]), "labels": torch.tensor([2])}, task="topic").loss.backward()
    optimizer.step()
    # Adam's first update moves every weight with a gradient by about its group's learning rate
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    head, encoder = moved["heads.topic.classifier.weight"], moved["encoder.encoder.layer.0.attention.self.query.weight"]
    assert encoder == pytest.approx(1e-5, rel=0.05)
    assert head == pytest.approx(head_lr or 1e-5, rel=0.05)


def test_seqeval_on_tags_without_entity_prefixes_names_the_recipe_line(make_recipe):
    from conftest import DATA

    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    tasks = {"pos": {"type": "tagging", "metrics": ["seqeval"],
                     "data": {"train": str(DATA / "ud_sample.conllu"), "validation_from_train": 0.25}}}
    recipe = make_recipe(tasks=tasks)
    with pytest.raises(UserError, match=rf"^{recipe}:\d+: tasks.pos.metrics: seqeval scores entities, but the tags "
                                        r"\(ADJ, .*\) have no B-/I- prefixes: use token_accuracy$"):
        train(load_recipe(recipe))


def test_the_log_gives_the_learning_rates_each_update_used(make_recipe, tmp_path):
    from mtnlp.train import log_step, setup, train_step

    run = setup(load_recipe(make_recipe(training={"steps": 4, "warmup": 0.5, "lr": 1e-3, "head_lr": 1e-2,
                                                  "log_every": 1})))
    used, norms = [], []
    run.optimizer.step = lambda *a, _step=run.optimizer.step, **k: (  # the norm of the gradients the update reads
        norms.append(float(torch.cat([p.grad.flatten() for p in run.model.parameters() if p.grad is not None]).norm())),
        _step(*a, **k))[1]
    for _ in range(4):
        used.append((run.optimizer.param_groups[0]["lr"], run.optimizer.param_groups[2]["lr"]))
        log_step(run, train_step(run))
    records = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    logged = [(r["lr"], r["head_lr"]) for r in records]
    assert [x for pair in logged for x in pair] == pytest.approx([x for pair in used for x in pair])
    # the norm before clipping to max_grad_norm (1.0): the update reads gradients of norm min(it, 1)
    assert [min(r["grad_norm"], 1.0) for r in records] == pytest.approx(norms, rel=1e-4)
    assert used[0] == (0.0, 0.0) and max(used) == pytest.approx((1e-3, 1e-2))  # warm-up from 0, then the peak


def test_evaluation_lines_start_on_a_line_of_their_own_under_the_progress_bar(make_recipe, tiny_encoder):
    """Where stdout and stderr are one terminal, a line printed while the bar is drawn (a step's metrics, a
    truncation note) was glued to the bar's end."""
    import contextlib
    import io
    import re

    from mtnlp.cli import close_progress_bars

    close_progress_bars()  # a bar another test's run left open would have this one drawn below it, as a nested bar
    terminal = io.StringIO()
    recipe = make_recipe(training={"steps": 4, "eval_every": 2}, model={"encoder": tiny_encoder, "max_length": 8})
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        train(load_recipe(recipe))
    shown = terminal.getvalue()
    lines = r"(step \d+: |sentiment validation: \d+ of \d+ examples are longer than max_length=8)"
    assert len(re.findall(lines, shown)) >= 3, shown
    assert not re.search(r"[^\n\r ]" + lines, shown), shown  # each after a new line or the bar's cleared line
    assert "of a pair" not in shown  # no task here reads pairs


def test_a_run_that_fails_mid_training_leaves_no_progress_bar_open(make_recipe, monkeypatch):
    import mtnlp.recipes.multitask
    from tqdm import tqdm

    def failing(run, task):
        raise RuntimeError("a step that fails")

    monkeypatch.setattr(mtnlp.recipes.multitask, "log_step", failing)
    before = set(tqdm._instances)
    with pytest.raises(RuntimeError, match="a step that fails") as failure:
        train(load_recipe(make_recipe(training={"steps": 3})))
    # the traceback holds the run, as a notebook or IPython keeps the last one: its bar is closed all the same
    assert failure.traceback and set(tqdm._instances) <= before


def test_a_log_record_holding_an_infinite_or_nan_value_stays_strict_json(tmp_path):
    """An fp16 step that overflowed has an inf gradient norm; json.dumps would write Infinity, which
    strict JSON readers (jq, JavaScript) refuse."""
    from mtnlp.report import append

    log = tmp_path / "train_log.jsonl"
    append(log, {"step": 1, "grad_norm": float("inf"), "loss": {"a": float("nan"), "b": 0.5}, "w": [float("-inf")]})
    record = json.loads(log.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the log"))
    assert record == {"step": 1, "grad_norm": None, "loss": {"a": None, "b": 0.5}, "w": [None]}


def test_a_second_signal_after_a_ctrl_c_stops_at_once():
    """A launcher passes a first Ctrl-C on as SIGINT and a second as SIGTERM: that is "stop now" too. Two
    SIGTERMs (a scheduler repeating itself) stay one request to stop after the step."""
    import signal
    from types import SimpleNamespace

    from mtnlp.train import stop_after_step_on_signal

    def stopper():
        stop = stop_after_step_on_signal.__new__(stop_after_step_on_signal)
        stop.run, stop.signum = SimpleNamespace(accelerator=SimpleNamespace(is_main_process=False, num_processes=2)), 0
        return stop

    for first, second in ((signal.SIGINT, signal.SIGTERM), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)):
        stop = stopper()
        stop._handle(first, None)
        with pytest.raises(KeyboardInterrupt):
            stop._handle(second, None)
    stop = stopper()
    stop._handle(signal.SIGTERM, None)
    stop._handle(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM


def test_training_from_python_checks_the_run_paths_too(make_recipe, tmp_path):
    """mtnlp train checks them before reading the data; train(load_recipe(...)) must not lose them."""
    (tmp_path / "f").write_text("")
    recipe = make_recipe(output_dir=str(tmp_path / "f" / "run"))
    with pytest.raises(UserError, match=rf"output_dir: {tmp_path / 'f'} is a file, not a folder$"):
        train(load_recipe(recipe))


@pytest.mark.parametrize("resume_from", ["latest", "run/checkpoints/step-000002"])
def test_overwriting_the_run_a_resume_continues_is_refused(make_recipe, tmp_path, resume_from):
    recipe = make_recipe(training={"steps": 2, "save_every": 2})
    train(load_recipe(recipe))
    resume = resume_from if resume_from == "latest" else str(tmp_path / resume_from)
    with pytest.raises(UserError, match=rf"^{recipe} \(command-line override\): overwrite_output_dir: true replaces the "
                                        rf"run that training.resume_from \({resume}\) continues: give one of the two$"):
        train(load_recipe(recipe, ["overwrite_output_dir=true", f"training.resume_from={resume}"]))
    # another run's checkpoint into a used folder, replaced: what overwrite is for
    other = make_recipe(training={"steps": 2}, name="other.yaml", output_dir=str(tmp_path / "other"))
    train(load_recipe(other))
    train(load_recipe(other, ["overwrite_output_dir=true", f"training.resume_from={tmp_path}/run/checkpoints/step-000002"]))


def test_curves_give_a_task_one_colour_in_both_panels_and_name_its_main_metric(tmp_path):
    from mtnlp.report import curves_figure

    # task a has no training loss logged yet, task c no validation: colours must not shift
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": {"b": 1.0}}\n{"step": 2, "loss": {"b": 0.9, "c": 0.5}}\n')
    (tmp_path / "history.jsonl").write_text('{"step": 2, "main": {"a": 0.5, "b": 0.6}}\n')
    left, right = curves_figure(tmp_path, {"a": "accuracy", "b": "pearsonr", "c": "f1"}).axes
    loss = {line.get_label(): line.get_color() for line in left.get_lines()}
    validation = {line.get_label(): line.get_color() for line in right.get_lines()}
    assert list(validation) == ["a (accuracy)", "b (pearsonr)"] and list(loss) == ["b", "c"]
    assert validation["b (pearsonr)"] == loss["b"] and len({*loss.values(), *validation.values()}) == 3
    assert all(float(tick).is_integer() for tick in right.get_xticks())  # steps, not 1.6, 1.8, ...


def test_curves_mark_the_kept_models_step(tmp_path):
    """With early stopping the kept model is often evaluations before the plot's end: nothing showed which it was."""
    from mtnlp.report import curves_figure

    (tmp_path / "train_log.jsonl").write_text("".join(f'{{"step": {s}, "loss": {{"a": 1.0}}}}\n' for s in range(1, 7)))
    (tmp_path / "history.jsonl").write_text('{"step": 2, "main": {"a": 0.5}, "best": true}\n'
                                            '{"step": 4, "main": {"a": 0.6}, "best": true}\n'
                                            '{"step": 6, "main": {"a": 0.6}, "best": false}\n')
    right = curves_figure(tmp_path, {"a": "accuracy"}).axes[1]
    assert [line.get_xdata()[0] for line in right.get_lines() if line.get_linestyle() == ":"] == [4]
    assert [text.get_text().strip() for text in right.texts] == ["kept (step 4)"]
    (tmp_path / "history.jsonl").write_text('{"step": 2, "main": {"a": null}, "best": false}\n')  # none kept by a score
    assert not curves_figure(tmp_path, {"a": "accuracy"}).axes[1].texts
    # lines written by hand (or carried from another run's log) without "main" / "loss" are drawn around
    (tmp_path / "train_log.jsonl").write_text('{"step": 1}\n{"step": 2, "loss": {"a": 0.5}}\n{"step": 3, "loss": null}\n')
    (tmp_path / "history.jsonl").write_text('{"step": 2, "score": 0.1, "best": true}\n{"step": 4, "main": {"a": 0.7}}\n'
                                            '{"step": 5, "main": null}\n')
    left, right = curves_figure(tmp_path, {"a": "accuracy"}).axes
    assert [list(line.get_xdata()) for line in left.get_lines()] == [[2]]
    assert [list(line.get_xdata()) for line in right.get_lines() if line.get_linestyle() != ":"] == [[4]]


def test_the_runs_recipe_writes_a_non_ascii_task_name_as_it_is(make_recipe, tmp_path):
    """recipe.yaml gave "\\u98CE\\u683C" for the task 风格: the same when read back, but not readable by eye."""
    train(load_recipe(make_recipe(tasks={"风格": tiny_tasks()["sentiment"]}, training={"steps": 1})))
    written = (tmp_path / "run" / "recipe.yaml").read_text(encoding="utf-8")
    assert "\n  风格:\n" in written and "\\u" not in written
    assert list(load_recipe(tmp_path / "run" / "recipe.yaml").tasks) == ["风格"]


def test_curves_draw_task_names_in_an_installed_font_for_their_script(tmp_path, monkeypatch):
    """A CJK task name was drawn as boxes on a machine with a CJK font: matplotlib looked in DejaVu Sans only."""
    import dataclasses

    from matplotlib import font_manager, pyplot, rcParams

    from mtnlp import report

    entries = font_manager.fontManager.ttflist
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [
        *[e for e in entries if e.name not in report.SCRIPT_FONTS],
        dataclasses.replace(entries[0], name="Microsoft YaHei"), dataclasses.replace(entries[0], name="Noto Sans CJK JP")])
    monkeypatch.setitem(rcParams, "font.family", ["sans-serif"])  # matplotlib's default: its font.sans-serif list
    assert report.fonts() == ["sans-serif", "Noto Sans CJK JP", "Microsoft YaHei"]  # SCRIPT_FONTS' order
    drawn_with = []
    monkeypatch.setattr(report, "curves_figure", lambda *_: drawn_with.append(list(rcParams["font.family"])) or pyplot.figure())
    report.plot_curves(tmp_path, {"风格": "accuracy"})
    assert drawn_with == [["sans-serif", "Noto Sans CJK JP", "Microsoft YaHei"]] and rcParams["font.family"] == ["sans-serif"]
    # a font family of the user's own (matplotlibrc: SimHei, say) stays first, whichever fonts are installed
    monkeypatch.setitem(rcParams, "font.family", ["SimHei", "Microsoft YaHei"])
    assert report.fonts() == ["SimHei", "Microsoft YaHei", "Noto Sans CJK JP"]


def test_curves_of_many_tasks_give_each_its_own_line_and_one_legend_below_the_panels(tmp_path, recwarn):
    """13 tasks shared matplotlib's 10 colours (3 pairs alike), and each panel's legend of 13 covered its lines; a
    CJK task name printed a warning per missing glyph."""
    import matplotlib

    matplotlib.use("Agg")
    from mtnlp.report import curves_figure, plot_curves

    def written(tasks, metric="accuracy"):
        (tmp_path / "train_log.jsonl").write_text(json.dumps({"step": 1, "loss": dict.fromkeys(tasks, 0.5)}) + "\n")
        (tmp_path / "history.jsonl").write_text(json.dumps({"step": 1, "main": dict.fromkeys(tasks, 0.5)}) + "\n")
        return dict.fromkeys(tasks, metric)

    def look(line):
        return matplotlib.colors.to_rgba(line.get_color()), line.get_linestyle()

    tasks = [f"task{i}" for i in range(11)] + ["风格", "n" * 100]
    figure = curves_figure(tmp_path, written(tasks))
    left, right = figure.axes
    assert len(set(map(look, left.get_lines()))) == 13 and list(map(look, left.get_lines())) == list(map(look, right.get_lines()))
    assert [look(line)[1] for line in left.get_lines()] == ["-"] * 10 + ["--"] * 3  # the 10 colours again, dashed
    assert all(line.get_marker() == "o" for line in left.get_lines())  # one point each: drawn as a dot
    assert left.get_legend() is None and right.get_legend() is None
    names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert names[:2] == ["task0 (accuracy)", "task1 (accuracy)"] and len(names) == 13
    assert names[-1] == "n" * 19 + "…" + "n" * 20 + " (accuracy)"
    plot_curves(tmp_path, written(tasks))
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert not [w for w in recwarn if "Glyph" in str(w.message) or "layout" in str(w.message)]
    assert [matplotlib.colors.to_rgba(h.get_color()) for h in figure.legends[0].legend_handles] == \
        [matplotlib.colors.to_rgba(line.get_color()) for line in left.get_lines()]  # the legend's samples are the lines'
    assert [h.get_linestyle() for h in figure.legends[0].legend_handles] == [line.get_linestyle() for line in left.get_lines()]
    assert figure.get_size_inches()[1] == pytest.approx(4 + 0.25 * -(-13 // 2))  # a legend row per 2 (the longest name)
    # 6 tasks keep their legends inside; a 40-character name is whole; 45 tasks repeat no look before the 41st
    figure = curves_figure(tmp_path, written([f"t{i}" for i in range(5)] + ["n" * 40]))
    assert figure.axes[0].get_legend() is not None and not figure.legends
    assert figure.axes[1].get_legend().get_texts()[-1].get_text() == "n" * 40 + " (accuracy)"
    figure = curves_figure(tmp_path, written([f"t{i}" for i in range(45)]))
    assert len(set(map(look, figure.axes[0].get_lines()[:40]))) == 40
    # long names that differ at their end stay apart, and the legend stays on the image
    tasks = [f"customer_support_ticket_classification_v{i}_2024" for i in range(9)]
    figure = curves_figure(tmp_path, written(tasks, "squad_exact_match"))
    names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert len(set(names)) == 9 and names[0] == "customer_support_ti…assification_v0_2024 (squad_exact_match)"
    figure.canvas.draw()
    legend = figure.legends[0].get_window_extent()
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width


def test_a_kept_head_trained_on_the_other_input_form_is_said():
    """A head trained on text pairs fits a task of single texts (same type and labels) and is kept: the transfer
    says so, since it then reads inputs unlike any it learned from."""
    from types import SimpleNamespace

    from mtnlp.transfer import transfer_report

    def model(**tasks):
        return SimpleNamespace(config=SimpleNamespace(tasks=tasks))

    pairs = {"type": "classification", "labels": ["a", "b"], "text_pair": True}
    source = model(news=pairs, topic=pairs)
    target = model(news={**pairs, "text_pair": False}, topic=pairs)
    assert transfer_report(source, target, keep_heads=True) == {
        "news": "kept (trained on text pairs, now single texts)", "topic": "kept"}
    assert transfer_report(source, target, keep_heads=False)["news"] == "new (model.init_heads: false)"
    old = model(news={"type": "classification", "labels": ["a", "b"]})  # saved before models recorded their input form
    assert transfer_report(old, target, keep_heads=True)["news"] == "kept"
    # label_weights come from the new recipe (recomputed, or none): said, as the head learnt with the source's
    weighted = model(news={**pairs, "label_weights": [1.0, 3.0]})
    assert transfer_report(weighted, model(news=pairs), keep_heads=True)["news"] == \
        "kept (its label_weights dropped: the recipe gives none)"
    assert transfer_report(weighted, model(news={**pairs, "label_weights": [1.0, 2.0]}), keep_heads=True)["news"] == \
        "kept (label_weights: this recipe's, not the source's)"
    assert transfer_report(weighted, weighted, keep_heads=True)["news"] == "kept"


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("steps, warmup", [(10, 0.0), (10, 0.3), (1, 0.5), (7, 0.99)])
def test_learning_rate_schedules_are_transformers(tiny_encoder, schedule, steps, warmup):
    """The same factors as transformers' get_*_schedule_with_warmup, over a whole run."""
    from transformers import optimization

    from mtnlp.modeling import MultiTaskModel
    from mtnlp.recipe import TrainingSpec
    from mtnlp.train import make_optimizer

    model = MultiTaskModel.from_encoder(tiny_encoder, {"topic": {"type": "classification", "labels": ["a", "b"]}})
    optimizer, scheduler = make_optimizer(model, TrainingSpec(lr=1e-3, steps=steps, warmup=warmup, lr_schedule=schedule))
    reference_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    warmup_steps = min(math.ceil(warmup * steps), steps - 1)
    make = getattr(optimization, f"get_{schedule}_schedule_with_warmup")
    reference = make(reference_optimizer, warmup_steps, **({} if schedule == "constant" else {"num_training_steps": steps}))
    ours, theirs = [], []
    for _ in range(steps):
        ours.append(scheduler.get_last_lr()[0])
        theirs.append(reference.get_last_lr()[0])
        optimizer.step(), reference_optimizer.step()
        scheduler.step(), reference.step()
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours[-1] > 0  # the last update learns something
    if schedule != "constant" and warmup_steps < steps - 1:  # decays after the peak
        assert ours[-1] < max(ours)


def test_a_reader_that_goes_away_does_not_end_the_training_run(make_recipe, tmp_path):
    """`mtnlp train ... | head -1` ended the run at its next evaluation line: status 141, no model, no checkpoint."""
    recipe = make_recipe(training={"steps": 6, "eval_every": 2})
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "train", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    _, err = proc.communicate(timeout=300)
    assert first.startswith("precision: ") and proc.returncode == 0, err
    assert "warning: standard output was closed by its reader: training goes on, printing nothing more there" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_step"] > 0
    # `2>&1 | head -1`: the progress bar and the warnings meet the closed pipe too
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "train", str(recipe), "overwrite_output_dir=true",
                             "output_dir=both"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0 and first.startswith("precision: ")
    assert json.loads((tmp_path / "both" / "metrics.json").read_text())["best_step"] > 0
    # `2>&- | head -1`: Python starts with sys.stderr None
    import os

    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "train", str(recipe), "overwrite_output_dir=true",
                             "output_dir=closed"], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=lambda: os.close(2))
    first = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0 and first.startswith("precision: ")
    assert json.loads((tmp_path / "closed" / "metrics.json").read_text())["best_step"] > 0


@pytest.mark.parametrize("eval_every, steps, evaluated", [
    (None, 7, [7]),  # the default: only at the end, so a run still selects (and reports) its model
    (3, 7, [3, 6, 7]),  # the last step too where eval_every does not divide the steps
    (2, 6, [2, 4, 6]),
])
def test_the_loop_evaluates_every_eval_every_steps_and_at_the_last(eval_every, steps, evaluated):
    from types import SimpleNamespace

    from mtnlp.train import is_eval_step, is_log_step

    run = SimpleNamespace(recipe=SimpleNamespace(training=SimpleNamespace(eval_every=eval_every, steps=steps,
                                                                          log_every=5)),
                          progress=SimpleNamespace(step=0))
    seen = {"eval": [], "log": []}
    for run.progress.step in range(1, steps + 1):
        seen["eval"] += [run.progress.step] * is_eval_step(run)
        seen["log"] += [run.progress.step] * is_log_step(run)
    assert seen == {"eval": evaluated, "log": sorted({5, steps} & set(range(1, steps + 1)))}
