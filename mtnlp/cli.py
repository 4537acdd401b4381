"""Command line: `mtnlp train`, `evaluate`, `predict`, `serve`, `push`, `export` and `recipes` (`mtnlp --help`).

A user's mistake (UserError) prints one line, `error: ...`, and exits with status 2; a full disk or a
folder that cannot be written one line and status 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import UserError, first_line, require

RANK_ERROR_DELAY = 5.0  # seconds a process of rank > 0 waits before it reports a mistake (guarded)
# what to lower when a command runs out of memory (a GPU's, most often)
OUT_OF_MEMORY = {
    "train": "lower training.batch_size or training.eval_batch_size (training.grad_accum keeps the rows per update) "
             "or model.max_length, or set training.gradient_checkpointing: true",
    "evaluate": "lower training.eval_batch_size=N or model.max_length=N",
    "predict": "lower --batch-size",
}


class Parser(argparse.ArgumentParser):
    """An option mistake is one line `error: <option>: <what>; see <command> --help` (no usage above it), status
    2, as every other user mistake."""

    argv: list[str] = []  # the command line main() parses

    def error(self, message):
        message = message.removeprefix("argument ")
        if found := re.fullmatch(r"(-[\w/-]+): expected one argument", message):
            flags = found[1].split("/")
            after = [value for option, value in zip(self.argv, self.argv[1:]) if option in flags]
            if after and after[-1].startswith("-") and after[-1] not in self._option_string_actions:  # `--tasks -neg`
                message += f" (a value that starts with '-' is written {max(flags, key=len)}=VALUE)"
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def precision_option(value: str) -> str:
    """--precision: the spellings a recipe's training.mixed_precision and the pipeline take (spec.precision_name)."""
    from .spec import precision_name

    try:
        return precision_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


