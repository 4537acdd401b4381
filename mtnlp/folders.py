"""What a folder holds (an mtnlp model, its ONNX export, a training run), told from its files without
importing torch: `mtnlp push` needs no more, and a wrong folder is refused at once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import NotFound, UserError, first_line

# what a run writes in its output_dir, and a new run there (overwrite_output_dir) removes
RUN_OUTPUTS = ("checkpoints", "model", "metrics.json", "curves.png", "history.jsonl", "train_log.jsonl")

MODEL_TYPE = "mtnlp"  # config.json's model_type (MultiTaskConfig.model_type)
ONNX_FILE = "model.onnx"  # what `mtnlp export --onnx` writes beside the config and tokenizer
STATE_FILE = "trainer_state.json"  # a checkpoint's, written last: a folder with it is complete


def weights_readable_as_umask(folder) -> None:
    """Give the weights files in `folder` the mode the umask gives any new file. transformers 5 saves them
    through a temporary file, mode 0600 whatever the umask: another user (e.g. a server's) could not read them."""
    mask = umask()
    for path in Path(folder).glob("*.safetensors"):
        path.chmod(0o666 & ~mask)


def umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread, until set back)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):  # not Linux
        mask = os.umask(0o22)
        os.umask(mask)
        return mask


def is_onnx_folder(name) -> bool:
    return (Path(name).expanduser() / ONNX_FILE).is_file()


def refuse_run_folder(name) -> None:
    """A UserError when `name` is a run folder (its model is in model/) given where a model folder is expected."""
    path = Path(name).expanduser()
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        raise UserError(f"{name}: a run folder; give its model folder, {path / 'model'}")


def check_multitask_config(name, config: dict) -> None:
    """A UserError unless `config` (config.json's contents) is an mtnlp multi-task model's, e.g. when the base
    encoder is given instead of a run's model/ folder."""
    if not config.get("model_type"):
        raise UserError(f"{name}: not an mtnlp model folder or hub repository (no config.json with a model_type)")
    if config["model_type"] != MODEL_TYPE:
        raise UserError(f"{name}: a {config['model_type']} model, not an mtnlp multi-task model "
                        "(give a run's model/ folder, or a repository `mtnlp push` wrote)")


def check_model_folder(model_dir: Path) -> None:
    """A UserError unless `model_dir` is an mtnlp multi-task model folder that loads: config, weights, tokenizer."""
    if not model_dir.is_dir():
        raise NotFound(f"{model_dir}: model folder not found")
    if is_onnx_folder(model_dir):
        raise UserError(f"{model_dir}: an ONNX export ({ONNX_FILE}), which cannot be loaded by hub id: push the "
                        "model folder it was exported from, or share this folder as plain files (hf upload)")
    refuse_run_folder(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json)")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{model_dir / 'config.json'}: cannot read: {first_line(e)}") from None
    check_multitask_config(model_dir, config if isinstance(config, dict) else {})
    missing = []
    if not any((model_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors (the weights)")
    # tokenizer_config.json and the vocabulary: tokenizer.json (some tokenizers also load from vocab.* or *.model)
    vocabulary = [p for p in model_dir.iterdir() if p.name == "tokenizer.json" or p.name.startswith("vocab.")
                  or p.suffix == ".model"]
    if not (model_dir / "tokenizer_config.json").is_file() or not vocabulary:
        missing.append("tokenizer (tokenizer_config.json and tokenizer.json)")
    if missing:
        raise UserError(f"{model_dir}: not a complete model folder: no {', no '.join(missing)}")


def in_task_order(tasks: dict, order: list | None) -> dict:
    """config.json's tasks in its `task_order` (the recipe's: transformers writes config.json's keys sorted)."""
    return {name: tasks[name] for name in order} if order and sorted(order) == sorted(tasks) else dict(tasks)
