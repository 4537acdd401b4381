"""What a folder holds (an mtnlp model, its ONNX export, a training run), told from its files without
importing torch: `mtnlp push` needs no more, and a wrong folder is refused at once. And how folders are
written safely: a run's lock on its folder, and a temporary folder that a failed write removes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from .encoders import not_an_encoder, url_problem
from .errors import NotFound, UserError, causes, first_line, lfs_pointer

# what a run writes in its output_dir, and a new run there (overwrite_output_dir) removes
RUN_OUTPUTS = ("checkpoints", "model", "metrics.json", "curves.png", "history.jsonl", "train_log.jsonl")

MODEL_TYPE = "mtnlp"  # config.json's model_type (MultiTaskConfig.model_type)
ONNX_FILE = "model.onnx"  # what `mtnlp export --onnx` writes beside the config and tokenizer
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # its graph's inputs, which no output may be named
STATE_FILE = "trainer_state.json"  # a checkpoint's, written last: a folder with it is complete
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt")  # what load_checkpoint reads beside the state
# the weights files transformers loads a pretrained model from (one file, or shards and their index)
ENCODER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def weights_readable_as_umask(folder) -> None:
    """Give the weights files in `folder` the mode the umask gives any new file. transformers 5 saves them
    through a temporary file, mode 0600 whatever the umask: another user (e.g. a server's) could not read them."""
    mask = umask()
    for path in Path(folder).glob("*.safetensors"):
        path.chmod(0o666 & ~mask)


@contextmanager
def writing(tmp: Path):
    """Around writing the temporary folder `tmp`: a failure removes it (on a full disk it would hold the space a
    retry needs) and, when the disk is full, is an OSError that says so (torch writes `unexpected pos 11328 vs
    11220`, safetensors an error of its own)."""
    try:
        yield
    except BaseException as e:
        full = isinstance(e, Exception) and not isinstance(e, UserError) and (says_disk_full(e) or disk_full(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        if full and not (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp.parent)) from e
        raise


def says_disk_full(error: Exception) -> bool:
    """Whether a library's error is the OS's "no space" (safetensors: `No space left on device (os error 28)`):
    safetensors checks that a file fits before writing, so the disk may still have room for a smaller one."""
    return any(f"(os error {code})" in str(e) for e in causes(error) for code in (errno.ENOSPC, errno.EDQUOT))


def disk_full(path: Path) -> bool:
    """Whether the file system `path` is on has less than 1 MiB left."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 1 << 20
    except OSError:
        return False


def umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread, until set back)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):  # not Linux
        mask = os.umask(0o22)
        os.umask(mask)
        return mask


LOCK_FILE = ".mtnlp-training.lock"
_held: dict[Path, object] = {}  # run folder -> its open lock file, held by this process


def hold_run_folder(run_dir: Path) -> Path | None:
    """Hold run_dir's lock until release_run_folder(the key returned) or the process ends: a second run training
    into the same folder (started beside this one, or overwriting it) is refused before it writes there. A lock
    of the kernel's (flock), so a killed run leaves none; held again by its own process it is a no-op."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return
    key = run_dir.resolve()
    if key in _held:
        return key
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # a file system without flock (some NFS,
            f.close()  # Lustre, FUSE mounts): train, unguarded
            import warnings

            warnings.warn(f"{run_dir}: cannot lock it ({e.strerror}): a second run started into it would not be "
                          "refused", stacklevel=2)
            return
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise UserError(f"{run_dir}: another run is training in this folder ({holder}): wait for it to end, "
                        "or choose another output_dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    _held[key] = f
    return key


def checkpoint_step(folder: Path) -> int:
    """The step of a checkpoint folder (checkpoints/step-000042)."""
    return int(folder.name.split("-")[1])


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """The complete checkpoint folders (with their STATE_FILE and CHECKPOINT_FILES) in `checkpoints`, oldest first."""
    return sorted((p for p in checkpoints.glob("step-*") if p.name.split("-")[1].isdigit() and (p / STATE_FILE).exists()
                   and not missing_checkpoint_files(p)), key=checkpoint_step)


def missing_checkpoint_files(folder: Path) -> list[str]:
    """The CHECKPOINT_FILES not in `folder` (save_checkpoint writes the state last, into a folder renamed when whole:
    a folder with its state and without them was made or copied by hand)."""
    return [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]


def checkpoint_state(folder: Path) -> dict:
    """A checkpoint folder's trainer state (its step, progress, batch plan, ...)."""
    path = folder / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a readable checkpoint state ({first_line(e)})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a readable checkpoint state (a JSON object expected)")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserError(f"{path}: not a readable checkpoint state (\"step\": a count of steps expected, got {step!r})")
    return state


def find_checkpoint(run_dir: Path, resume_from: str, where: str = "training.resume_from") -> Path:
    """The checkpoint folder `resume_from` names ("latest": the newest complete one in run_dir/checkpoints).
    `where` starts each error (the recipe's file:line and key)."""
    if resume_from != "latest":
        folder = Path(resume_from)
        if not folder.is_dir():
            raise UserError(f"{where}: {folder}: " + ("a file, not a checkpoint folder" if folder.exists()
                                                      else "checkpoint folder not found"))
        if not (folder / STATE_FILE).exists():
            steps = complete_checkpoints(folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder)
            newest = f": give one of its checkpoints, e.g. the newest, {steps[-1]}" if steps else ""
            raise UserError(f"{where}: {folder} is not a complete checkpoint (no {STATE_FILE}){newest}")
        if missing := missing_checkpoint_files(folder):
            raise UserError(f"{where}: {folder} is not a complete checkpoint (no {' or '.join(missing)} beside its "
                            f"{STATE_FILE})")
        return folder
    complete = complete_checkpoints(run_dir / "checkpoints")
    if not complete:
        folder = run_dir / "checkpoints"
        shown = folder if folder.is_absolute() else f"{folder.absolute()} (output_dir {run_dir}: from the current folder)"
        raise UserError(f"{where}: no complete checkpoint in {shown}")
    return complete[-1]


def model_step(folder: Path) -> int | None:
    """The training step of the model in `folder`, as its config.json says (None where it does not)."""
    try:
        step = json.loads((folder / "config.json").read_text(encoding="utf-8"))["mtnlp"]["step"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return step if isinstance(step, int) else None


def unfinished_run(run_dir: Path) -> str | None:
    """Why the run in run_dir has not finished, or None if it has: a process trains in it (holds its lock), or it
    stopped (interrupted, or killed) with no metrics.json of its last checkpoint's step."""
    try:
        import fcntl

        with open(run_dir / LOCK_FILE, encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: probes at once do not see each other
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return f"training now: {f.read().strip() or 'another process'}"
    except (ImportError, OSError):  # Windows, no lock file (an older run), a file system without flock
        pass
    steps = [checkpoint_step(p) for p in complete_checkpoints(run_dir / "checkpoints")]
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return "stopped before it finished: no metrics.json"
    trained = metrics.get("steps", {}).get("trained") if isinstance(metrics, dict) else None
    if isinstance(trained, int) and steps and max(steps) > trained:  # (older metrics.json: no steps trained)
        return f"resumed, and stopped at step {max(steps)} before it finished (its metrics.json is of step {trained})"
    kept = model_step(run_dir / "model")  # resumed, and stopped before a checkpoint: model/ is a later best one
    best = metrics.get("best_step") if isinstance(metrics, dict) else None
    if kept is not None and isinstance(best, int) and kept != best:
        return f"resumed, and stopped before it finished (its model/ is of step {kept}, its metrics.json of step {best})"
    return None


def release_run_folder(run_dir: Path | None) -> None:
    f = _held.pop(run_dir.resolve(), None) if run_dir is not None else None
    if f is not None:
        f.close()


def broken_link(path: Path) -> str | None:
    """What is wrong when `path`, or a folder above it, is a symbolic link that leads nowhere (a scratch disk not
    mounted, a target removed, a loop); None when none is."""
    for link in (path, *path.parents):
        if link.is_symlink() and not link.exists():
            try:
                link.resolve(strict=True)
                what = "which cannot be followed"
            except FileNotFoundError:
                what = "which does not exist"
            except RuntimeError:  # a loop, up to Python 3.12
                what = "a loop of symbolic links"
            except OSError as e:  # (Python 3.13: ELOOP for a loop)
                what = "a loop of symbolic links" if e.errno == errno.ELOOP else f"which cannot be followed ({e.strerror})"
            return f"{link} is a symbolic link to {os.readlink(link)}, {what}"
    return None


def is_onnx_folder(name) -> bool:
    return (Path(name).expanduser() / ONNX_FILE).is_file()


def refuse_run_folder(name) -> None:
    """A UserError when `name` is a run folder (its model is in model/) given where a model folder is expected."""
    path = Path(name).expanduser()
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        raise UserError(f"{name}: a run folder; give its model folder, {path / 'model'}")


def encoder_folder_problem(path: Path) -> str | None:
    """Why the folder `path` is no pretrained encoder (model.encoder) for a run, or None: a trained mtnlp model or
    run (model.init_from starts from those), a checkpoint, an ONNX export, a decoder or encoder-decoder model by its
    config.json, no config, no tokenizer, no weights or weights cut short (whether the weights fit the config is
    pretrained_encoder's to say: it needs transformers)."""
    start = "; to start from a trained mtnlp model, set model.init_from (model.encoder is a pretrained encoder)"
    if ((path / STATE_FILE).exists() or (path / "checkpoints").is_dir()) and not (path / "config.json").exists():
        return "a training checkpoint or run folder" + start  # (the Trainer's output folders have a config.json)
    if (path / "model" / "config.json").exists() and not (path / "config.json").exists():
        return f"a run folder: set model.init_from to start from its model, {path / 'model'}"
    if is_onnx_folder(path):
        return f"an ONNX export ({ONNX_FILE}), not a pretrained encoder"
    if not (path / "config.json").is_file():
        return "not a model folder (no config.json)"
    if pointer := lfs_pointers(path):
        return pointer
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        model_type = config.get("model_type")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError) as e:  # (nested too deeply)
        return f"cannot read its config.json: {first_line(e)}"
    if model_type == MODEL_TYPE:
        return "an mtnlp multi-task model" + start
    # what config.json says (that a model is causal without saying so, as GPT-2's, pretrained_encoder finds)
    if config.get("is_encoder_decoder") is True or config.get("is_decoder") is True:
        return not_an_encoder(model_type, encoder_decoder=config.get("is_encoder_decoder") is True)
    if not any(f.name.startswith("tokenizer") or "vocab" in f.name or f.suffix == ".model" for f in path.iterdir()):
        return "no tokenizer in it (tokenizer.json, tokenizer_config.json or a vocabulary file)"
    if not any((path / name).is_file() for name in ENCODER_WEIGHTS):
        return "no weights in it (model.safetensors or pytorch_model.bin)"
    if problem := safetensors_problem(path / "model.safetensors"):
        return f"model.safetensors: {problem}"
    return None


def check_multitask_config(name, config: dict) -> None:
    """A UserError unless `config` (config.json's contents) is an mtnlp multi-task model's, e.g. when the base
    encoder is given instead of a run's model/ folder, of task types this mtnlp knows."""
    if not config.get("model_type"):
        raise UserError(f"{name}: not an mtnlp model folder or hub repository (no config.json with a model_type)")
    if config["model_type"] != MODEL_TYPE:
        raise UserError(f"{name}: a {config['model_type']} model, not an mtnlp multi-task model "
                        "(give a run's model/ folder, or a repository `mtnlp push` wrote)")
    from .tasks import task_type

    for task, spec in (config.get("tasks") if isinstance(config.get("tasks"), dict) else {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("type"), str):  # (any other fault: loading says it)
            try:  # a type this mtnlp lacks (an extension's)
                task_type(spec["type"])
            except UserError as e:
                raise UserError(f"{name}: config.json: tasks.{task}.type: {e}") from None


def check_model_folder(model_dir: Path) -> None:
    """A UserError unless `model_dir` is an mtnlp multi-task model folder that loads: config, weights, tokenizer."""
    if model_dir.is_file():
        raise UserError(f"{model_dir}: a file, not a model folder (give the folder that holds it)")
    if not model_dir.is_dir():
        raise NotFound(f"{model_dir}: {url_problem(str(model_dir)) or 'model folder not found'}")
    if (model_dir / "model" / "config.json").exists() and not (model_dir / "config.json").exists() and \
            (why := unfinished_run(model_dir)):
        raise UserError(f"{model_dir}: a run that has not finished ({why}): finish it (training.resume_from), then "
                        "give its model folder")
    refuse_run_folder(model_dir)
    if (model_dir / STATE_FILE).exists() or (model_dir / "checkpoints").is_dir() and not (model_dir / "config.json").exists():
        run = model_dir.parent.parent
        if (model_dir / STATE_FILE).exists() and (run / "model" / "config.json").exists() and not unfinished_run(run):
            raise UserError(f"{model_dir}: a training checkpoint of a finished run: give its model folder, {run / 'model'}")
        raise UserError(f"{model_dir}: a training checkpoint, or a run that has not finished: finish it "
                        "(training.resume_from), then give its model folder")
    if is_onnx_folder(model_dir):
        raise UserError(f"{model_dir}: an ONNX export ({ONNX_FILE}), which cannot be loaded by hub id: push the "
                        "model folder it was exported from, or share this folder as plain files (hf upload)")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json)")
    if pointer := lfs_pointers(model_dir):
        raise UserError(f"{model_dir / pointer}")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"{model_dir / 'config.json'}: cannot read: {first_line(e)}") from None
    check_multitask_config(model_dir, config if isinstance(config, dict) else {})
    if (config.get("mtnlp") or {}).get("onnx"):
        raise UserError(f"{model_dir}: an ONNX export without its {ONNX_FILE}")
    missing = []
    if not any((model_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors (the weights)")
    elif problem := safetensors_problem(model_dir / "model.safetensors"):
        raise UserError(f"{model_dir / 'model.safetensors'}: {problem}")
    # tokenizer_config.json and the vocabulary: tokenizer.json (some tokenizers also load from vocab.* or *.model)
    vocabulary = [p for p in model_dir.iterdir() if p.name == "tokenizer.json" or p.name.startswith("vocab.")
                  or p.suffix == ".model"]
    if not (model_dir / "tokenizer_config.json").is_file() or not vocabulary:
        missing.append("tokenizer (tokenizer_config.json and tokenizer.json)")
    if missing:
        raise UserError(f"{model_dir}: not a complete model folder: no {', no '.join(missing)}")


def lfs_pointers(folder: Path) -> str | None:
    """The first file of a model folder left as a Git LFS pointer (a clone without git-lfs: config.json, the
    tokenizer's files, a sentencepiece .model), said as such; None when there is none."""
    for path in sorted(folder.iterdir()):
        try:
            what = "weights" if path.suffix in (".safetensors", ".bin") else "file"
            if path.is_file() and path.stat().st_size < 512 and (pointer := lfs_pointer(path.read_bytes(), what)):
                return f"{path.name}: {pointer}"
        except OSError:
            continue
    return None


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, read from its header without loading it (a file cut
    short by a full disk or an interrupted copy), or None."""
    if not path.is_file():  # sharded: model.safetensors.index.json
        return None
    size = path.stat().st_size
    try:
        length, header = safetensors_header(path)
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError) as e:
        return f"not a readable safetensors file ({first_line(e)})"
    if 8 + length + end != size:
        return f"cut short or damaged: {size:,} bytes, where its header describes {8 + length + end:,}"
    return None


def safetensors_header(path) -> tuple[int, dict]:
    """A safetensors file's header (tensor name -> dtype, shape, data_offsets) and its length in bytes, read
    without the tensors; a ValueError when it cannot be read."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if size < 8 or length > size - 8:
            raise ValueError("cut short: its header is longer than the file")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return length, header


def in_task_order(tasks: dict, order: list | None) -> dict:
    """config.json's tasks in its `task_order` (the recipe's: transformers writes config.json's keys sorted)."""
    return {name: tasks[name] for name in order} if order and sorted(order) == sorted(tasks) else dict(tasks)
