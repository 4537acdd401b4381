"""The training components on their own (mtnlp/train.py, mtnlp/gradients.py) and the recipe scripts
that put them together (recipes/multitask.py, `mtnlp recipes`)."""

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from mtnlp.cli import main
from mtnlp.recipe import load_recipe, resolve_path
from mtnlp.train import checkpoint, evaluate_and_select, setup, train_step

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in both processes: same float sums


def heads_snapshot(run):
    return {task: {k: v.detach().clone() for k, v in head.state_dict().items()}
            for task, head in run.unwrapped.heads.items()}


def changed(before, after) -> set[str]:
    return {task for task in before if any(not torch.equal(before[task][k], after[task][k]) for k in before[task])}


def test_train_step_updates_the_sampled_tasks_head_only(make_recipe):
    run = setup(load_recipe(make_recipe(training={"steps": 4, "warmup": 0.0})))
    before = heads_snapshot(run)
    task = train_step(run)
    assert run.progress.step == 1
    assert changed(before, heads_snapshot(run)) == {task}
    assert run.positions["seen"][task]["batches"] == 1
    assert sum(c["batches"] for c in run.positions["seen"].values()) == 1


def test_pcgrad_step_takes_a_batch_of_every_task(make_recipe):
    run = setup(load_recipe(make_recipe(training={"steps": 4, "grad_accum": 2, "warmup": 0.0}, mtl={"gradient": "pcgrad"})))
    before = heads_snapshot(run)
    assert train_step(run) == "all"
    assert {n: c["batches"] for n, c in run.positions["seen"].items()} == {n: 2 for n in run.tasks}
    assert changed(before, heads_snapshot(run)) == set(run.tasks)
    record = run.gradient.log_record()
    assert 0.0 <= record["pcgrad_conflicts"] <= 1.0 and run.gradient.log_record() == {}  # a mean since the last log


def test_evaluate_and_select_keeps_the_best_and_stops_without_improvement(make_recipe, tmp_path):
    run = setup(load_recipe(make_recipe(training={"steps": 4, "early_stopping_patience": 1})))
    train_step(run)
    assert evaluate_and_select(run) is False
    assert run.progress.best_step == 1 and (tmp_path / "run" / "model" / "config.json").exists()
    assert set(run.progress.best_validation) == set(run.tasks)
    assert evaluate_and_select(run) is True  # the same model again: no improvement, patience 1
    assert run.progress.bad_evals == 1 and run.progress.best_step == 1
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["best"] for h in history] == [True, False]


def test_patience_counts_the_evaluations_since_the_last_improvement(make_recipe, monkeypatch):
    """Better, worse, better, worse never has 2 bad evaluations in a row: with an improvement not resetting the
    count, patience 2 stopped the run at the 4th evaluation."""
    import mtnlp.train as train_module

    run = setup(load_recipe(make_recipe(training={"steps": 8, "early_stopping_patience": 2})))
    scores = iter([0.5, 0.4, 0.6, 0.5])
    monkeypatch.setattr(train_module, "selection_score", lambda results, metrics: next(scores))
    train_step(run)
    assert [evaluate_and_select(run) for _ in range(4)] == [False] * 4 and run.progress.bad_evals == 1


def test_the_multiple_choice_loss_is_the_mean_cross_entropy_over_the_batch():
    """As transformers' *ForMultipleChoice computes it; a sum weighed the task by its batch size."""
    from torch.nn import functional as F

    from mtnlp.tasks import task_type

    torch.manual_seed(0)
    logits, labels = torch.randn(8, 4), torch.randint(0, 4, (8,))
    assert task_type("multiple_choice").loss(logits, labels, {}).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_checkpoint_then_setup_resumes_where_it_was(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 6})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    folder = checkpoint(run)
    assert folder.name == "step-000003"
    resumed = setup(load_recipe(recipe, [f"training.resume_from={folder}"]))
    assert resumed.progress.step == 3 and resumed.positions == run.positions
    weights, again = run.unwrapped.state_dict(), resumed.unwrapped.state_dict()
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    # both continue with the same batch of the same task
    assert train_step(run) == train_step(resumed)
    assert resumed.positions == run.positions


def run_script(script, recipe, *overrides):
    return subprocess.run([sys.executable, str(script), "--config", str(recipe), *overrides], capture_output=True,
                          text=True, timeout=600, env=ENV)


