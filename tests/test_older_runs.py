"""Run folders and models written by an older mtnlp, used by this one: what they lack is read as the mtnlp
that wrote them meant it (each test takes out of a folder what an older version did not write)."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import tiny_tasks

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.errors import UserError
from mtnlp.folders import STATE_FILE
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.report import read_jsonl


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def forget_model_step(run):  # an mtnlp before 12-03 did not record which step model/ holds
    edit_json(run / "model" / "config.json", lambda config: config["mtnlp"].pop("step"))


STILL = ["training.lr=1e-12", "training.head_lr=1e-12"]  # no score changes: no later evaluation is better


def test_a_model_without_its_step_is_replaced_by_the_best_steps_checkpoint(make_recipe, tmp_path):
    """Resumed at step 2 (its best then), nothing later better: model/ (step 6's, not saying so) is not
    taken for step 2's; step 2's checkpoint is restored."""
    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 6, "save_every": 2, "eval_every": 2, "keep_checkpoints": 5})
    train(load_recipe(recipe))
    forget_model_step(run)
    result = train(load_recipe(recipe, [f"training.resume_from={run}/checkpoints/step-000002", *STILL]))
    assert result.metrics["best_step"] == 2
    kept = MultiTaskModel.from_pretrained(run / "model")
    assert kept.config.mtnlp["step"] == 2
    assert all(torch.equal(kept.state_dict()[k], v)
               for k, v in load_file(run / "checkpoints" / "step-000002" / "model.safetensors").items())


def test_a_model_without_its_step_and_no_checkpoint_of_the_best_step_is_kept_as_the_best(make_recipe, tmp_path,
                                                                                           recwarn):
    """As the older mtnlp meant it: its model/ was its best step's."""
    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 4, "save_every": 2, "eval_every": 2, "keep_checkpoints": 5, "lr": 1e-12,
                                   "head_lr": 1e-12})
    train(load_recipe(recipe))
    assert [h["best"] for h in read_jsonl(run / "history.jsonl")] == [True, False]
    forget_model_step(run)
    before = load_file(run / "model" / "model.safetensors")
    shutil.rmtree(run / "checkpoints" / "step-000002")  # the best step's checkpoint is gone
    result = train(load_recipe(recipe, ["training.resume_from=latest", "training.steps=6"]))
    assert result.metrics["best_step"] == 2 and not [w for w in recwarn if "keeping the final model" in str(w.message)]
    after = load_file(run / "model" / "model.safetensors")
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_an_older_checkpoint_without_its_runs_steps_is_no_early_stop(make_recipe, tmp_path, capsys):
    """A run that ended at its own last step with its patience run out trains on with more steps, though its
    checkpoint (before 12-04) says neither its steps nor whether it stopped early: its recipe.yaml says them."""
    run = tmp_path / "run"
    training = {"steps": 3, "eval_every": 1, "save_every": 3, "lr": 1e-12, "head_lr": 1e-12, "warmup": 0.0,
                "early_stopping_patience": 2, "log_every": 1}
    recipe = make_recipe(training=training)
    train(load_recipe(recipe))
    edit_json(run / "checkpoints" / "step-000003" / STATE_FILE,
              lambda state: [state.pop(key) for key in ("steps", "ended_early")])
    capsys.readouterr()
    result = train(load_recipe(recipe, ["training.resume_from=latest", "training.steps=6"]))
    out = capsys.readouterr().out
    assert "had stopped early" not in out and "early stopping at step 4: no improvement in 3 evaluations" in out, out
    assert "training.steps: 6 (the checkpoint's run: 3)" in out
    assert result.metrics["steps"] == {"trained": 4, "planned": 6}


def test_an_older_checkpoint_that_stopped_early_still_has(make_recipe, tmp_path, capsys):
    """Its run's recipe said more steps than it reached: it stopped early, and stays stopped by the same patience."""
    run = tmp_path / "run"
    training = {"steps": 6, "eval_every": 1, "save_every": 6, "lr": 1e-12, "head_lr": 1e-12, "warmup": 0.0,
                "early_stopping_patience": 1, "log_every": 1}
    recipe = make_recipe(training=training)
    assert train(load_recipe(recipe)).metrics["steps"]["trained"] == 2
    edit_json(run / "checkpoints" / "step-000002" / STATE_FILE,
              lambda state: [state.pop(key) for key in ("steps", "ended_early")])
    capsys.readouterr()
    train(load_recipe(recipe, ["training.resume_from=latest", "training.steps=8"]))
    assert "the run had stopped early (no improvement in 1 evaluation): nothing to train" in capsys.readouterr().out


@pytest.mark.parametrize("mtl, learned", [({}, 0), ({"weighting": "uncertainty"}, 1)])
def test_a_checkpoint_from_before_head_lr_is_refused_as_such(make_recipe, tmp_path, mtl, learned):
    """Its optimizer had 2 groups (decay, no decay; a third for learned loss weights, which uncertainty weighting
    then kept in one (K,) parameter), not 4 (the encoder's and the heads' apart): the error says so, not that
    the recipe differs from the run's."""
    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 2, "save_every": 2}, mtl=mtl)
    train(load_recipe(recipe))
    path = run / "checkpoints" / "step-000002" / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    groups = state["param_groups"]
    assert len(groups) == 4 + learned
    state["param_groups"] = [{**groups[0], "params": groups[0]["params"] + groups[2]["params"]},
                             {**groups[1], "params": groups[1]["params"] + groups[3]["params"]},
                             *[{**group, "params": group["params"][:1]} for group in groups[4:]]]
    torch.save(state, path)
    with pytest.raises(UserError) as error:
        train(load_recipe(recipe, ["training.resume_from=latest", "training.steps=4"]))
    assert str(error.value) == (
        f"{run / 'checkpoints' / 'step-000002'}: written by an mtnlp before training.head_lr, whose optimizer held its "
        f"parameters in {2 + learned} groups, not {4 + learned}: resume it with that mtnlp, or start a new run from "
        f"its model (model.init_from={run / 'model'})")


