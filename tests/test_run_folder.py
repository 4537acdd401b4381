"""What a run folder survives: a second run started into it, a crash or a full disk while a model or a
checkpoint is written, a log line cut short, a machine whose caches cannot be written."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FOUR_TASKS, fake_checkpoint
from mtnlp import report
from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train


def hold_in_another_process(folder):
    """A process that holds `folder`'s run lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                             "from mtnlp.folders import hold_run_folder; hold_run_folder(Path(sys.argv[1])); "
                             "print('held', flush=True); time.sleep(300)", str(folder)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_stopped_by_a_signal_lets_go_of_its_folder(make_recipe, tmp_path):
    """A notebook's run stopped by Ctrl-C, resumed by `mtnlp train` in another process: refused, the notebook
    still held the folder."""
    import signal

    from mtnlp.train import checkpoint, interrupted, setup, train_step

    run = setup(load_recipe(make_recipe(training={"steps": 4})))
    train_step(run)
    assert isinstance(interrupted(run, signal.SIGINT, checkpoint(run)), KeyboardInterrupt)
    hold_in_another_process(tmp_path / "run").kill()  # it could hold the folder


def test_a_run_ended_by_an_error_in_its_loop_lets_go_of_its_folder(make_recipe, tmp_path, monkeypatch):
    """A notebook's run that raised (a second Ctrl-C, a callback's error): the process lives on, and another
    one may train into the folder; nothing is training there."""
    import mtnlp.recipes.multitask

    def failing(run, task):
        raise KeyboardInterrupt  # as a second Ctrl-C raises it

    monkeypatch.setattr(mtnlp.recipes.multitask, "log_step", failing)
    with pytest.raises(KeyboardInterrupt):
        train(load_recipe(make_recipe(training={"steps": 3})))
    hold_in_another_process(tmp_path / "run").kill()  # it could hold the folder


def test_a_second_run_into_a_folder_a_run_is_training_in_is_refused(make_recipe, tmp_path):
    """Two runs into one folder mixed their checkpoints and logs (one crashed); `overwrite_output_dir` deleted
    the live run's checkpoint files under it."""
    recipe = make_recipe(training={"steps": 2})
    run = tmp_path / "run"
    train(load_recipe(recipe))
    model = (run / "model" / "model.safetensors").read_bytes()
    holder = hold_in_another_process(run)
    try:
        with pytest.raises(UserError, match=rf"^{run}: another run is training in this folder \(process {holder.pid} "
                                            r"on .+\): wait for it to end, or choose another output_dir$"):
            train(load_recipe(recipe, ["overwrite_output_dir=true"]))
        assert (run / "model" / "model.safetensors").read_bytes() == model  # nothing removed
    finally:
        holder.kill()
        holder.wait()
    train(load_recipe(recipe, ["overwrite_output_dir=true"]))  # a killed holder leaves no lock


def test_a_run_that_ended_while_this_one_read_its_data_is_not_replaced(make_recipe, tmp_path, monkeypatch):
    """The folder was empty when checked first; held, it is checked again before anything is removed."""
    from mtnlp import train as training

    hold = training.hold_run_folder

    def another_run_ended_meanwhile(run_dir):
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "model" / "config.json").write_text("{}")
        hold(run_dir)

    monkeypatch.setattr(training, "hold_run_folder", another_run_ended_meanwhile)
    with pytest.raises(UserError, match=r"output_dir: .*run holds another run \(model/\) and no checkpoint"):
        train(load_recipe(make_recipe(training={"steps": 2})))
    assert (tmp_path / "run" / "model" / "config.json").read_text() == "{}"


def test_a_folder_that_cannot_be_locked_trains_unguarded_with_a_warning(tmp_path, monkeypatch):
    """Some network mounts have no flock (ENOLCK, EOPNOTSUPP): every run was refused as if another held it."""
    import fcntl

    from mtnlp.folders import hold_run_folder

    def no_locks(f, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=rf"^{tmp_path / 'run'}: cannot lock it \(No locks available\)"):
        assert hold_run_folder(tmp_path / "run") is None


def test_cache_files_are_readable_as_the_umask_says(tmp_path):
    """mkstemp makes 0600 files: another user of a shared cache could not read an entry, and removed it."""
    import os

    from mtnlp.cache import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "labels.json", "[]")
    finally:
        os.umask(old)
    assert (tmp_path / "labels.json").stat().st_mode & 0o777 == 0o644


