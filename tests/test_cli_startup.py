"""The command line answers --help, recipe mistakes and data-file mistakes without importing torch,
transformers or datasets (seconds of start-up): this guards it by making those imports fail."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "datasets", "accelerate", "peft", "evaluate")


def without_heavy_imports(*argv: str, prelude: str = "") -> list[str]:
    """The command line `mtnlp ARGV` in a Python where importing any of HEAVY fails (after running `prelude`)."""
    code = ("import sys\n" + prelude
            + "".join(f"sys.modules[{name!r}] = None\n" for name in HEAVY)  # any import of them now fails
            + "from mtnlp.cli import main\n"
            + f"sys.exit(main({list(argv)!r}))\n")
    return [sys.executable, "-c", code]


def run_without_heavy_imports(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(without_heavy_imports(*argv), capture_output=True, text=True, timeout=60)


def test_help_needs_no_heavy_import():
    proc = run_without_heavy_imports("--help")
    assert proc.returncode == 0 and "train" in proc.stdout, proc.stderr
    proc = run_without_heavy_imports("train", "--help")
    assert proc.returncode == 0 and "key=value" in proc.stdout, proc.stderr


def test_version_is_the_packages():
    import mtnlp

    proc = run_without_heavy_imports("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mtnlp {mtnlp.__version__}", proc.stderr
    from importlib.metadata import version

    assert version("mtnlp") == mtnlp.__version__  # pyproject's version is mtnlp.__version__


def test_recipe_mistake_needs_no_heavy_import(make_recipe):
    proc = run_without_heavy_imports("train", str(make_recipe()), "training.lrr=1")
    assert proc.returncode == 2 and "unknown key 'training.lrr'" in proc.stderr, proc.stderr


def test_data_file_mistake_needs_no_heavy_import(make_recipe, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood\tpos\nfine\tneg\nbroken line\n", encoding="utf-8")
    recipe = make_recipe(tasks={"t": {"type": "classification", "data": {"train": str(bad)}}})
    proc = run_without_heavy_imports("train", str(recipe))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {bad}:4:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_overrides_may_come_before_and_after_the_options(make_recipe):
    """`mtnlp train R k=v --debug k=v` and `python SCRIPT.py k=v --config R k=v`: every override is read (the
    unknown one is the error), none is an argparse 'unrecognized arguments'."""
    recipe = str(make_recipe())
    script = Path(__file__).resolve().parent.parent / "recipes" / "multitask.py"
    for argv in (["-m", "mtnlp", "train", recipe, "training.steps=2", "--debug", "training.lrr=1"],
                 [str(script), "training.steps=2", "--config", recipe, "training.lrr=1"]):
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "training.lrr" in proc.stderr and "unrecognized" not in proc.stderr, proc.stderr


def test_an_interrupt_under_a_launcher_is_said_by_the_first_process_only(monkeypatch, capsys):
    from mtnlp.cli import guarded

    def stopped():
        raise KeyboardInterrupt

    for rank, said in (("0", "interrupted\n"), ("1", "")):
        monkeypatch.setenv("RANK", rank)
        assert guarded(stopped, debug=False) == 130
        assert capsys.readouterr().err == said


def test_training_stopped_on_a_signal_after_its_checkpoint_is_not_said_interrupted_again(capsys):
    """train.interrupted has said "interrupted at step N: checkpoint saved to ...": a bare "interrupted" followed."""
    import signal

    from mtnlp.cli import guarded
    from mtnlp.train import Interrupted

    for signum in (signal.SIGINT, signal.SIGTERM):
        def stopped():
            raise Interrupted(signum)

        assert guarded(stopped, debug=False) == 128 + signum
        assert capsys.readouterr().err == ""


def test_an_error_met_during_training_starts_a_line_of_its_own(capsys):
    """A bad row of a streamed split is met with the progress bar drawn: the error must not end its line."""
    from tqdm.auto import tqdm

    from mtnlp.cli import guarded
    from mtnlp.errors import UserError

    def training():
        bar = tqdm(total=10, desc="train", file=sys.stderr)
        bar.update(1)
        raise UserError("data.jsonl:3: a bad row")

    assert guarded(training, debug=False) == 2
    assert "\nerror: data.jsonl:3: a bad row\n" in capsys.readouterr().err


def test_texts_and_overrides_after_an_option_and_after_a_double_dash(monkeypatch, capsys):
    """`predict M hi --tasks a "-a text"` was `unrecognized arguments: -a text` (with the top-level usage); after
    `--` a text may start with '-'. An optional positional is not listed as required."""
    from mtnlp import cli

    monkeypatch.setattr(cli, "cmd_predict", lambda args: print(args.texts) or 0)
    assert cli.main(["predict", "M", "hi", "--tasks", "a", "there", "--", "-a text", "--tasks"]) == 0
    assert capsys.readouterr().out == "['hi', 'there', '-a text', '--tasks']\n"
    with pytest.raises(SystemExit) as exited:
        cli.main(["predict", "M", "hi", "--tasks", "a", "-a text"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("error: unrecognized arguments: -a text (a text that starts with '-' goes after "
                                       "--); see `mtnlp predict --help`\n")  # one line, the command's help
    with pytest.raises(SystemExit):
        cli.main(["train"])
    assert capsys.readouterr().err == "error: the following arguments are required: recipe; see `mtnlp train --help`\n"


@pytest.mark.parametrize("argv,said", [
    (["train", "r.yaml", "--lr", "1e-4"], "--lr (settings are recipe keys, given as key=value: training.lr=VALUE)"),
    (["train", "r.yaml", "--learning_rate=1e-4"], "--learning_rate=1e-4 (settings are recipe keys, given as key=value: "
                                                  "training.lr=VALUE)"),
    (["train", "r.yaml", "--max-length", "64"], "--max-length (settings are recipe keys, given as key=value: "
                                                "model.max_length=VALUE)"),
    (["evaluate", "M", "r.yaml", "--frobnicate"], "--frobnicate (settings are recipe keys, given as key=value, e.g. "
                                                  "training.lr=3e-5)"),
    (["evaluate", "M", "r.yaml", "--batch-size", "8"], "--batch-size (settings are recipe keys, given as key=value: "
                                                       "training.eval_batch_size=VALUE)"),  # what evaluate reads
    (["train", "r.yaml", "--tasks", "a"], "--tasks (settings are recipe keys, given as key=value, e.g. "
                                          "training.lr=3e-5)"),  # not `tasks=a`, which is no mapping
    (["evaluate", "M", "r.yaml", "--per-labels"], "--per-labels (did you mean --per-label?)"),
    (["predict", "M", "hi", "--split", "test"], "--split")])  # an option of evaluate's: no advice on texts
def test_an_option_that_names_a_setting_is_told_its_recipe_key(capsys, argv, said):
    """`--lr 1e-4` was told that an override starting with '-' goes after --, which then made it an unknown key."""
    from mtnlp import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: unrecognized arguments: {said}; see `mtnlp {argv[0]} --help`\n"


@pytest.mark.parametrize("argv,said", [
    (["evaluate", "M", "R", "--split", "dev"], "error: --split: invalid choice: 'dev' (choose from 'train', 'validation', 'test'); "
                                               "see `mtnlp evaluate --help`"),
    (["trian", "x.yaml"], "error: command: invalid choice: 'trian' (choose from 'train', 'evaluate', 'predict', "
                          "'push', 'recipes', 'export', 'serve'); see `mtnlp --help`"),
    (["predict", "M", "x", "--batch-size", "many"], "error: --batch-size: invalid int value: 'many'; see `mtnlp predict --help`"),
    # a task named "-neg" (argparse reads a value starting with '-' as an option): say how to give it
    (["predict", "M", "--tasks", "-neg", "x"], "error: --tasks: expected one argument (a value that starts with '-' is "
                                               "written --tasks=VALUE); see `mtnlp predict --help`"),
    # ... but not where the value is missing (the end of the line, or another option next)
    (["predict", "M", "x", "--tasks"], "error: --tasks: expected one argument; see `mtnlp predict --help`"),
    (["predict", "M", "--batch-size", "--tasks", "a", "x"], "error: --batch-size: expected one argument; "
                                                            "see `mtnlp predict --help`"),
])
def test_an_option_mistake_is_one_line_with_status_2(argv, said, capsys):
    """argparse printed its usage block above the error: a user's mistake is one line, as every other."""
    from mtnlp import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2 and capsys.readouterr().err == said + "\n"