PRECISION_METAVAR = "{auto,bf16,fp16,fp32,no}"  # (any case: spec.PRECISION_SPELLINGS)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="mtnlp", description="Multi-task fine-tuning of one shared encoder.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"mtnlp {__version__}")
    debug = argparse.ArgumentParser(add_help=False)  # --debug also after the command
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True)
    parsers = {}

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parsers[name] = commands.add_parser(name, help=help, parents=[debug])
        return parsers[name]

    p = command("train", help="train the tasks of a recipe")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="dotted overrides, e.g. training.lr=3e-5")

    p = command("evaluate", help="evaluate a trained model on a recipe's tasks")
    p.add_argument("model", help="model directory (a run's model/ folder) or hub id")
    p.add_argument("recipe", help="recipe YAML file naming the tasks' data")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="dotted overrides of the recipe, e.g. model.max_length=256")
    p.add_argument("--split", default="validation", choices=["train", "validation", "test"],
                   help="the split to evaluate (default: validation)")
    p.add_argument("--tasks", help="comma-separated task names of the recipe (default: all)")
    p.add_argument("--output", help="JSON file for the metrics (default: MODEL/eval-SPLIT.json; for a hub id, "
                   "./eval-SPLIT.json)")
    p.add_argument("--precision", type=precision_option, metavar=PRECISION_METAVAR,
                   help="as for predict (default: the recipe's training.mixed_precision)")
    p.add_argument("--per-label", action="store_true",
                   help="also print each label's precision, recall, F1 and support (always in the JSON file)")
    p.add_argument("--revision", help="hub branch, tag or commit")

    p = command("predict", help="every head's predictions for texts, as JSON lines")
    p.add_argument("model", help="model directory or hub id")
    p.add_argument("texts", nargs="*", default=[], metavar="TEXT",
                   help="texts to predict, or --input (a text that starts with - goes after --)")
    p.add_argument("--tasks", help="comma-separated task names (default: all heads)")
    p.add_argument("--input", help="JSON lines file with {\"text\": ...} per line (or a JSON string, a pair "
                   "{\"text\", \"text_pair\"}, a multiple-choice {\"text\", \"choices\"}, a QA {\"question\", "
                   "\"context\"}, a text split into words {\"words\": [...]}), - for stdin")
    p.add_argument("--output", help="write JSON lines here instead of stdout (-: stdout)")
    p.add_argument("--all-scores", action="store_true", help="include every label's probability")
    p.add_argument("--batch-size", type=int, default=32,
                   help="sequences per encoder pass (default: 32; a multiple-choice input is one per choice)")
    p.add_argument("--precision", default="auto", type=precision_option, metavar=PRECISION_METAVAR,
                   help="auto (default): bf16 where the hardware runs it natively, else fp32 (fp16 on GPUs without bf16)")
    p.add_argument("--revision", help="hub branch, tag or commit")

    p = command("push", help="upload a model folder to a Hugging Face hub (one commit)")
    p.add_argument("model", help="model directory, e.g. runs/demo/model")
    p.add_argument("repo_id", help="e.g. my-org/my-model")
    p.add_argument("--private", action="store_true", help="a private repo (an existing public one is made private)")
    p.add_argument("--revision", help="branch to push to (created if missing)")
    p.add_argument("--token", help="hub token (default: HF_TOKEN or the saved login)")

    p = command("recipes", help="list the packaged recipe scripts and configs, or copy one to edit")
    p.add_argument("action", choices=["list", "copy"])
    p.add_argument("name", nargs="?", help="copy: a name from `mtnlp recipes list`, e.g. multitask or demo.yaml")
    p.add_argument("dest", nargs="?", help="copy: the file to write, or a folder to write it into (default: the "
                   "name, in the current folder)")

    p = command("export", help="write one head as a plain transformers model, the encoder alone (--encoder), or "
                "the heads as ONNX")
    p.add_argument("model", help="model directory or hub id")
    p.add_argument("--task", action="append", help="the head to export (with --onnx: default every head; "
                   "repeat it for several; with --encoder: the task whose encoder, default the first)")
    p.add_argument("--encoder", action="store_true", help="the encoder alone, as a plain transformers base model "
                   "(AutoModel) with the tokenizer")
    p.add_argument("--tasks", help="comma-separated heads, as --task repeated (as predict and serve take them)")
    p.add_argument("--onnx", action="store_true", help="one ONNX graph of the heads (predict and serve run it)")
    p.add_argument("--quantize", choices=["int8"], help="with --onnx: dynamic int8 quantisation of the weights")
    p.add_argument("--revision", help="hub branch, tag or commit")
    p.add_argument("out", help="output folder: new or empty (export never overwrites)")

    p = command("serve", help="serve the model's heads over HTTP: POST /predict, GET /health, GET /info")
    p.add_argument("model", help="model directory or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000; 0 picks a free port (the address is printed)")
    p.add_argument("--tasks", help="comma-separated task names to serve (default: all heads)")
    p.add_argument("--precision", default="auto", type=precision_option, metavar=PRECISION_METAVAR,
                   help="as for predict")
    p.add_argument("--revision", help="hub branch, tag or commit")
    p.add_argument("--batch-size", type=int, default=32,
                   help="sequences per encoder pass (default: 32; a multiple-choice input is one per choice)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="inputs of concurrent requests collected into one pipeline call (default: 64)")
    p.add_argument("--batch-window-ms", type=float, default=5.0,
                   help="how long the first queued request waits for others to share its call, 0 to 10000 (default: 5)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413 (default: 1048576, 1 MiB)")
    p.add_argument("--max-inputs", type=int, default=256,
                   help="inputs in one request, counting each choice of a multiple-choice input and each window of a "
                        "QA input's context (default: 256)")
    p.add_argument("--max-chars", type=int, default=10_000, help="characters in one text (default: 10000)")
    p.add_argument("--max-queue", type=int, help="inputs waiting for the model; a request that would exceed it "
                                                 "gets 503 (default: 4 x --max-inputs, 1024)")
    p.add_argument("--access-log", action="store_true", help="log every request")

    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    late = {"predict": "texts", "evaluate": "overrides", "train": "overrides"}.get(args.command)
    before, after = (extra[:extra.index("--")], extra[extra.index("--") + 1:]) if "--" in extra else (extra, [])
    if extra and late and not any(a.startswith("-") for a in before):
        # after an option: `predict MODEL --tasks a,b "some text"`, `evaluate MODEL RECIPE --split test k=v`,
        # `train RECIPE k=v --debug k=v`; after `--`, a text that starts with "-"
        getattr(args, late).extend(before + after)
    elif extra:
        dashed = [a for a in before if a.startswith("-")]
        option = len(dashed) == 1 and re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", dashed[0])
        hint = ""
        if late == "overrides" and dashed:  # `mtnlp train R.yaml --lr 1e-4`, as the Trainer's scripts take it
            import difflib

            options = [o for o in parsers[args.command]._option_string_actions if o.startswith("--")]
            close = difflib.get_close_matches(dashed[0].split("=")[0], options, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else f" ({recipe_key_hint(dashed[0], args.command)})"
        elif late == "texts" and len(dashed) == 1 and not option:
            hint = " (a text that starts with '-' goes after --)"
        parsers[args.command].error(f"unrecognized arguments: {' '.join(dashed or extra)}{hint}")
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "push": cmd_push,
                "recipes": cmd_recipes, "export": cmd_export, "serve": cmd_serve}
    launched = all(name in os.environ for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR"))  # (not a leftover WORLD_SIZE)
    if launched and os.environ.get("WORLD_SIZE", "1") != "1" and args.command != "train":
        if os.environ["RANK"] != "0":  # each process would do it all (print, write, serve) once more
            return 2  # (the first process says why)
        return guarded(lambda: launched_error(args.command), args.debug, args.command)
    return guarded(lambda: commands[args.command](args), args.debug, args.command)


def launched_error(command: str):
    raise UserError(f"mtnlp {command} runs in one process, on the machine's accelerator: run it without a launcher "
                    "(accelerate launch, torchrun); only train runs in several")


def recipe_key_hint(option: str, command: str = "train") -> str:
    """What to give instead of an option that names a setting (`--lr`, `--batch-size`): its recipe key."""
    from .recipe import ModelSpec, MTLSpec, Recipe, SamplingSpec, TrainingSpec

    name = option.lstrip("-").split("=")[0].replace("-", "_")
    name = {"learning_rate": "lr", "max_steps": "steps", "per_device_train_batch_size": "batch_size",
            "gradient_accumulation_steps": "grad_accum", "output": "output_dir"}.get(name, name)
    if command == "evaluate" and name in ("batch_size", "per_device_eval_batch_size"):
        name = "eval_batch_size"  # what evaluate reads
    if name == "tasks":  # a section of its own, not one value
        name = ""
    for section, spec in (("training", TrainingSpec), ("model", ModelSpec), ("sampling", SamplingSpec), ("mtl", MTLSpec)):
        if name in spec.model_fields:
            return f"settings are recipe keys, given as key=value: {section}.{name}=VALUE"
    if name in Recipe.model_fields:
        return f"settings are recipe keys, given as key=value: {name}=VALUE"
    return "settings are recipe keys, given as key=value, e.g. training.lr=3e-5"


def run_recipe(train, argv: list[str] | None = None) -> int:
    """The command line of a recipe script: `python SCRIPT.py --config RECIPE.yaml [key=value ...]`
    does what `mtnlp train RECIPE.yaml [key=value ...]` does, with the script's `train`."""
    parser = Parser(description=(sys.modules["__main__"].__doc__ or "").split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe YAML file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. training.lr=3e-5")
    args = parser.parse_intermixed_args(argv)  # overrides before, between and after the options
    args.recipe = args.config
    return guarded(lambda: train_recipe(train, args), args.debug, "train")


def launcher_rank() -> int:
    """This process's rank under torchrun or accelerate launch (0 without one)."""
    return int(os.environ.get("RANK", "0"))


def close_progress_bars() -> None:
    """A mistake met during training (a bad row of a streamed split) would be printed at the end of the
    progress bar's line: closing the bar ends its line."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()


@contextlib.contextmanager
def naming_output(name: str):
    """A write error without a file name (e.g. `> /dev/full`) names what was written, `name`; a reader that closed
    the pipe (BrokenPipeError) goes on as it is."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        e.filename = e.filename or name
        raise


class TrainingOutput:
    """Standard output or error for a training run: a reader that goes away (`mtnlp train ... | head`, `2>&1 | less`
    quit) must not end the run at its next line, with no model and no checkpoint. What is printed there then goes
    nowhere, said once on the other stream."""

    def __init__(self, stream, name: str):
        self.stream, self.name, self.closed = stream, name, False
        self.bar_line = False  # whether the last line written is a progress bar's, not ended (tqdm redraws it after \r)

    @property
    def wrapped(self):
        return self.stream

    def write(self, text: str) -> int:
        # a warning met while the progress bar's line is open (a log file or a pipe keeps it): on a line of its own
        shown = "\n" + text if self.bar_line and text and not text.startswith(("\r", "\n")) else text
        if shown:  # tqdm starts its lines with \r; a cleared one (tqdm.write, leave=False) ends with \r, and is empty
            last = shown.rsplit("\n", 1)[-1]
            self.bar_line = last.startswith("\r") and not last.endswith("\r")
        try:
            self.stream.write(shown)
            return len(text)
        except BrokenPipeError:
            self.gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.gone()

    def gone(self) -> None:
        if self.closed:
            return
        self.closed = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())  # what the buffer holds is dropped there
        with contextlib.suppress(OSError):
            self.stream.flush()
        other = sys.stdout if self.name == "error" else sys.stderr  # (both closed, 2>&1: it goes nowhere too)
        with contextlib.suppress(OSError, AttributeError):  # (AttributeError: stderr None)
            print(f"warning: standard {self.name} was closed by its reader: training goes on, printing nothing more "
                  "there", file=other, flush=True)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def guarded(command, debug: bool, name: str = "") -> int:
    """Run the command `name`: a user's mistake is one `error:` line and exit status 2, what the machine lacks
    (disk, memory) one line and status 1, a signal 128 + its number."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"  # one line, no source
    for stream in (sys.stdout, sys.stderr):  # e.g. PYTHONIOENCODING=ascii: a label or a dash it cannot encode
        if stream is not None and not writes_unicode(stream):  # must not fail a run that is done
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(errors="backslashreplace")
    if sys.stdout is None:  # started with stdout closed (`>&-`): what is printed goes nowhere
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    stdout, stderr = sys.stdout, sys.stderr
    if name == "train":
        sys.stdout = TrainingOutput(stdout, "output")
        if stderr is not None:  # (None: started with it closed, `2>&-`)
            sys.stderr = TrainingOutput(stderr, "error")
    try:
        status = command()
        with naming_output("standard output"):
            sys.stdout.flush()  # a reader that closed the pipe is met here, not in Python's flush at exit
        return status
    except UserError as e:
        if debug:
            raise
        if launcher_rank() > 0:
            # under a launcher (torchrun, accelerate launch) every process meets the same recipe mistake: the
            # first says it, and the launcher stops the others; one that is still running has a mistake of its own
            time.sleep(RANK_ERROR_DELAY)
        close_progress_bars()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mtnlp predict ... | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's own flush at exit would fail too)
        return 128 + getattr(signal, "SIGPIPE", 13)  # (Windows has no SIGPIPE)
    except OSError as e:  # the machine's (a full disk, a read-only or forbidden folder, EIO), or a path the user gave
        machine = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
        if debug or not (machine or e.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR)):
            raise
        close_progress_bars()
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1 if machine else 2
    except (RuntimeError, MemoryError) as e:
        if not debug and processes_timed_out(e):
            close_progress_bars()
            print(f"error: the processes waited for each other longer than training.ddp_timeout ({first_line(e)}): "
                  "raise it (the first process reads and tokenises the data while the others wait), or look for a "
                  "process that stopped", file=sys.stderr)
            return 1
        if debug or not out_of_memory(e):
            raise
        close_progress_bars()
        said = re.sub(r"^\[enforce fail at [^]]*\] err == 0\. ", "", first_line(e))  # where in torch's C++ it was met
        said = said if len(said) <= 160 else said[:157] + "..."  # CUDA's runs on with advice on its allocator
        print(f"error: out of memory ({said}): {OUT_OF_MEMORY.get(name, 'free memory or use a larger machine')}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # training stopped after a step (train.Interrupted) has said where its checkpoint is
        signum = getattr(e, "signum", signal.SIGINT)
        if not hasattr(e, "signum") and launcher_rank() == 0:  # said once under a launcher
            print("interrupted", file=sys.stderr)
        return 128 + signum
    finally:
        if name == "train":  # (a notebook or a test goes on with its own)
            sys.stdout, sys.stderr = stdout, stderr


def writes_unicode(stream) -> bool:
    """Whether `stream` encodes every character (UTF-8, UTF-16, ...)."""
    return (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-").startswith("utf")


def processes_timed_out(error: BaseException) -> bool:
    """Whether `error` is a launched process's wait for the others running out (gloo's "Timed out waiting ...", a
    store's or a backend's timeout); NCCL's watchdog ends the process instead."""
    torch = sys.modules.get("torch")
    launched = torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized()
    return launched and ("timed out" in str(error).lower() or "timeout" in type(error).__name__.lower())


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says that memory ran out: a GPU's (torch.OutOfMemoryError), the CPU allocator's, Python's."""
    torch = sys.modules.get("torch")  # (not imported: the error is not torch's)
    return isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.OutOfMemoryError)) \
        or "DefaultCPUAllocator: can't allocate memory" in str(error)


