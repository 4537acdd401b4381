"""The command line answers --help, recipe mistakes and data-file mistakes without importing torch,
transformers or datasets (seconds of start-up): this guards it by making those imports fail."""

import subprocess
import sys
from pathlib import Path

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