def test_a_closed_output_pipe_ends_quietly_with_the_results_written(make_recipe, tmp_path):
    """`mtnlp evaluate ... | head -1`: a BrokenPipeError traceback, and eval-SPLIT.json was never written (it is
    written before the table is printed now)."""
    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    recipe = make_recipe(training={"steps": 2})
    train(load_recipe(recipe))
    model = tmp_path / "run" / "model"
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "evaluate", str(model), str(recipe)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, stderr  # 128 + SIGPIPE, as a shell reports a pipe's writer
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert set(json.loads((model / "eval-validation.json").read_text())["tasks"]) == {"sentiment", "score", "ner"}


def test_an_export_that_fails_leaves_nothing_behind(tmp_path, tiny_encoder, monkeypatch, capsys):
    """A full disk left a part of the export in OUT, and `export never overwrites` then refused the retry."""
    import errno

    from conftest import FOUR_TASKS, save_model
    from mtnlp import cli, export

    model = save_model(tmp_path / "model", tiny_encoder, FOUR_TASKS)

    def disk_full(model, tokenizer, task, out):
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "export_folder", disk_full)
    assert cli.main(["export", str(model), "--task", "sentiment", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "error: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    monkeypatch.undo()
    assert cli.main(["export", str(model), "--task", "sentiment", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]
    # into an existing empty folder, here the current one (no rename can replace it): its entries are the export's;
    # what an export killed there left (its .tmp-export-PID) does not make it "not empty"
    (tmp_path / "here" / ".tmp-export-1").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here")
    assert cli.main(["export", str(model), "--task", "sentiment", "."]) == 0
    exported = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert sorted(p.name for p in (tmp_path / "here").iterdir() if p.name != ".tmp-export-1") == exported
    # a folder written to during the export (another export into it): nothing is moved over its files
    (tmp_path / "busy").mkdir()
    real = export.export_folder

    def and_another(model, tokenizer, task, out):
        (out.parent / "config.json").write_text("another export's")
        return real(model, tokenizer, task, out)

    monkeypatch.setattr(export, "export_folder", and_another)
    capsys.readouterr()
    assert cli.main(["export", str(model), "--task", "sentiment", str(tmp_path / "busy")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"error: export: {tmp_path / 'busy'} was written to during the "
                                                        "export; nothing of it was kept")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["config.json"]


def test_recipes_copy_finds_a_method_recipe_by_its_short_name(tmp_path):
    from mtnlp import cli

    assert cli.main(["recipes", "copy", "lora", str(tmp_path)]) == 0
    assert "sharing: lora" in (tmp_path / "lora.yaml").read_text()