def test_a_log_line_cut_short_is_dropped_and_a_damaged_line_within_named(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "loss')  # the disk filled while step 3 was written
    with pytest.warns(UserWarning, match=rf"{log}:3: a line cut short, left out"):
        assert report.read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(UserError, match=rf"^{log}:2: not a JSON record"):
        report.read_jsonl(log)


@pytest.fixture
def model_and_tokenizer(tiny_encoder):
    from transformers import AutoTokenizer

    from mtnlp import MultiTaskModel

    return MultiTaskModel.from_encoder(tiny_encoder, FOUR_TASKS), AutoTokenizer.from_pretrained(tiny_encoder)


def test_a_model_save_that_fails_leaves_the_saved_model_whole(tmp_path, model_and_tokenizer, monkeypatch):
    """config.json was written first, in place: a crash or a full disk before the weights left one step's
    weights under another step's config, which predict and evaluate loaded without a word."""
    model, tokenizer = model_and_tokenizer
    folder = tmp_path / "model"
    model.config.mtnlp = {"step": 10}
    report.save_model(folder, model, tokenizer)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model.config.mtnlp = {"step": 20}
    with torch.no_grad():
        next(model.parameters()).add_(1.0)

    def fail(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", fail)  # after the new config and weights
    with pytest.raises(RuntimeError, match="killed"):
        report.save_model(folder, model, tokenizer)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the half-written copy removed
    monkeypatch.undo()
    (folder / "eval-validation.json").write_text("{}")  # of the old weights: it must not describe the new ones
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"an old shard")  # read as part of the new weights
    report.save_model(folder, model, tokenizer)
    assert json.loads((folder / "config.json").read_text())["mtnlp"] == {"step": 20}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)


def test_a_model_folder_that_is_a_link_is_saved_where_it_points(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "model").symlink_to(tmp_path / "elsewhere")
    for step in (1, 2):  # the second save of a swapped link failed (a folder renamed onto a link)
        model.config.mtnlp = {"step": step}
        report.save_model(tmp_path / "model", model, tokenizer)
    assert (tmp_path / "model").is_symlink()
    assert json.loads((tmp_path / "elsewhere" / "config.json").read_text())["mtnlp"] == {"step": 2}


def test_a_write_that_fails_on_a_full_disk_says_so(tmp_path, monkeypatch):
    """torch's error on a full disk is `unexpected pos 11328 vs 11220`; safetensors' is its own."""
    from mtnlp import folders

    tmp = tmp_path / ".tmp-step-000010"
    tmp.mkdir()
    monkeypatch.setattr(folders, "disk_full", lambda path: True)
    with pytest.raises(OSError) as raised:
        with folders.writing(tmp):
            (tmp / "optimizer.pt").write_bytes(b"part")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 11328 vs 11220")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path)
    assert not tmp.exists()  # its space is free for the next try
    monkeypatch.setattr(folders, "disk_full", lambda path: False)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with folders.writing(tmp):
            raise RuntimeError("unexpected pos")


def test_safetensors_no_space_error_is_a_full_disk_whatever_space_is_left(tmp_path, monkeypatch):
    """safetensors checks that a file fits before writing it: the disk still had 1.5 MB free after a model's save
    failed, so it was not counted as full and the user got a SafetensorError traceback."""
    from safetensors import SafetensorError

    from mtnlp import folders

    tmp = tmp_path / ".tmp-step-000010"
    tmp.mkdir()
    monkeypatch.setattr(folders, "disk_full", lambda path: False)
    with pytest.raises(OSError) as raised:
        with folders.writing(tmp):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path) and not tmp.exists()


def test_a_checkpoint_left_half_written_is_removed_by_the_next(tmp_path):
    from mtnlp.checkpoint import save_checkpoint
    from mtnlp.folders import find_checkpoint

    checkpoints = tmp_path / "checkpoints"
    stale = checkpoints / ".tmp-step-000005"  # a full disk stopped its save
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    model = torch.nn.Linear(2, 2)
    save_checkpoint(checkpoints / "step-000010", model, torch.optim.SGD(model.parameters(), lr=0.1), {"step": 10})
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000010"]
    assert find_checkpoint(tmp_path, "latest").name == "step-000010"


