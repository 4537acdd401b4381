"""The machines users have: output folders behind symbolic links, over-long names, caches under a file, a
terminal that is not UTF-8, a read-only model folder, installations in folders with odd names."""

import io
import json
import os
import sys

import pytest
import yaml
from conftest import FOUR_TASKS, save_model, set_up_run, tiny_tasks
from transformers import AutoTokenizer

from mtnlp.cli import absolute_data_dir, main
from mtnlp.errors import UserError
from mtnlp.recipe import check_training_paths, load_recipe
from mtnlp.recipes.multitask import train


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_encoder):
    return save_model(tmp_path_factory.mktemp("env-model"), tiny_encoder, FOUR_TASKS)


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_an_output_dir_behind_a_link_that_leads_nowhere_is_a_recipe_error(make_recipe, tmp_path):
    """A scratch disk not mounted, a target removed: the run was refused only after the data was read, with
    a FileExistsError traceback."""
    (tmp_path / "scratch").symlink_to(tmp_path / "not-mounted")
    recipe = make_recipe()
    with pytest.raises(UserError, match=f": output_dir: {tmp_path / 'scratch'} is a symbolic link to "
                                        f"{tmp_path / 'not-mounted'}, which does not exist$"):
        check_training_paths(load_recipe(recipe, [f"output_dir={tmp_path / 'scratch' / 'run'}"]))
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(UserError, match=f": output_dir: {tmp_path / 'a'} is a symbolic link to {tmp_path / 'b'}, "
                                        "a loop of symbolic links$"):
        check_training_paths(load_recipe(recipe, [f"output_dir={tmp_path / 'a'}"]))


def test_export_into_a_link_that_leads_nowhere_is_refused_before_the_export(model_dir, tmp_path, capsys):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    assert main(["export", str(model_dir), "--task", "ner", str(tmp_path / "out")]) == 2
    assert last_error(capsys) == f"error: export: {tmp_path / 'out'} is a symbolic link to {tmp_path / 'gone'}, " \
                                 "which does not exist"
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_printed_command_naming_a_folder_with_spaces_can_be_copied(model_dir, tmp_path, capsys):
    import shlex

    out = tmp_path / "my exports" / "onnx 'model'"
    assert main(["export", str(model_dir), "--onnx", str(out)]) == 0
    command = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert shlex.split(command) == ["mtnlp", "predict", str(out), "..."]


@pytest.mark.parametrize("argv", [
    ["predict", "{model}", "a text", "--output", "{long}"],
    ["recipes", "copy", "demo", "{long}"],
    ["predict", "{long}", "a text"],
])
def test_a_file_name_longer_than_the_file_system_takes_is_one_line_and_status_2(model_dir, tmp_path, capsys, argv):
    long = str(tmp_path / ("a" * 300))
    assert main([a.format(model=model_dir, long=long) for a in argv]) == 2
    error = last_error(capsys)
    assert error.startswith("error: ") and "a" * 300 in error, error


def test_a_cache_folder_under_a_file_is_a_recipe_error_naming_the_variable(make_recipe, tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "afile" / "hf"))
    assert main(["train", str(make_recipe(training={"steps": 1}))]) == 2
    assert last_error(capsys) == f"error: {tmp_path / 'afile' / 'hf' / 'mtnlp'}: the tokenised data is cached here, " \
                                 "and it cannot be written (Not a directory): set HF_DATASETS_CACHE (or HF_HOME) to " \
                                 "a folder you can write"


@pytest.mark.parametrize("cache", ["under a file", "read-only", "another user's 0700"])
def test_a_cache_that_cannot_be_written_is_the_same_error_for_a_file_read_in_chunks(make_recipe, tmp_path, monkeypatch,
                                                                                    capsys, cache):
    """A file of 10,000 examples or more is read into chunk files in the cache before anything is tokenised: a raw
    pyarrow error ("Failed to open local file ... Permission denied"), status 1, or "Not a directory" without
    HF_DATASETS_CACHE. In a folder this user cannot search (made by another user under umask 077), removing the chunk
    file that could not be made is refused too: that was "error: <chunk file>: Permission denied", status 1."""
    from pathlib import Path

    import pyarrow as pa

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(10_000)))
    folder = tmp_path / "hf"
    if cache == "under a file":
        (tmp_path / "afile").write_text("")
        folder = tmp_path / "afile" / "hf"
    else:  # (the tests may run as root, whom a read-only folder does not stop)
        def refused(sink, schema, **kwargs):
            raise OSError(13, f"Failed to open local file '{sink}'. Detail: [errno 13] Permission denied")
        monkeypatch.setattr(pa.ipc, "new_stream", refused)
        if cache == "another user's 0700":
            unlink = Path.unlink

            def unsearchable(path, missing_ok=False):
                if path.name.startswith(".reading-"):
                    raise PermissionError(13, "Permission denied", str(path))
                unlink(path, missing_ok)
            monkeypatch.setattr(Path, "unlink", unsearchable)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(folder))
    recipe = make_recipe(tasks={"s": {"type": "classification", "data": {"train": str(train)}}}, training={"steps": 1})
    assert main(["train", str(recipe)]) == 2
    what = "Not a directory" if cache == "under a file" else "Permission denied"
    assert last_error(capsys) == f"error: {folder / 'mtnlp'}: the tokenised data is cached here, and it cannot be " \
                                 f"written ({what}): set HF_DATASETS_CACHE (or HF_HOME) to a folder you can write"