def test_recipe_script_and_mtnlp_train_give_the_same_model(make_recipe, tmp_path):
    recipe = make_recipe(training={"steps": 6, "eval_every": 3})
    by_cli = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe), f"output_dir={tmp_path / 'cli'}"],
                            capture_output=True, text=True, timeout=600, env=ENV)
    assert by_cli.returncode == 0, by_cli.stderr[-2000:]
    by_script = run_script(REPO / "recipes" / "multitask.py", recipe, f"output_dir={tmp_path / 'script'}")
    assert by_script.returncode == 0, by_script.stderr[-2000:]
    a = load_file(tmp_path / "cli" / "model" / "model.safetensors")
    b = load_file(tmp_path / "script" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert f"run directory: {tmp_path / 'script'}" in by_script.stdout


def test_a_copied_recipe_runs_with_its_own_loop(make_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes", "copy", "multitask", "my_recipe.py"]) == 0
    script = tmp_path / "my_recipe.py"
    assert script.read_text() == (REPO / "recipes" / "multitask.py").read_text()
    # the documented way to change a loop: edit the copy, e.g. record which task each step trained
    text = script.read_text().replace("            log_step(run, task)\n",
                                      "            log_step(run, task)\n            print('trained', task)\n")
    script.write_text(text)
    recipe = make_recipe(training={"steps": 3})
    done = run_script(script, recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len([line for line in done.stdout.splitlines() if line.startswith("trained ")]) == 3
    assert main(["recipes", "copy", "multitask", "my_recipe.py"]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    assert main(["recipes", "copy", "multitask", "mine"]) == 0  # into a folder, as cp does
    assert (tmp_path / "mine" / "multitask.py").read_text() == (REPO / "recipes" / "multitask.py").read_text()


def test_a_copied_config_reads_the_packaged_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes", "copy", "demo"]) == 0  # .yaml found without its suffix
    copied = load_recipe(tmp_path / "demo.yaml")
    packaged = Path(str(files("mtnlp.recipes")))  # the installed recipes/ (this tree's, or site-packages')
    assert resolve_path(copied, "sst2/train.tsv") == packaged / "data" / "sst2" / "train.tsv"
    assert copied.model_dump(exclude={"data_dir"}) == load_recipe(REPO / "recipes" / "demo.yaml").model_dump(exclude={"data_dir"})
    original = (REPO / "recipes" / "full.yaml").read_text().splitlines()
    assert main(["recipes", "copy", "full.yaml"]) == 0
    changed = [(a, b) for a, b in zip(original, (tmp_path / "full.yaml").read_text().splitlines()) if a != b]
    assert all(a.startswith("data_dir:") for a, _ in changed) and len(changed) <= 1  # only data_dir, made absolute


def test_recipe_script_reports_user_errors_in_one_line(make_recipe, tmp_path):
    done = run_script(REPO / "recipes" / "multitask.py", make_recipe(), "training.stepz=3")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error:") and "training.stepz" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_recipes_list_names_the_scripts_and_configs(capsys):
    assert main(["recipes", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert "multitask.py" in names and "demo.yaml" in names and "methods/pcgrad.yaml" in names
    # each a whole sentence, or cut after a word with "...": they were cut at a line break ("heads,", "(... ->")
    descriptions = {line.split()[0]: line[35:] for line in lines}
    assert all(len(d) <= 110 and (d.endswith("...") or d[-1].isalnum() or d[-1] in ')"') for d in descriptions.values()), lines
    assert descriptions["methods/cagrad.yaml"].startswith("CAGrad (Liu et al. 2021): each update")  # not cut at "al."
    assert descriptions["methods/dwa.yaml"] == "Dynamic weight average (Liu et al. 2019): a task whose loss falls slowly gets more weight"
    assert main(["recipes", "copy", "no_such_recipe"]) == 2


def test_every_library_package_is_installed_by_a_plain_pip_install():
    """pyproject lists packages explicitly (recipes/ is mapped to mtnlp.recipes): a subpackage missing from
    the list works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mtnlp").rglob("__init__.py")}
    assert on_disk <= listed, f"not in pyproject's packages: {sorted(on_disk - listed)}"
    # and recipes/' folders (configs, data): setuptools warns about each one left out, and may drop it one day
    recipes = {".".join(("mtnlp", *p.relative_to(REPO).parts)) for p in [REPO / "recipes", *(REPO / "recipes").rglob("*")]
               if p.is_dir() and p.name != "__pycache__"}
    assert recipes <= listed, f"not in pyproject's packages: {sorted(recipes - listed)}"


def test_checking_a_models_tasks_does_not_import_the_recipe_module():
    """mtnlp.recipe fixes the task types a recipe may name when it is imported (README: add a type before): a model
    loaded first must not import it."""
    code = ("import sys; from mtnlp.modeling import checked_tasks; checked_tasks({'a': {'type': 'multilabel', "
            "'labels': ['x'], 'threshold': 0.3}}); print('mtnlp.recipe' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_type_checkers_see_the_public_names():
    """py.typed ships in the wheel (package data), and each lazy public name is imported under TYPE_CHECKING,
    as what it is at run time: else mypy finds no mtnlp and IDEs see every name as Any."""
    import ast
    import tomllib

    import mtnlp

    assert (REPO / "mtnlp" / "py.typed").is_file()
    assert "py.typed" in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mtnlp"]
    tree = ast.parse((REPO / "mtnlp" / "__init__.py").read_text())
    checked = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    imported = {alias.name: node.module for node in checked.body for alias in node.names}
    assert imported == {name: module for name, module in mtnlp._LAZY.items()} and sorted(mtnlp.__all__) == sorted(imported)
    assert all(getattr(mtnlp, name).__module__ == f"mtnlp.{module}" for name, module in mtnlp._LAZY.items())
    from mtnlp.errors import UserError

    assert mtnlp.UserError is UserError  # what `except` catches of a user's mistake, from the package


def test_the_stop_request_is_agreed_once_per_step_under_several_processes(monkeypatch):
    """`stop.requested` is a collective at log and checkpoint steps under DDP; the recipe reads it twice in a
    step that stops, and a second collective that one rank skips would hang the others."""
    import types

    import mtnlp.train as T

    calls = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flag, op=None: calls.append(int(flag)))
    run = T.Run.__new__(T.Run)
    run.accelerator = types.SimpleNamespace(num_processes=2, device=torch.device("cpu"), is_main_process=True)
    run.recipe = types.SimpleNamespace(training=types.SimpleNamespace(log_every=2, steps=10, save_every=None))
    run.progress = T.Progress(step=3)
    stop = T.stop_after_step_on_signal(run)
    stop.signum = 15
    assert stop.requested == 0 and calls == []  # not a log step: the ranks agree at the next one
    run.progress = T.Progress(step=4)
    assert stop.requested == 15 and stop.requested == 15 and calls == [15]
    run.progress = T.Progress(step=6)
    assert stop.requested == 15 and calls == [15, 15]