def test_a_full_disk_or_a_read_only_folder_is_one_line_and_status_1(capsys):
    from mtnlp.cli import guarded

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "runs/demo/checkpoints")

    assert guarded(full, debug=False) == 1
    assert capsys.readouterr().err == "error: runs/demo/checkpoints: No space left on device\n"

    def read_only():
        raise OSError(errno.EROFS, "Read-only file system")

    assert guarded(read_only, debug=False) == 1
    assert capsys.readouterr().err == "error: Read-only file system\n"
    with pytest.raises(OSError):
        guarded(full, debug=True)


def test_running_out_of_memory_is_one_line_saying_what_to_lower_and_status_1(capsys):
    """A GPU's out-of-memory error (the one GPU users meet most), the CPU allocator's, Python's; any other
    RuntimeError is a bug, with its traceback."""
    from mtnlp.cli import guarded

    def raising(error):
        def command():
            raise error
        return command

    try:
        torch.empty(2 ** 50)
    except RuntimeError as e:
        cpu = e
    gpu = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 "
                                 "GiB of which 1.21 GiB is free. Including non-PyTorch memory, this process has 14.56 "
                                 "GiB memory in use. Of the allocated memory 13.9 GiB is allocated by PyTorch")
    assert guarded(raising(gpu), debug=False, name="train") == 1
    assert capsys.readouterr().err == (
        "error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 GiB "
        "of which 1.21 GiB is free. Including non-PyTorch memory, this process...): lower "
        "training.batch_size or training.eval_batch_size (training.grad_accum keeps the rows per update) or "
        "model.max_length, or set training.gradient_checkpointing: true\n")
    assert guarded(raising(cpu), debug=False, name="predict") == 1
    assert capsys.readouterr().err == (f"error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried "
                                       f"to allocate {2 ** 52} bytes. Error code 12 (Cannot allocate memory)): lower "
                                       "--batch-size\n")
    assert guarded(raising(MemoryError()), debug=False, name="evaluate") == 1
    assert capsys.readouterr().err == "error: out of memory (MemoryError): lower training.eval_batch_size=N or " \
                                      "model.max_length=N\n"
    with pytest.raises(torch.OutOfMemoryError):
        guarded(raising(gpu), debug=True, name="train")
    with pytest.raises(RuntimeError, match="^a bug$"):
        guarded(raising(RuntimeError("a bug")), debug=False, name="train")


def test_a_training_step_that_runs_out_of_memory_ends_mtnlp_train_in_one_line(make_recipe, monkeypatch, capsys):
    import mtnlp.recipes.multitask
    from mtnlp.cli import main

    def step(run):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB.")

    monkeypatch.setattr(mtnlp.recipes.multitask, "train_step", step)
    assert main(["train", str(make_recipe(training={"steps": 3}))]) == 1
    err = capsys.readouterr().err
    assert err.endswith("\nerror: out of memory (CUDA out of memory. Tried to allocate 20.00 MiB.): lower "
                        "training.batch_size or training.eval_batch_size (training.grad_accum keeps the rows per update) "
                        "or model.max_length, or set training.gradient_checkpointing: true\n"), err
    assert "Traceback" not in err


def test_a_command_started_with_stdout_closed_runs(monkeypatch):
    """`mtnlp ... >&-` (cron, daemons): Python's sys.stdout is None; flushing it was an AttributeError."""
    import sys

    from mtnlp.cli import guarded

    monkeypatch.setattr(sys, "stdout", None)
    assert guarded(lambda: sys.stdout.write("said to no one\n") and 0, debug=False) == 0  # as predict writes


def test_metric_modules_that_cannot_be_cached_stop_training_before_its_first_step(make_recipe, tmp_path, monkeypatch):
    """evaluate copies (and touches) each module in HF_MODULES_CACHE: a read-only HF_HOME failed at the first
    evaluation, after every step, and the run's training was lost."""
    import evaluate

    from mtnlp import metrics

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "/ro/modules/evaluate_modules/metrics/accuracy")

    monkeypatch.setattr(metrics, "_CACHE", {})
    monkeypatch.setattr(evaluate, "load", read_only)
    with pytest.raises(UserError, match=r"^/ro/modules/evaluate_modules/metrics/accuracy: Read-only file system: "
                                        r"evaluate copies mtnlp's metric modules into HF_MODULES_CACHE \(.+\): "
                                        r"set it, or HF_HOME, to a folder you can write$"):
        train(load_recipe(make_recipe(training={"steps": 2})))
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_a_weights_file_whose_header_is_no_json_object_is_named(tmp_path):
    from mtnlp.folders import safetensors_problem

    header = b"[1, 2]"
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    assert safetensors_problem(tmp_path / "model.safetensors") == \
        "not a readable safetensors file (its header is not a JSON object)"