def quiet_libraries(with_datasets: bool = True) -> None:
    """Import the heavy libraries (seconds) and silence their progress bars: each command calls it
    after the checks that need no torch, so a recipe mistake is reported at once."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if with_datasets:  # predict, serve and export never read a data set
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()


def first_sentence(text: str, limit: int = 110) -> str:
    """The first sentence of a recipe's opening comment or docstring, on one line of at most `limit` characters."""
    paragraph = text.strip('"# \n').split("\n\n")[0]
    words = " ".join(line.strip(' #"') for line in paragraph.splitlines() if line.strip(' #"'))
    sentence = re.split(r"(?<!et al)\.\s", words)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[:limit - 3].rsplit(" ", 1)[0] + "..."


def requested_tasks(value: str | None, available: list[str], holder: str = "the model") -> list[str] | None:
    """--tasks a,b as a list (None: every task), each one `available` has."""
    if value is None:
        return None
    if "" in value.split(","):  # `--tasks ""`, `a,,b`, `a,`
        raise UserError(f"--tasks {value!r}: an empty task name; give names separated by commas, or leave --tasks "
                        "out for every task")
    tasks = list(dict.fromkeys(value.split(",")))
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise UserError(f"--tasks: {holder} has no task {unknown[0]!r} (it has: {', '.join(available)})"
                        + spaces_hint(unknown[0], available))
    return tasks