@pytest.mark.parametrize("writing", ["chunks", "tokens"])
def test_a_full_disk_under_the_cache_names_the_cache_folder(make_recipe, tmp_path, monkeypatch, capsys, writing):
    """It was "error: Error writing bytes to file. Detail: [errno 28] No space left on device": no path."""
    from pathlib import Path

    import datasets
    import pyarrow as pa

    def full(*args, **kwargs):  # what pyarrow raises
        raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    class FullDiskWriter:  # opens its file; writing it, and flushing it when closed, fail
        def __init__(self, sink, schema):
            Path(sink).write_bytes(b"")
        write_table = close = full

    rows = 10_000 if writing == "chunks" else 100  # (a file of 10,000 examples or more is read into chunk files)
    if writing == "chunks":
        monkeypatch.setattr(pa.ipc, "new_stream", FullDiskWriter)
    else:
        monkeypatch.setattr(datasets.Dataset, "map", full)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(rows)))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    recipe = make_recipe(tasks={"s": {"type": "classification", "data": {"train": str(train)}}}, training={"steps": 1})
    assert main(["train", str(recipe)]) == 1
    assert last_error(capsys) == f"error: {tmp_path / 'hf' / 'mtnlp'}: No space left on device"
    assert not [p.name for p in (tmp_path / "hf" / "mtnlp").iterdir() if p.name.startswith(".")]  # no temporary file


def ascii_terminal(monkeypatch):
    """stdout and stderr as under PYTHONIOENCODING=ascii (or a Windows console's code page)."""
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="ascii"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="ascii"))

    def said():
        sys.stdout.flush()
        sys.stderr.flush()
        return out.getvalue().decode("ascii"), err.getvalue().decode("ascii")
    return said


def test_a_terminal_that_is_not_utf8_gets_escapes_not_a_failed_command(model_dir, make_recipe, monkeypatch):
    """A run that was done failed on the dash of "best step N — metrics"; predict on a text it cannot print."""
    said = ascii_terminal(monkeypatch)
    assert main(["predict", str(model_dir), "Zürich — 中文 😀"]) == 0
    out, _ = said()
    assert json.loads(out.splitlines()[-1])["text"] == "Zürich — 中文 😀"  # ASCII JSON, its escapes
    assert main(["train", str(make_recipe(training={"steps": 2}))]) == 0
    out, _ = said()
    assert "best step 2 \\u2014 metrics of the kept model" in out


def test_evaluate_beside_a_model_in_a_folder_it_cannot_write_says_so_before_evaluating(model_dir, make_recipe,
                                                                                       monkeypatch, capsys):
    """A model on a read-only share: the evaluation ran, then its results were lost to a write error."""
    import mtnlp.cli
    import mtnlp.evaluation

    recipe = make_recipe(tasks={"ner": tiny_tasks()["ner"]})  # the model's task, type and labels
    writable = os.access
    monkeypatch.setattr(mtnlp.cli.os, "access", lambda path, mode: False if str(path) == str(model_dir)
                        else writable(path, mode))
    monkeypatch.setattr(mtnlp.evaluation, "evaluate_split", lambda *a, **k: pytest.fail("evaluated"))
    assert main(["evaluate", str(model_dir), str(recipe)]) == 2
    assert last_error(capsys) == f"error: {model_dir / 'eval-validation.json'}: cannot write the results here " \
                                 "(a read-only folder?): give --output FILE"