def test_a_model_folder_without_weights_is_named_incomplete(tmp_path, tiny_encoder):
    """What a run killed during its first save leaves: config.json and no weights."""
    from conftest import save_model

    from mtnlp.pipeline import load_pretrained

    folder = save_model(tmp_path / "model", tiny_encoder, FOUR_TASKS)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=rf"^{folder}: not a complete model folder: no model.safetensors \(the weights\)$"):
        load_pretrained(folder)


def test_launched_processes_that_wait_too_long_for_each_other_are_one_line_naming_the_timeout(capsys, monkeypatch):
    """gloo's "Timed out waiting 5000ms for recv" traceback (50 lines per rank) did not say which setting to raise."""
    from mtnlp.cli import guarded

    def waiting():
        raise RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                           "5000ms for recv operation to complete")

    with pytest.raises(RuntimeError, match="Timed out"):  # alone, no launch: a bug's traceback
        guarded(waiting, debug=False, name="train")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert guarded(waiting, debug=False, name="train") == 1
    assert capsys.readouterr().err == (
        "error: the processes waited for each other longer than training.ddp_timeout ([/pytorch/third_party/gloo/gloo/"
        "transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation to complete): raise it (the "
        "first process reads and tokenises the data while the others wait), or look for a process that stopped\n")
    with pytest.raises(RuntimeError, match="^a bug$"):
        guarded(lambda: (_ for _ in ()).throw(RuntimeError("a bug")), debug=False, name="train")


def test_what_is_no_pretrained_encoder_is_named(tmp_path, tiny_encoder):
    import shutil

    from mtnlp.folders import encoder_folder_problem

    assert encoder_folder_problem(Path(tiny_encoder)) is None
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text('{"model_type": "mtnlp"}')
    assert encoder_folder_problem(run).startswith("a run folder: set model.init_from to start from its model")
    assert encoder_folder_problem(run / "model").startswith("an mtnlp multi-task model; to start from")
    fake_checkpoint(run / "checkpoints" / "step-000002")
    assert encoder_folder_problem(run / "checkpoints" / "step-000002").startswith("a training checkpoint")
    onnx = Path(shutil.copytree(tiny_encoder, tmp_path / "onnx"))
    (onnx / "model.onnx").write_bytes(b"")
    assert encoder_folder_problem(onnx).startswith("an ONNX export")
    bare = Path(shutil.copytree(tiny_encoder, tmp_path / "bare", ignore=shutil.ignore_patterns("tokenizer*", "vocab*")))
    assert encoder_folder_problem(bare).startswith("no tokenizer in it")
    # the Trainer's output (run_mlm.py: save_state) and its checkpoint-N folders have a trainer_state.json too
    mlm = Path(shutil.copytree(tiny_encoder, tmp_path / "mlm-out"))
    (mlm / "trainer_state.json").write_text('{"global_step": 2}')
    assert encoder_folder_problem(mlm) is None


def test_a_finished_run_and_its_checkpoints_name_its_model_folder(tmp_path):
    """`mtnlp push RUN` of a finished run that kept checkpoints said "a run that has not finished: finish it"."""
    from mtnlp.folders import check_model_folder

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text('{"model_type": "mtnlp"}')
    fake_checkpoint(run / "checkpoints" / "step-000004")
    (run / "metrics.json").write_text('{"steps": {"trained": 4}}')
    with pytest.raises(UserError, match=rf"^{run}: a run folder; give its model folder, {run / 'model'}$"):
        check_model_folder(run)
    checkpoint = run / "checkpoints" / "step-000004"
    with pytest.raises(UserError, match=rf"^{checkpoint}: a training checkpoint of a finished run: give its model "
                                        rf"folder, {run / 'model'}$"):
        check_model_folder(checkpoint)
    (run / "metrics.json").unlink()  # a run that stopped before it finished: its checkpoint is for resuming
    with pytest.raises(UserError, match=rf"^{checkpoint}: a training checkpoint, or a run that has not finished: "
                                        r"finish it \(training.resume_from\)"):
        check_model_folder(checkpoint)
    with pytest.raises(UserError, match=rf"^{run}: a run that has not finished \(stopped before it finished: no "
                                        r"metrics.json\): finish it \(training.resume_from\), then give its model"):
        check_model_folder(run)