def spaces_hint(name: str, available) -> str:
    return f"; spaces count in a task name: {name.strip()!r} is one" if name.strip() in available else ""


def output_path(path: str, flag: str) -> Path:
    """A file to write results to, checked before any work: its folder exists and it is not a folder."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name a file")
    if not out.parent.is_dir():
        raise UserError(f"{flag} {path}: folder {out.parent} does not exist")
    return out


def cmd_train(args) -> int:
    return train_recipe(None, args)


def train_recipe(train, args) -> int:
    """Check the recipe and read the data (errors at once, before the heavy imports), then train with
    `train` (default: the loop of recipes/multitask.py)."""
    from .data import read_task_unless_cached
    from .recipe import check_training_paths, load_recipe, refuse_to_mix, run_directory

    with warnings.catch_warnings():
        if launcher_rank() != 0:  # the recipe's warnings once, not once per process (as its errors are)
            warnings.simplefilter("ignore")
        recipe = load_recipe(args.recipe, args.overrides)
    check_training_paths(recipe)
    if not recipe.training.resume_from:  # before the data is read (a resumed run is checked by setup)
        refuse_to_mix(run_directory(recipe), recipe)
    # data errors at once; files read and checked before are not re-read. Under DDP only the first
    # process reads: it fills the cache, which the others then memory-map (no Python copy each)
    first = launcher_rank() == 0
    raw = {name: read_task_unless_cached(recipe, name, spec) for name, spec in recipe.tasks.items()} if first else {}
    quiet_libraries()
    if train is None:
        from .recipes.multitask import train

    result = train(recipe, raw)
    if result.accelerator.is_main_process:
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from .recipe import default_metrics, load_recipe

    if args.output == "-":  # (predict's `--output -` is standard output, its default)
        raise UserError("--output -: evaluate prints its table on standard output; give a file for the JSON")
    recipe = load_recipe(args.recipe, args.overrides, training=False)
    wanted = requested_tasks(args.tasks, list(recipe.tasks), recipe.source)
    output = output_path(args.output, "--output") if args.output else None
    quiet_libraries()
    from . import families, precision
    from .data import load_task, present_splits
    from .evaluation import evaluate_split
    from .report import finite, label_table, table
    from .tasks import task_type

    model, tokenizer = load_model(args.model, revision=args.revision)
    from .pipeline import default_device

    onnx = hasattr(model, "session")  # an ONNX folder: onnxruntime on the CPU, fp32
    if not onnx:
        model.to(default_device(cpu=recipe.training.cpu))
    # the length the model was trained with, unless the evaluation recipe sets one (as predict and the pipeline)
    trained = (model.config.mtnlp or {}).get("max_length")
    max_length = recipe.model.max_length if "model.max_length" in recipe.key_lines or not trained else trained
    limit = families.max_tokens(model.config.encoder)
    if limit is not None and max_length > limit:
        raise UserError(f"{recipe.where('model.max_length')}: model.max_length: {max_length} is more than the "
                        f"encoder's position embeddings hold ({limit})")
    if trained and max_length != trained:  # the scores then are of another reading than training's
        print(f"reading at max_length {max_length} (the recipe's model.max_length); the model was trained at {trained}")
    tasks, metrics, without = {}, {}, []
    for name in wanted or recipe.tasks:  # in the order --tasks gives them, as predict, serve and export answer
        spec = recipe.tasks[name]
        if name not in model.config.tasks:
            raise UserError(f"{recipe.where(f'tasks.{name}')}: tasks.{name}: the model has no such task "
                            f"(it has: {', '.join(model.config.tasks)})")
        head = model.config.tasks[name]
        if head["type"] != spec.type:
            raise UserError(f"{recipe.where(f'tasks.{name}.type')}: tasks.{name}.type: {spec.type}, but the model's "
                            f"head is {head['type']}")
        if not present_splits(spec, (args.split,)):
            without.append(name)
            continue
        used = task_type(head["type"]).evaluated_as(recipe, name, head, max_length)  # before load_task (QA windows)
        tasks[name] = load_task(recipe, name, spec, tokenizer, max_length, splits=(args.split,),
                                labels=head["labels"])
        if args.split not in tasks[name].splits:  # a streamed training split is only read by training
            raise UserError(f"{recipe.where(f'tasks.{name}.data.streaming')}: tasks.{name}.data: the {args.split} "
                            "split is streamed, which only training reads: evaluate a validation or test split")
        recorded = (model.config.mtnlp or {}).get("metrics", {}).get(name)  # what training scored it by
        metrics[name] = default_metrics(recipe, name, head["labels"], recorded)
        if used != head:  # e.g. another multi-label threshold than training's: not the model's tuned ones
            model.config.tasks[name] = used
            differ = [key for key in used if key in head and used[key] != head[key]]
            changed = ", ".join(f"{key} {used[key]}" for key in differ if used[key] is not None)
            dropped = ", ".join(key for key in differ if used[key] is None)  # e.g. tune_thresholds: false
            print(f"{name}: " + (f"{changed} from the recipe, instead of the model's" if changed else "")
                  + ("; " if changed and dropped else "")
                  + (f"the model's {dropped} not used (tasks.{name} in the recipe)" if dropped else ""))
    if not tasks:
        other = [split for split in ("validation", "test") if split != args.split and any(
            present_splits(recipe.tasks[name], (split,)) for name in wanted or recipe.tasks)]
        raise UserError(f"{recipe.where('tasks')}: no task has a {args.split} split (tasks.NAME.data.{args.split})"
                        + (f": give --split {other[0]} for the {other[0]} split" if other else ""))
    if without:
        print(f"not evaluated (no {args.split} split): {', '.join(without)}")
    requested = args.precision or recipe.training.mixed_precision
    chosen = precision.for_onnx(requested, model.quantize) if onnx else precision.for_model(requested, model)
    print(chosen.describe())
    if chosen.warning:
        option = "--precision" if args.precision else "training.mixed_precision"
        warnings.warn(f"{option}: {chosen.warning}", stacklevel=1)
    if output is None:  # beside the model (a hub id's: here); said now, not after the evaluation
        output = Path(args.model) / f"eval-{args.split}.json" if Path(args.model).is_dir() else Path(f"eval-{args.split}.json")
        if not os.access(output.parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
            raise UserError(f"{output}: cannot write the results here (a read-only folder?): give --output FILE")
    by_label = {}
    results = evaluate_split(model, tokenizer, tasks, metrics, args.split, recipe.training.eval_batch_size,
                             chosen.autocast, say=lambda note: warnings.warn(note, stacklevel=1), by_label=by_label)
    try:  # before the table: a reader that closes stdout (| head) must not cost the results
        output.write_text(json.dumps(finite({"tasks": {n: {args.split: v} for n, v in results.items()},  # NaN: null
                                             "per_label": {n: {args.split: v} for n, v in by_label.items()},
                                             "precision": chosen.as_dict(), "max_length": max_length}),
                                     indent=2, allow_nan=False, ensure_ascii=False), encoding="utf-8")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # the machine's, as anywhere: status 1
            raise OSError(e.errno, e.strerror, str(output)) from None
        raise UserError(f"{output}: cannot write: {e.strerror}") from None
    print(table({name: {args.split: values} for name, values in results.items()}))
    if args.per_label:
        print("\n" + label_table(by_label))
    print(f"wrote {output}")
    return 0


def load_model(name: str, **hub_kwargs):
    """(MultiTaskModel, tokenizer) from a folder or hub id; a clear UserError when it is not one."""
    from .pipeline import load_pretrained

    return load_pretrained(name, **hub_kwargs)


def input_lines(path: str) -> list[tuple]:
    """(input, "FILE:LINE", the line's object) per non-empty line. An object that a task type takes as
    its own input (TaskType.accepts) is passed on whole (the type ignores other keys, e.g. ids and gold
    labels; check_takers has the type check it, in line order with the other lines' checks); of other
    objects, "text" and "text_pair" are the input. The line's object (a string: {"text": it}) is what
    predict echoes, ids and all."""
    from .readers import CTRL_Z, CTRL_Z_ENDS, JSON, bad_byte, file_lines, json_error
    from .tasks import TASK_TYPES
    from .tasks.base import text_input_problem

    fix = "JSON Lines are UTF-8: convert the file (e.g. iconv -f cp1252 -t utf-8 for a file from Windows)"
    bom_fix = "JSON Lines are UTF-8: convert the file (e.g. iconv -f {wide} -t utf-8)"
    name = "standard input" if path == "-" else path
    if path == "-":
        if sys.stdin is None:  # started with standard input closed (`<&-`, some daemons and cron wrappers)
            raise UserError("--input -: standard input is closed: give --input FILE, or pipe the lines in")
        data = sys.stdin.buffer.read()
        try:
            lines = re.split(r"\r\n|\r|\n", data.decode("utf-8").removeprefix("\ufeff"))  # as file_lines splits
        except UnicodeDecodeError:
            raise UserError(bad_byte(name, "utf-8", fix, data, bom_fix=bom_fix)) from None
        if lines and "".join(lines[-2:]).rstrip("\r\n").endswith(CTRL_Z):
            raise UserError(f"{name}:{len(lines) - (lines[-1] == '')}: {CTRL_Z_ENDS}")
    else:
        lines = list(file_lines(Path(path), "utf-8", fix=fix, bom_fix=bom_fix, refuse_html=True))
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = JSON.decode(line)  # strict: NaN and Infinity are no JSON, and predict would echo them
        except (ValueError, RecursionError) as e:  # ValueError: also NaN, 1e400 and an int of over 4,300 digits
            plain = getattr(e, "msg", None) in ("Expecting value", "Extra data") and not line.lstrip().startswith(
                ("{", "[", "\ufeff"))
            hint = "; a line is JSON: a text is a JSON string (plain text lines: jq -R . FILE | mtnlp predict MODEL " \
                   "--input -)" if plain else ""  # a line of plain text: the likeliest mistake
            raise UserError(f"{name}:{number}: invalid JSON: {json_error(e, line)}{hint}") from None
        if isinstance(item, dict) and "predictions" in item:  # the output line's key: its value would be lost
            raise UserError(f"{name}:{number}: the line has a \"predictions\" key, which predict writes its answers "
                            "under: rename or drop it (e.g. jq -c 'del(.predictions)')")
        own = [kind for kind in TASK_TYPES.values() if kind.accepts(item)]
        line_object = item if isinstance(item, dict) else {"text": item}
        if isinstance(item, dict) and "words" in item and not own:  # a text split into words (the tagging heads')
            if "text" in item or "text_pair" in item:
                raise UserError(f"{name}:{number}: \"words\" beside \"text\": a line is a text or a text split into "
                                "words, not both")
            item = {"words": item["words"]}
            if problem := text_input_problem(item):
                raise UserError(f"{name}:{number}: {problem[0].lstrip('.')}: {problem[1]}")
        elif isinstance(item, dict) and not own:  # keep a pair's text_pair; other keys (ids, gold labels) are only echoed
            item = {k: item[k] for k in ("text", "text_pair") if k in item}
            if not isinstance(item.get("text"), str) or not isinstance(item.get("text_pair", ""), str):
                forms = "".join(f", or {{{', '.join(map(json.dumps, kind.input_fields))}}} ({kind.name})"
                                for kind in TASK_TYPES.values() if kind.input_fields)
                raise UserError(f"{name}:{number}: expected a JSON string, an object with a \"text\" string "
                                f"(and, for a pair, a \"text_pair\" string), a text split into words "
                                f"{{\"words\": [...]}} (tagging){forms}")
            item = item if "text_pair" in item else item["text"]
        elif not isinstance(item, (str, dict)):
            raise UserError(f"{name}:{number}: expected a JSON string or an object with a \"text\" string")
        texts.append((item, f"{name}:{number}", line_object))
    if not texts:
        raise UserError(f"{name}: no inputs (no line that is not blank)")
    return texts


def check_takers(pipe, tasks: list[str] | None, inputs: list[tuple]) -> None:
    """Every (input, where) is read by some requested task, by each of --tasks if given
    (tasks.base.answering_tasks), before any is run: the first one that is not is the error."""
    from .tasks.base import answering_tasks, reads_text

    specs = {t: pipe.tasks[t] for t in tasks or pipe.tasks}
    pair_heads = any(reads_text(spec, pair=True) and not reads_text(spec, pair=False) for spec in specs.values())
    for value, where in inputs:
        try:
            answering_tasks(value, specs, every=bool(tasks))
        except ValueError as e:  # a TEXT argument is a single text: a pair head's input comes by --input
            pairs = pair_heads and isinstance(value, str) and where.startswith("TEXT")
            hint = ' (a pair: an --input line {"text": ..., "text_pair": ...})' if pairs else ""
            raise UserError(f"{where}: {e}{hint}") from None


PREDICT_CHUNK = 32  # batches of inputs per pipeline call in `mtnlp predict`: each call's results are written at once


def cmd_predict(args) -> int:
    given = [(text, f"TEXT argument {i}", {"text": text}) for i, text in enumerate(args.texts, 1)]
    given += input_lines(args.input) if args.input else []
    if not given:
        raise UserError("predict: give TEXT arguments or --input FILE.jsonl (- for stdin)")
    from .tasks.base import valid_unicode

    for text, where, line_object in given:
        if not valid_unicode([text, line_object]):  # (the line is echoed, its other keys too)
            raise UserError(f"{where}: holds a lone surrogate (an invalid \\u escape such as \\ud800, "
                            "or bytes that are not UTF-8)")
    if args.batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1 (got {args.batch_size})")
    output = output_path(args.output, "--output") if args.output not in (None, "-") else None  # -: standard output
    quiet_libraries(with_datasets=False)
    from .pipeline import MultiTaskPipeline, TruncationWarning, truncations

    model, tokenizer = load_model(args.model, revision=args.revision)
    pipe = MultiTaskPipeline(model, tokenizer, precision=args.precision, batch_size=args.batch_size)
    tasks = requested_tasks(args.tasks, pipe.tasks)
    check_takers(pipe, tasks, [(text, where) for text, where, _ in given])
    try:
        out = open(output, "w", encoding="utf-8") if output else sys.stdout
    except OSError as e:
        raise UserError(f"--output {output}: cannot write: {e.strerror}") from None
    print(pipe.precision.describe(), file=sys.stderr)  # (standard output is the JSON lines; a mistake: its one line)
    cut, chunk = [], PREDICT_CHUNK * args.batch_size
    with naming_output(str(output) if output else "standard output"), contextlib.ExitStack() as stack:
        if output:
            stack.enter_context(out)
        for start in range(0, len(given), chunk):  # written as they come: `| head`, a slow producer, Ctrl-C
            part = given[start:start + chunk]
            results, said = truncations(lambda: pipe([text for text, _, _ in part], tasks=tasks,
                                                     return_all_scores=args.all_scores))
            cut += [(w, [part[i][1] for i in w.indices]) for w in said]
            for (_, _, line_object), result in zip(part, results):
                out.write(json.dumps({**line_object, "predictions": result}, ensure_ascii=not writes_unicode(out))
                          + "\n")
            out.flush()
    if cut:  # said once, naming the lines and arguments cut
        effects = list(dict.fromkeys(effect for w, _ in cut for effect in w.effects))
        warnings.warn(TruncationWarning([], cut[0][0].max_length, effects).naming([n for _, names in cut for n in names]),
                      stacklevel=1)
    return 0


def cmd_push(args) -> int:
    from .hub import push  # huggingface_hub only: a push needs no torch

    url = push(args.model, args.repo_id, private=args.private, revision=args.revision, token=args.token)
    print(url)
    return 0


def cmd_recipes(args) -> int:
    """The recipe scripts and configs installed with mtnlp (recipes/ in the source tree)."""
    from importlib.resources import as_file, files

    from .recipe import installed_recipe, installed_recipes

    root, entries = files("mtnlp.recipes"), installed_recipes()
    if args.action == "list":
        if args.name:
            raise UserError(f"recipes list takes no arguments (got: {' '.join(filter(None, (args.name, args.dest)))})")
        for name in entries:
            text = root.joinpath(name).read_text(encoding="utf-8")
            print(f"{name:<34} {first_sentence(text)}")
        return 0
    if not args.name:
        raise UserError("recipes copy: name the recipe to copy (see `mtnlp recipes list`)")
    name = installed_recipe(args.name, entries)
    if name is None:
        raise UserError(f"recipes copy: no recipe '{args.name}' (there are: {', '.join(entries)})")
    dest = Path(args.dest or Path(name).name).expanduser()
    if args.dest and args.dest.endswith(("/", os.sep)) and not dest.is_dir():  # Path() drops the slash
        raise UserError(f"recipes copy: folder {args.dest} does not exist")
    if dest.is_dir():  # as cp does: into the folder
        dest = dest / Path(name).name
    if dest.exists():
        raise UserError(f"recipes copy: {dest} exists; name another file")
    if not dest.parent.is_dir():
        raise UserError(f"recipes copy: folder {dest.parent} does not exist")
    with as_file(root.joinpath(name)) as source:
        text = source.read_text(encoding="utf-8")
        if name.endswith(".yaml"):  # the copy reads the data where the packaged recipe does
            text = absolute_data_dir(text, source.parent)
    dest.write_text(text, encoding="utf-8")
    print(f"wrote {dest}")
    return 0


def absolute_data_dir(text: str, folder: Path) -> str:
    """A recipe's text with a relative `data_dir:` that exists beside `folder` made absolute."""
    def absolute(match):
        where = (folder / match.group(2)).resolve()
        quoted = json.dumps(str(where), ensure_ascii=False)  # a YAML string whatever the folder holds (" #", ": ")
        return f"{match.group(1)}{quoted}  # where the recipe read its data (made absolute by mtnlp recipes copy)" \
            if where.is_dir() else match.group(0)

    return re.sub(r"^(data_dir:\s*)([^\s#/~][^\s#]*).*$", absolute, text, count=1, flags=re.MULTILINE)


def cmd_export(args) -> int:
    if args.encoder and (args.onnx or args.quantize):
        raise UserError(f"export: --encoder writes a plain transformers base model; it takes no "
                        f"{'--onnx' if args.onnx else '--quantize'}")
    if args.quantize and not args.onnx:
        raise UserError("export: --quantize applies to --onnx")
    listed = args.tasks.split(",") if args.tasks is not None else []
    if "" in listed:
        raise UserError(f"--tasks {args.tasks!r}: an empty task name; give names separated by commas")
    args.task = list(dict.fromkeys((args.task or []) + listed)) or args.task
    if args.encoder and len(args.task or []) > 1:
        raise UserError(f"export --encoder: give at most one --task, the task whose encoder to write (default the "
                        f"first) ({len(args.task)} were given)")
    if not args.onnx and not args.encoder and len(args.task or []) != 1:
        raise UserError("export: give one --task NAME (a plain transformers model holds one head), or --onnx"
                        + (f" ({len(args.task)} heads were given)" if args.task else ""))
    out = Path(args.out).expanduser()
    from .folders import broken_link, is_onnx_folder, writing

    if problem := broken_link(out):
        raise UserError(f"export: {problem}")
    if out.exists() and not out.is_dir():
        raise UserError(f"export: {args.out} is a file; name a folder to write")
    def not_empty(ours=None) -> bool:  # (an export killed mid-way leaves its .tmp-export-PID: not counted)
        return out.is_dir() and any(p != ours and not p.name.startswith(".tmp-export-") for p in out.iterdir())

    if not_empty():  # the model's own folder, an earlier export, ...
        raise UserError(f"export: {args.out} is not empty; name a new or empty folder (export never overwrites)")

    if is_onnx_folder(args.model):
        raise UserError(f"export: {args.model} is an ONNX export; export reads a PyTorch model folder or hub id")
    if args.onnx:  # said before the model is loaded and exported
        for module in ("onnx", "onnxscript") + (("onnxruntime",) if args.quantize else ()):
            require(module, "onnx", f"export --onnx{' --quantize' if args.quantize else ''}")
    quiet_libraries(with_datasets=False)
    model, tokenizer = load_model(args.model, revision=args.revision)
    if unknown := [t for t in args.task or [] if t not in model.config.tasks]:
        flag = "--tasks" if unknown[0] in listed else "--task"
        raise UserError(f"{flag} {unknown[0]}: the model has no such task (it has: {', '.join(model.config.tasks)})"
                        + spaces_hint(unknown[0], model.config.tasks))
    # written to a temporary folder, then renamed: a full disk or a crash leaves no part of an export that blocks a
    # retry. Beside a new OUT; inside an existing (empty) one, whose entries it becomes: OUT may be the current
    # folder, or a mount point, which no rename replaces
    existing, full = out.is_dir(), out.resolve()
    tmp = out / f".tmp-export-{os.getpid()}" if existing else full.with_name(f".tmp-{full.name}-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with writing(tmp):
        if args.onnx:
            from .hub import onnx_card, read_card
            from .onnx_model import export_onnx

            export_onnx(model, tokenizer, tmp, args.task, args.quantize)
            card = onnx_card(read_card(args.model, args.revision), args.model, tmp, args.quantize, bool(args.task),
                             args.revision)
            (tmp / "README.md").write_text(card, encoding="utf-8")  # serve's /info shows the card's metrics
        elif args.encoder:
            from .export import export_encoder_folder

            export_encoder_folder(model, tokenizer, tmp, (args.task or [None])[0])
        else:
            from .export import export_folder

            export_folder(model, tokenizer, args.task[0], tmp)
        if existing:
            if not_empty(tmp):  # written to meanwhile (e.g. another export): os.replace would overwrite its files
                raise UserError(f"export: {args.out} was written to during the export; nothing of it was kept")
            for path in list(tmp.iterdir()):
                os.replace(path, out / path.name)
            tmp.rmdir()
        else:
            os.replace(tmp, out)
    if args.onnx:
        print(f"wrote {args.out} (ONNX{', int8' if args.quantize else ''}): mtnlp predict {shlex.quote(args.out)} ...")
        return 0
    print(f"wrote {args.out}")
    if args.encoder:
        from .export import encoder_load_kwargs

        given = "".join(f", {k}={v!r}" for k, v in encoder_load_kwargs(model, (args.task or [None])[0]).items())
        print(f"load it with AutoModel.from_pretrained({json.dumps(str(out), ensure_ascii=False)}{given})"
              + ("  (no head has a pooler: without add_pooling_layer=False a random one is added)" if given else ""))
        return 0
    from .tasks import task_type
    from .tasks.tagging import iobes_grouping_note

    if task_type(model.config.tasks[args.task[0]]["type"]).head_kind == "token":  # word pieces past the first are untrained
        print(f'use it with pipeline("token-classification", model={json.dumps(str(out), ensure_ascii=False)}, '
              'aggregation_strategy="first")')
        backend = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
        if type(backend).__name__ != "WordPiece":  # its words are not the tokenizer's: README, "Export"
            print("  (with this tokenizer transformers' pipeline takes a lone space token for a word: its spans differ "
                  "from mtnlp predict's, which reads the words as training did)")
        if note := iobes_grouping_note(model.config.tasks[args.task[0]]["labels"]):
            print(f"  ({note})")
    elif model.config.tasks[args.task[0]]["type"] == "multilabel":  # the pipeline's default: the top label alone
        print(f'use it with pipeline("text-classification", model={json.dumps(str(out), ensure_ascii=False)}, '
              'top_k=None) and keep the labels whose score is above their threshold (config.json: thresholds)')
    return 0


def cmd_serve(args) -> int:
    for module in ("fastapi", "uvicorn"):
        require(module, "serve", "serve")
    from . import serve

    return serve.run(args)


if __name__ == "__main__":
    sys.exit(main())