def test_a_saved_tokenizer_keeps_no_truncation_from_its_last_call(tiny_encoder, tmp_path):
    """tokenizer.json held the truncation and padding of the tokenizer's last call: a run that tokenised (a
    cold cache) saved max_length 64, one that did not (a warm cache) nothing, and the `tokenizers` library
    applies what the file says to every text."""
    from tokenizers import Tokenizer

    from mtnlp.encoders import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    tokenizer(["a b c d e f g h i j"], truncation=True, max_length=8, padding="max_length")
    assert tokenizer.backend_tokenizer.truncation is not None
    save_tokenizer(tokenizer, tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    assert len(Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(" ".join(["word"] * 20)).ids) == 22


@pytest.mark.parametrize("folder", ["/opt/ML #2/site-packages/recipes", "/srv/a: b/recipes", "/home/zoë/recipes"])
def test_a_copied_recipe_names_its_data_folder_whatever_characters_it_holds(tmp_path, folder):
    """`data_dir: /opt/ML #2/...` is read by YAML as /opt/ML (the rest a comment); `a: b` is no YAML at all."""
    where = tmp_path / folder.lstrip("/") / "data"
    where.mkdir(parents=True)
    copied = absolute_data_dir("name: demo\ndata_dir: data\n", where.parent)
    assert yaml.safe_load(copied)["data_dir"] == str(where)


def test_latest_in_a_relative_output_dir_that_has_no_checkpoint_names_where_it_looked(make_recipe, tmp_path,
                                                                                     monkeypatch):
    """The run's recipe.yaml keeps output_dir as given: resumed from another folder, the relative path said
    nothing of where it was looked for."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UserError, match=f"training.resume_from: no complete checkpoint in {elsewhere / 'runs/x'}"
                                        r"/checkpoints \(output_dir runs/x: from the current folder\)$"):
        train(load_recipe(make_recipe(output_dir="runs/x"), ["training.resume_from=latest"]))


def test_the_progress_bar_into_a_file_is_not_redrawn_ten_times_a_second(make_recipe, tmp_path):
    """A long run logged to a file (2> log, CI) wrote megabytes of bar updates into a few lines."""
    import contextlib
    import time

    start = time.monotonic()
    with open(tmp_path / "log", "w") as log, contextlib.redirect_stderr(log):  # not a terminal
        train(load_recipe(make_recipe(training={"steps": 60, "log_every": 100})))
    redraws = int((time.monotonic() - start) // 30)  # one per 30 s: a loaded machine takes more than 30 s
    drawn = (tmp_path / "log").read_text().count("train: ")  # (tokenizing and loading draw bars of their own)
    assert drawn <= 3 + redraws, (tmp_path / "log").read_text()


@pytest.mark.parametrize("where", ["notebook", "kernel text bar", "says terminal", "wrapper", "kernel text bar via cli"])
def test_the_progress_bar_in_a_notebook_or_a_wrappers_stream_is_redrawn_as_in_a_terminal(make_recipe, tmp_path,
                                                                                        monkeypatch, where):
    """A notebook's widget bar and its text bar (without ipywidgets; the kernel's stream has the kernel's pipe
    as its file) were redrawn every 30 s, and so was Spyder's (a stream that says it is a terminal); a stream
    that only writes (a log-capturing wrapper's) failed the run."""
    import tqdm.std

    import mtnlp.train

    class Writes:
        def write(self, text):
            return len(text)

        def flush(self):
            pass

    if where == "notebook":
        # what tqdm.auto gives in a Jupyter kernel: a class of its own, tqdm.notebook's among its bases
        notebook = type("tqdm", (tqdm.std.tqdm,), {"__module__": "tqdm.notebook"})
        monkeypatch.setattr(mtnlp.train, "tqdm", type("tqdm", (notebook,), {"__module__": "tqdm.auto"}))
        stream = open(tmp_path / "kernel-pipe", "w")  # a file, as a kernel's stream may hold
    elif where == "wrapper":
        stream = Writes()
    else:
        kernel = where.startswith("kernel text bar")
        pipe = open(tmp_path / "kernel-pipe", "w")
        stream = type("OutStream", (Writes,), {"__module__": "ipykernel.iostream" if kernel else "spyder_kernels.x",
                                               "fileno": lambda self: pipe.fileno(), "isatty": lambda self: not kernel})()
        if where.endswith("via cli"):  # `mtnlp.cli.main(["train", ...])` in a notebook guards the kernel's stream
            from mtnlp.cli import TrainingOutput

            stream = TrainingOutput(stream, "error")
    monkeypatch.setattr(sys, "stderr", stream)
    with set_up_run(make_recipe(training={"steps": 2})) as run:
        assert run.bar.mininterval == 0.1


@pytest.mark.parametrize("encoding, mark", [("utf-16", "0xff 0xfe"), ("utf-32", "0xff 0xfe 0x00 0x00")])
def test_a_utf16_or_utf32_input_file_for_predict_is_named_as_one(model_dir, tmp_path, capsys, encoding, mark):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n', encoding=encoding)  # with its byte order mark, as Windows writes it
    assert main(["predict", str(model_dir), "--input", str(path)]) == 2
    wide = encoding.upper()
    assert last_error(capsys) == f"error: {path}:1: starts with the bytes {mark}, a {wide} byte order mark: the " \
                                 f"file is {wide}, not utf-8; JSON Lines are UTF-8: convert the file (e.g. iconv -f " \
                                 f"{encoding} -t utf-8)"


def test_a_launchers_local_rank_left_in_the_environment_is_one_line(make_recipe, monkeypatch):
    """Accelerate then set up torch.distributed and failed with a traceback: RANK expected, but not set."""
    from mtnlp.train import make_accelerator

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(UserError, match="^LOCAL_RANK=1 is set, RANK and WORLD_SIZE not: a launcher's variable left in "
                                        "the environment[?] Unset LOCAL_RANK, or start under torchrun or accelerate "
                                        "launch$"):
        make_accelerator(load_recipe(make_recipe()))
    monkeypatch.setenv("LOCAL_RANK", "-1")  # what Accelerate takes for "not launched"
    assert make_accelerator(load_recipe(make_recipe()))[0].num_processes == 1


def test_standard_input_ended_by_a_ctrl_z_for_predict_is_named_as_such(model_dir, monkeypatch, capsys):
    for data, line in ((b'{"text": "a"}\r\n\x1a', 2), (b'{"text": "a"}\n{"text": "b"}\x1a\r\n', 2)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["predict", str(model_dir), "--input", "-"]) == 2
        assert last_error(capsys) == f"error: standard input:{line}: a Ctrl-Z (\\x1a, an old DOS end-of-file mark) " \
                                     "ends the file: remove it"


def test_a_link_to_a_path_under_a_file_is_not_called_a_loop(make_recipe, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "out").symlink_to(tmp_path / "afile" / "sub")
    with pytest.raises(UserError, match=f"output_dir: {tmp_path / 'out'} is a symbolic link to "
                                        f"{tmp_path / 'afile' / 'sub'}, which cannot be followed \\(Not a directory\\)$"):
        check_training_paths(load_recipe(make_recipe(), [f"output_dir={tmp_path / 'out' / 'run'}"]))


def test_every_text_file_mtnlp_opens_names_its_encoding():
    """A file written in the locale's encoding: on Windows (cp1252) or a Latin-1 system the model card's "—"
    failed the run at its end, or wrote a card that push and serve's /info read as UTF-8 could not decode."""
    import ast
    from pathlib import Path

    import mtnlp

    unnamed = []
    for path in sorted(Path(mtnlp.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), "r") if name in (
                "open", "fdopen") and not (isinstance(node.func, ast.Attribute) and node.func.attr == "open"
                                           and getattr(node.func.value, "id", "") == "os") else None
            text = name in ("read_text", "write_text") or (mode is not None and "b" not in mode)
            if text and not any(k.arg == "encoding" for k in node.keywords):
                unnamed.append(f"{path.name}:{node.lineno}")
    assert not unnamed, unnamed


def test_the_model_card_and_the_recipe_list_are_utf8_under_an_ascii_locale(tmp_path, tiny_encoder):
    import subprocess

    tasks = {"stimmung": {"type": "classification", "labels": ["négatif 😞", "positif ✓"], "dropout": 0.1}}
    folder = save_model(tmp_path / "model", tiny_encoder, tasks)
    ascii_locale = {**os.environ, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C", "LANG": "C"}
    ascii_locale.pop("PYTHONIOENCODING", None)
    write = "import sys; from pathlib import Path; from mtnlp.hub import write_card; write_card(Path(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", write, str(folder)], env=ascii_locale, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "négatif 😞" in (folder / "README.md").read_text(encoding="utf-8")
    listed = subprocess.run([sys.executable, "-m", "mtnlp", "recipes", "list"], env=ascii_locale, capture_output=True)
    assert listed.returncode == 0 and b"demo" in listed.stdout, listed.stderr.decode(errors="replace")


def test_a_checkpoint_is_written_where_a_read_only_handle_cannot_be_flushed(tmp_path, monkeypatch):
    """Windows' os.fsync refuses a read-only handle (EBADF): every checkpoint failed there."""
    import errno
    import fcntl

    import torch

    from mtnlp import checkpoint

    real_fsync = os.fsync

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", windows_fsync)
    model = torch.nn.Linear(2, 2)
    folder = checkpoint.save_checkpoint(tmp_path / "step-000001", model, torch.optim.AdamW(model.parameters()), {"step": 1})
    assert (folder / "model.safetensors").exists()


def test_the_cache_is_found_without_a_home_directory(monkeypatch):
    """A container's random uid: no HOME and no passwd entry. Path.home() raised; datasets and huggingface_hub
    keep "~" as it is, and mtnlp's cache must stay inside datasets' own."""
    import pwd
    from pathlib import Path

    from mtnlp.cache import cache_dir

    for name in ("HOME", "HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert cache_dir() == Path("~/.cache/huggingface/datasets/mtnlp")


def test_a_closed_pipe_is_status_141_where_signal_has_no_sigpipe(monkeypatch, capsys):
    """Windows has no signal.SIGPIPE: `mtnlp predict ... | more` closed early was an AttributeError traceback."""
    import signal

    from mtnlp.cli import guarded

    monkeypatch.delattr(signal, "SIGPIPE")
    monkeypatch.setattr(os, "dup2", lambda *a: None)  # (keeps pytest's stdout)
    monkeypatch.setattr(sys, "stdout", open(os.devnull, "w", encoding="utf-8"))

    def closed_pipe():
        raise BrokenPipeError(32, "Broken pipe")

    assert guarded(closed_pipe, debug=False) == 141


def test_tqdm_disable_silences_the_training_progress_bar(make_recipe):
    """tqdm reads TQDM_* (at import) for what its caller leaves out: a `disable=` given made TQDM_DISABLE=1 do
    nothing."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(make_recipe(training={"steps": 2}))],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0 and "step 2" in proc.stdout and "train:" not in proc.stderr, proc.stderr[-2000:]


def test_a_warning_while_the_progress_bar_is_open_comes_on_a_line_of_its_own():
    """stderr a log file or a pipe (the bar's line has no end there): a warning came glued to the end of the bar."""
    import io

    from tqdm import tqdm

    from mtnlp.cli import TrainingOutput

    err = TrainingOutput(io.StringIO(), "error")
    bar = tqdm(total=4, desc="train", file=err)
    bar.update(1)
    err.write("warning: an epoch held 1 example(s)\n")  # as warnings.showwarning writes it
    print("warning: a second", file=err)  # print: the text, then its end
    bar.close()
    before, said, after = err.stream.getvalue().partition("warning: an epoch held 1 example(s)\nwarning: a second\n")
    assert said and before.startswith("\rtrain:") and before.endswith("it/s]\n") and after.startswith("\rtrain:")
    assert after.endswith("\n") and "\n\n" not in err.stream.getvalue()  # the bar's own line end: not doubled
    bar = tqdm(total=4, desc="train", file=err)
    tqdm.write("said above the bar", file=err)  # it clears the bar's line first: no empty line before it
    bar.close()
    assert "\n\n" not in err.stream.getvalue() and "\rsaid above the bar\n" in err.stream.getvalue()
    err = TrainingOutput(io.StringIO(), "error")
    err.write("\rtrain:  25%|##")
    err.write("")  # (print's end="", a flush): nothing to start a line for
    err.write("\rtrain: 100%|####\n")  # a bar line and its end in one write: the line is closed
    err.write("warning: x\n")
    err.write("note\n\rtrain:  50%|##")  # a line, then a bar opened in the same write
    err.write("warning: y\n")
    assert err.stream.getvalue() == "\rtrain:  25%|##\rtrain: 100%|####\nwarning: x\nnote\n\rtrain:  50%|##\nwarning: y\n"


@pytest.mark.parametrize("found,cpu,expected", [("mps", False, "mps"), ("xpu", False, "xpu"), (None, False, "cpu"),
                                                ("mps", True, "cpu")])
def test_inference_runs_on_the_machines_accelerator(monkeypatch, found, cpu, expected):
    """`mtnlp evaluate` and the pipeline chose CUDA or the CPU: on a Mac they ran on the CPU, where training ran
    on MPS (Accelerate's choice)."""
    import torch

    from mtnlp.pipeline import default_device

    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: found and torch.device(found))
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: found is not None)
    assert default_device(cpu=cpu) == torch.device(expected)


def test_inference_on_a_cuda_build_without_a_gpu_runs_on_the_cpu(monkeypatch):
    """PyPI's Linux torch is a CUDA build: on a machine without a GPU (or CUDA_VISIBLE_DEVICES="") torch still
    names CUDA as its accelerator unless asked whether one is there, and predict, serve and evaluate failed."""
    import torch

    from mtnlp.pipeline import default_device

    def cuda_build_without_a_gpu():  # (torch 2.6's signature: no check_available)
        return torch.device("cuda")
    monkeypatch.setattr(torch.accelerator, "current_accelerator", cuda_build_without_a_gpu)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