def test_a_resumed_run_stopped_before_its_next_checkpoint_has_not_finished(tmp_path):
    """Its metrics.json (best step 6) is the earlier finish's, its model/ a later best (step 120): init_from took it."""
    from mtnlp.folders import unfinished_run

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "metrics.json").write_text('{"best_step": 6, "steps": {"trained": 6}}')
    (run / "model" / "config.json").write_text('{"model_type": "mtnlp", "mtnlp": {"step": 6}}')
    assert unfinished_run(run) is None
    (run / "model" / "config.json").write_text('{"model_type": "mtnlp", "mtnlp": {"step": 120}}')
    assert unfinished_run(run) == ("resumed, and stopped before it finished (its model/ is of step 120, its "
                                   "metrics.json of step 6)")


def test_probes_of_a_finished_runs_lock_do_not_see_each_other(tmp_path):
    """Two processes asking at once (DDP ranks reading one init_from) took each other's probe for a run training."""
    import fcntl

    from mtnlp.folders import LOCK_FILE, unfinished_run

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "metrics.json").write_text('{"best_step": 2}')
    (run / LOCK_FILE).write_text("process 1 on host\n")
    with open(run / LOCK_FILE) as probe:  # as another probe holds it, for a moment
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert unfinished_run(run) is None
    with open(run / LOCK_FILE, "a") as training:
        fcntl.flock(training, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert unfinished_run(run) == "training now: process 1 on host"


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_prune_keeps_exactly_keep_checkpoints_the_newest(tmp_path):
    from mtnlp.checkpoint import prune_checkpoints

    for step in (2, 4, 6, 8):
        fake_checkpoint(tmp_path / f"step-{step}")
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-6", "step-8"]


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_only_checkpoints_with_their_state_file_are_complete_in_step_order(tmp_path):
    """The state file is written last: a folder without it is a save a kill cut short (one with it alone, made by
    hand, is not complete either). Steps are numbers, so step-1000000 comes after step-999999 (by name it would
    not)."""
    from mtnlp.folders import STATE_FILE, checkpoint_step, complete_checkpoints

    checkpoints = tmp_path / "checkpoints"
    for step, whole in ((2, True), (4, False), (999_999, True), (1_000_000, True), (1_000_001, None)):
        folder = checkpoints / f"step-{step:06d}"
        folder.mkdir(parents=True)
        if whole is not None:
            (folder / "model.safetensors").write_bytes(b"x")
            (folder / "optimizer.pt").write_bytes(b"x")
        if whole is not False:
            (folder / STATE_FILE).write_text("{}")
    (checkpoints / "step-latest").mkdir()  # not a step
    assert [checkpoint_step(p) for p in complete_checkpoints(checkpoints)] == [2, 999_999, 1_000_000]


def test_a_log_record_with_an_infinite_or_nan_number_is_written_with_null(tmp_path):
    """An fp16 step's gradient norm is inf when it overflowed: strict JSON has no Infinity, and the write failed."""
    log = tmp_path / "train_log.jsonl"
    report.append(log, {"step": 1, "grad_norm": float("inf"), "loss": {"a": float("nan"), "b": [float("-inf"), 0.5]}})
    assert report.read_jsonl(log) == [{"step": 1, "grad_norm": None, "loss": {"a": None, "b": [None, 0.5]}}]


def test_recipe_yaml_shows_characters_as_they_are_only_where_they_read_back_and_show():
    """allow_unicode wrote U+0085 raw, which YAML reads back as a space (the run's recipe.yaml then differed from the
    recipe), and a resume's 'what differs' showed café (NFC) -> café (NFD) and demo -> demo (a zero-width space)."""
    import yaml

    assert report.yaml_text({"task": "风格"}) == "task: 风格\n"
    for value in ("negative\x85", "demo\u200b", "cafe\u0301"):
        written = report.yaml_text({"name": value})
        assert written.isascii() and yaml.safe_load(written) == {"name": value}


def test_a_run_resumed_and_killed_one_step_past_its_metrics_is_unfinished(tmp_path):
    from mtnlp.folders import unfinished_run

    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "step-000005")
    (run / "metrics.json").write_text(json.dumps({"steps": {"trained": 4, "planned": 4}, "best_step": 4}))
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text(json.dumps({"mtnlp": {"step": 4}}))
    assert unfinished_run(run) == "resumed, and stopped at step 5 before it finished (its metrics.json is of step 4)"