def test_settings_added_since_a_runs_recipe_was_written_are_no_change_at_their_defaults(make_recipe, tmp_path,
                                                                                        capsys):
    run = tmp_path / "run"
    recipe = make_recipe(training={"steps": 4, "save_every": 2, "keep_checkpoints": 5})
    train(load_recipe(recipe))
    text = (run / "recipe.yaml").read_text()
    written = yaml.safe_load(text)
    del written["training"]["lr_schedule"], written["training"]["gradient_checkpointing"], written["mtl"]["cagrad_c"]
    older = text.splitlines(keepends=True)[0] + yaml.safe_dump(written, sort_keys=False)  # (the precision line kept)
    (run / "recipe.yaml").write_text(older)
    capsys.readouterr()
    train(load_recipe(recipe, [f"training.resume_from={run}/checkpoints/step-000002"]))
    assert "other settings" not in capsys.readouterr().out and not list(run.glob("recipe.before-step-*"))
    (run / "recipe.yaml").write_text(older)
    train(load_recipe(recipe, [f"training.resume_from={run}/checkpoints/step-000002", "training.lr_schedule=cosine"]))
    assert "other settings than those that trained up to step 2: training.lr_schedule: linear -> cosine\n" \
        in capsys.readouterr().out


def test_a_tagging_head_saved_without_its_input_form_reads_single_texts(tiny_encoder, tmp_path):
    """Tagging heads were only ever trained on single texts: one saved before 12-04 gives a pair no tags."""
    tasks = {"pos": {"type": "tagging", "labels": ["A", "B"]},
             "nli": {"type": "classification", "labels": ["no", "yes"]}}
    model = MultiTaskModel.from_encoder(tiny_encoder, tasks)
    for spec in model.config.tasks.values():
        spec.pop("text_pair", None)
    model.save_pretrained(tmp_path / "old")
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(tmp_path / "old")
    pipe = MultiTaskPipeline.from_pretrained(tmp_path / "old", precision="fp32")
    assert "text_pair" not in pipe.model.config.tasks["pos"]
    assert set(pipe({"text": "a b", "text_pair": "c"})) == {"nli"}  # a text head saved so answers both forms
    assert set(pipe("a b")) == {"pos", "nli"}
    with pytest.raises(ValueError, match="pos"):
        pipe({"text": "a b", "text_pair": "c"}, tasks=["pos"])



def test_a_checkpoint_from_before_head_lr_of_other_tasks_is_said_to_be_of_other_tasks(make_recipe, tmp_path):
    run = tmp_path / "run"
    train(load_recipe(make_recipe(training={"steps": 2, "save_every": 2})))
    path = run / "checkpoints" / "step-000002" / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    groups = state["param_groups"]
    state["param_groups"] = [{**groups[0], "params": groups[0]["params"] + groups[2]["params"]},
                             {**groups[1], "params": groups[1]["params"] + groups[3]["params"]}]
    torch.save(state, path)
    with pytest.raises(UserError, match="written by a run with other tasks or methods"):
        fewer = {name: task for name, task in tiny_tasks().items() if name != "ner"}  # the heads differ
        train(load_recipe(make_recipe(tasks=fewer, training={"steps": 4}), ["training.resume_from=latest"]))


def test_a_checkpoint_with_one_log_variance_vector_resumes_as_one_written_now(make_recipe, tmp_path):
    """Uncertainty weighting once kept its K log-variances in one (K,) parameter: resuming such a checkpoint
    (its last optimizer group one parameter, its state stacked) ends with the weights of resuming the same
    checkpoint written now."""
    recipe = make_recipe(training={"steps": 3, "save_every": 3}, mtl={"weighting": "uncertainty"},
                         sampling={"strategy": "round_robin"})  # every task's log-variance has optimizer state
    train(load_recipe(recipe))
    run = tmp_path / "run"
    older = tmp_path / "older"
    shutil.copytree(run / "checkpoints" / "step-000003", older)
    path = older / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    last = state["param_groups"][-1]
    assert len(last["params"]) >= 2
    first = last["params"][0]
    scalars = [state["state"][i] for i in last["params"]]
    state["state"] = {k: v for k, v in state["state"].items() if k not in last["params"]}
    state["state"][first] = {key: torch.stack([s[key] for s in scalars]) if scalars[0][key].ndim == 0 and key != "step"
                             else scalars[0][key] for key in scalars[0]}
    state["param_groups"][-1] = {**last, "params": [first]}
    torch.save(state, path)

    def resumed(checkpoint):
        out = tmp_path / f"from-{checkpoint.name}"
        train(load_recipe(recipe, [f"training.resume_from={checkpoint}", "training.steps=6",
                                   f"output_dir={out}"]))
        return load_file(str(out / "model" / "model.safetensors")), read_jsonl(out / "train_log.jsonl")[-1]

    now, older_run = resumed(run / "checkpoints" / "step-000003"), resumed(older)
    assert now[0].keys() == older_run[0].keys()
    assert all(torch.equal(now[0][k], older_run[0][k]) for k in now[0])
    assert now[1] == older_run[1]
