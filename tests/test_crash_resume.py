"""Crash safety: SIGKILL mid-run and Ctrl-C, then resume, end exactly where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import fake_checkpoint
from mtnlp.folders import find_checkpoint
from mtnlp.errors import UserError

TRAINING = {"steps": 150, "save_every": 10, "keep_checkpoints": 2, "eval_every": 50, "batch_size": 4,
            "log_every": 5, "mixed_precision": "no"}


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count everywhere: same float sums


def start(recipe, *overrides):
    return subprocess.Popen([sys.executable, "-m", "mtnlp", "train", str(recipe), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.fixture(scope="module")
def train_cli():
    """`mtnlp train RECIPE [key=value ...]` for the resumes: one session for them all (each start-up costs seconds)."""
    from cli_runner import CliSession

    with CliSession(ENV) as session:
        yield lambda recipe, *overrides: session("train", str(recipe), *overrides, timeout=600)


def wait_for_checkpoint(proc, checkpoints, minimum_step, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = [p for p in checkpoints.glob("step-*") if (p / "trainer_state.json").exists()]
        if any(int(p.name.split("-")[1]) >= minimum_step for p in done):
            return
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared in time")


def final_state(run):
    return load_file(run / "checkpoints" / "step-000150" / "model.safetensors"), \
        json.loads((run / "metrics.json").read_text()), \
        [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    weights_a, metrics_a, log_a = a
    weights_b, metrics_b, log_b = b
    # the losses since the last record are in the checkpoint: an interrupt between records loses none
    assert log_a == log_b
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    # weights bit-equal; metrics come from two processes' model instances: equal within float tolerance
    assert {k: v for k, v in metrics_a.items() if k != "tasks"} == {k: v for k, v in metrics_b.items() if k != "tasks"}
    assert metrics_a["tasks"].keys() == metrics_b["tasks"].keys()
    for task, splits in metrics_a["tasks"].items():
        for split, values in splits.items():
            assert values == pytest.approx(metrics_b["tasks"][task][split], rel=1e-6, abs=1e-9), (task, split)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_encoder):
    """The uninterrupted run every interrupted one must end equal to (trained once for the module), in a process of
    its own: not one whose hash seed (set and dict order of strings) the resumes share."""
    from conftest import write_recipe

    folder = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(folder, tiny_encoder, training=TRAINING)
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe)], capture_output=True, text=True,
                          timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return final_state(folder / "run")


@pytest.mark.slow
def test_sigkill_then_resume_latest_equals_uninterrupted(make_recipe, tmp_path, reference, train_cli):
    recipe = make_recipe(training=TRAINING)
    run = tmp_path / "run"
    proc = start(recipe)
    wait_for_checkpoint(proc, run / "checkpoints", 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(find_checkpoint(run, "latest").name.split("-")[1])
    assert 20 <= killed_at < 150
    with open(run / "train_log.jsonl", "a") as log:  # killed (or its disk full) while writing a record
        log.write('{"step": 999, "loss": {"sentiment": 0.')
    resumed = train_cli(recipe, "training.resume_from=latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "train_log.jsonl:" in resumed.stderr and "a line cut short, left out" in resumed.stderr
    assert f"resumed from {run / 'checkpoints'}" in resumed.stdout + resumed.stderr
    assert_same_run(final_state(run), reference)
    history = [json.loads(line)["step"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert history == [50, 100, 150]  # evaluations after the checkpoint are not duplicated


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resumes_exactly(make_recipe, tmp_path, reference, train_cli, signum,
                                                                status):
    """Ctrl-C, or the SIGTERM a scheduler sends before it kills a job: finish the step, checkpoint, say where."""
    recipe = make_recipe(training=TRAINING)
    run = tmp_path / "run"
    proc = start(recipe)
    wait_for_checkpoint(proc, run / "checkpoints", 10)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr[-2000:]
    assert f"{signal.Signals(signum).name}: stopping after this step" in stderr
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    step = int(stderr.split("interrupted at step ")[1].split(":")[0])
    assert (run / "checkpoints" / f"step-{step:06d}" / "trainer_state.json").exists()
    resumed = train_cli(recipe, "training.resume_from=latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(final_state(run), reference)


def test_half_written_checkpoint_is_ignored(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step-000010").mkdir(parents=True)
    for name in ("trainer_state.json", "model.safetensors", "optimizer.pt"):
        (checkpoints / "step-000010" / name).write_text("{}")
    (checkpoints / ".tmp-step-000020").mkdir()  # killed while writing
    (checkpoints / ".tmp-step-000020" / "model.safetensors").write_bytes(b"partial")
    (checkpoints / "step-000030").mkdir()  # no state file: incomplete
    assert find_checkpoint(tmp_path, "latest").name == "step-000010"


@pytest.mark.parametrize("missing", [("optimizer.pt",), ("model.safetensors", "optimizer.pt")])
def test_a_state_file_without_the_weights_beside_it_is_no_complete_checkpoint(tmp_path, missing):
    """A folder made or copied by hand with only its trainer_state.json: said when the checkpoint is looked for,
    not as a FileNotFoundError traceback after the data is read; `latest` passes over it."""
    folder = tmp_path / "checkpoints" / "step-000010"
    folder.mkdir(parents=True)
    for name in {"trainer_state.json", "model.safetensors", "optimizer.pt"} - set(missing):
        (folder / name).write_text('{"step": 10}')
    with pytest.raises(UserError) as info:
        find_checkpoint(tmp_path, str(folder), "recipe.yaml:3: training.resume_from")
    assert str(info.value) == (f"recipe.yaml:3: training.resume_from: {folder} is not a complete checkpoint "
                               f"(no {' or '.join(missing)} beside its trainer_state.json)")
    with pytest.raises(UserError, match="^k: no complete checkpoint in "):
        find_checkpoint(tmp_path, "latest", "k")
    older = tmp_path / "checkpoints" / "step-000004"
    older.mkdir()
    for name in ("trainer_state.json", "model.safetensors", "optimizer.pt"):
        (older / name).write_text('{"step": 4}')
    assert find_checkpoint(tmp_path, "latest") == older
    newer = fake_checkpoint(tmp_path / "checkpoints" / "step-000012")
    assert find_checkpoint(tmp_path, "latest") == newer  # the newest complete one


def test_a_run_folder_whose_checkpoints_are_incomplete_is_not_said_to_continue(tmp_path):
    """refuse_to_mix said 'continue it with training.resume_from=latest', which then found no complete checkpoint."""
    from mtnlp.recipe import load_recipe, refuse_to_mix

    run = tmp_path / "run"
    (run / "checkpoints" / "step-000004").mkdir(parents=True)
    (run / "checkpoints" / "step-000004" / "trainer_state.json").write_text('{"step": 4}')
    (tmp_path / "r.yaml").write_text(f"output_dir: {run}\ntasks:\n  t:\n    type: classification\n"
                                     "    data: {train: x.csv}\n")
    with pytest.raises(UserError, match="holds another run \\(checkpoints/\\) and no checkpoint to continue it from"):
        refuse_to_mix(run, load_recipe(tmp_path / "r.yaml"))
    fake_checkpoint(run / "checkpoints" / "step-000002")
    with pytest.raises(UserError, match="continue it with training.resume_from=latest"):
        refuse_to_mix(run, load_recipe(tmp_path / "r.yaml"))


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers(make_recipe, tmp_path):
    """SLURM preemption signals every process of the job, DataLoader workers too: they must outlive the
    main process's last step and checkpoint."""
    recipe = make_recipe(training={**TRAINING, "dataloader_workers": 2})
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "train", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    wait_for_checkpoint(proc, run / "checkpoints", 10)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    step = int(stderr.split("interrupted at step ")[1].split(":")[0])
    assert (run / "checkpoints" / f"step-{step:06d}" / "trainer_state.json").exists()