def test_a_weights_file_longer_than_its_header_says_is_damaged(tmp_path):
    from safetensors.torch import save_file

    from mtnlp.folders import safetensors_problem

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(4)}, path)
    whole = path.read_bytes()
    assert safetensors_problem(path) is None
    path.write_bytes(whole + b"\0" * 64)
    assert safetensors_problem(path) == f"cut short or damaged: {len(whole) + 64:,} bytes, where its header describes {len(whole):,}"


def test_a_model_folder_without_tokenizer_config_is_not_complete(tmp_path, model_and_tokenizer):
    from mtnlp.errors import UserError
    from mtnlp.folders import check_model_folder

    model, tokenizer = model_and_tokenizer
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    check_model_folder(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    with pytest.raises(UserError, match=r"no tokenizer \(tokenizer_config.json and tokenizer.json\)"):
        check_model_folder(tmp_path)


def test_the_metrics_table_gives_the_majority_baseline_beside_each_figure_and_says_when_no_task_has_labels():
    """README's demo table: accuracy=0.8486 (majority 0.5092)."""
    printed = report.table({"t": {"validation": {"accuracy": 0.8, "f1": 0.7}}}, {"t": {"validation": {"accuracy": 0.5}}})
    assert printed.splitlines()[-1].endswith("accuracy=0.8000 (majority 0.5000)  f1=0.7000")
    assert report.label_table({}) == "(no task with labels)"


@pytest.mark.parametrize("state,said", [
    ('{"steps": 6}', "got None"), ('{"step": null}', "got None"), ('{"step": "4"}', "got '4'"),
    ('{"step": true}', "got True"), ('{"step": -1}', "got -1"), ('{"step": 4.0}', "got 4.0"),
    ("[1]", "a JSON object expected"), ('{"step": 3, "be', "Unterminated string"),
])
def test_a_checkpoint_state_without_a_count_of_steps_is_one_line_naming_the_file(tmp_path, state, said):
    """A KeyError, a TypeError or a crash at the next save, after the data was read (a damaged or hand-made state)."""
    from mtnlp.folders import checkpoint_state

    (tmp_path / "trainer_state.json").write_text(state)
    with pytest.raises(UserError) as info:
        checkpoint_state(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'trainer_state.json'}: not a readable checkpoint state (")
    assert said in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "trainer_state.json").write_text('{"step": 0, "steps": 6}')
    assert checkpoint_state(tmp_path) == {"step": 0, "steps": 6}


def test_carried_log_lines_leave_out_what_is_not_a_record_of_a_step(tmp_path):
    source, new = tmp_path / "source", tmp_path / "new"
    source.mkdir()
    new.mkdir()
    (source / "history.jsonl").write_text('{"step": 1, "score": 0.5}\n{"step": null}\n\n[3]\n{"step": "2"}\n'
                                          '{"step": 2, "score": 0.6}\n{"step": 3, "score": 0.7}\n')
    (source / "train_log.jsonl").write_bytes(b'{"step": 1}\n{"st\xffep": 2\n{"step": 2}\n')
    with pytest.warns(UserWarning) as said:
        report.carry_logs(source, new, 2)
    assert sorted(str(w.message) for w in said) == [
        f"{source / 'history.jsonl'}: 3 line(s) not a log record, not carried over into {new}",
        f"{source / 'train_log.jsonl'}: 1 line(s) not a log record, not carried over into {new}"]
    assert [json.loads(line) for line in (new / "history.jsonl").read_text().splitlines()] == [
        {"step": 1, "score": 0.5}, {"step": 2, "score": 0.6}]
    assert [json.loads(line)["step"] for line in (new / "train_log.jsonl").read_text().splitlines()] == [1, 2]


def test_a_log_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    (tmp_path / "train_log.jsonl").write_bytes(b'{"step": 1}\n{"step": 2, "x": "\xff"}\n')
    with pytest.raises(UserError, match=rf"^{tmp_path / 'train_log.jsonl'}: not UTF-8 text \(byte 30: invalid start byte\)$"):
        report.read_jsonl(tmp_path / "train_log.jsonl")
