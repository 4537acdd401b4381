"""Shared helpers of bench/throughput.py and bench/utilisation.py: the run's environment record
(date, commit, CPU model, matmul ISA flags, bf16 support), the optimizer record, waiting for an idle
machine, and the 3-task data subsets (SST-2, CoNLL-2003 NER, UD-EWT UPOS) with the mtnlp recipe that
trains on them."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def sst2_dev_texts() -> list[str]:
    """The SST-2 dev sentences shipped in recipes/data (872): what the inference benchmarks read."""
    lines = (REPO / "recipes/data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0].strip() for line in lines]


def demo_model_options(output: str, description: str) -> argparse.Namespace:
    """--model (default: make demo's), --batch-size, --repeats, --wait-idle and --output (default
    bench/results/OUTPUT), parsed; exits when --model holds no trained model."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=0)
    parser.add_argument("--output", default=str(RESULTS / output))
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").exists():
        sys.exit(f"{args.model}: no trained model; run `make demo` first")
    return args


def write_results(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


ISA_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
# /proc/cpuinfo flags that decide which matmul kernels torch / oneDNN can use
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def cpu_info() -> dict:
    """CPU model and which matmul-relevant ISA flags it has (from /proc/cpuinfo); whether mtnlp's precision policy
    finds native bf16 (precision.cpu_native), torch's CPU capability, and the env vars that cap the ISA
    torch / oneDNN / MKL use (set to emulate an older, e.g. AVX2-only, CPU on a newer one)."""
    info, flags = {}, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "vendor_id", "cpu family", "model", "stepping") and key not in info:
                info[key] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    info["isa_flags"] = [f for f in MATMUL_FLAGS if f in flags]  # the flags summary: which of MATMUL_FLAGS it has
    info["amx_bf16"] = "amx_bf16" in flags
    info["avx512_bf16"] = "avx512_bf16" in flags
    info["hypervisor"] = "hypervisor" in flags
    info["logical_cpus"] = os.cpu_count()
    from mtnlp import precision

    info["bf16_native"], info["bf16_reason"] = precision.cpu_native()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["isa_caps"] = {name: os.environ[name] for name in ISA_CAP_VARS if name in os.environ}
    return info


def environment() -> dict:
    """Date, git commit, torch threads, CPU (model, bf16 support, ISA caps), versions and the load average
    when called."""
    import transformers
    import accelerate

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "tracked_files_modified": dirty,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "loadavg_at_start": list(os.getloadavg()),
    }


def optimizer_facts(optimizer) -> dict:
    """The optimizer a run really steps with (under Accelerate's AcceleratedOptimizer, the one it wraps):
    its class, the fused / foreach flags it was built with, and which of torch's three AdamW
    implementations (for-loop, foreach, fused) they select for its parameters."""
    from torch.optim.optimizer import _default_to_fused_or_foreach

    inner = getattr(optimizer, "optimizer", optimizer)
    fused, foreach = inner.defaults.get("fused"), inner.defaults.get("foreach")
    if fused:
        implementation = "fused"
    elif foreach is None:  # torch's own default for these parameters: foreach on CUDA, for-loop on CPU
        params = [p for group in inner.param_groups for p in group["params"]]
        implementation = "foreach" if _default_to_fused_or_foreach(params, False, False)[1] else "for-loop"
    else:
        implementation = "foreach" if foreach else "for-loop"
    return {"class": f"{type(inner).__module__}.{type(inner).__qualname__}",
            "wrapper": None if inner is optimizer else type(optimizer).__qualname__,
            "fused": fused, "foreach": foreach, "implementation": implementation}


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used so far (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def cpu_meter():
    """A function giving (wall seconds, CPU seconds of this process, CPU seconds of all other processes of the
    machine) since the meter was made."""
    wall, own, machine = time.perf_counter(), sum(os.times()[:2]), machine_busy_s()

    def read() -> tuple[float, float, float]:
        own_now = sum(os.times()[:2]) - own
        return time.perf_counter() - wall, own_now, max(machine_busy_s() - machine - own_now, 0.0)
    return read


def best_of(repeats: int, fn) -> float:
    """The shortest of `repeats` timings of fn(), in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def wait_for_idle(max_wait: float, threshold: float = 0.5) -> dict:
    """Wait (up to max_wait seconds) until the 1-minute load average is below threshold."""
    start = time.time()
    first = os.getloadavg()[0]
    while os.getloadavg()[0] >= threshold and time.time() - start < max_wait:
        time.sleep(10)
    load = os.getloadavg()[0]
    if max_wait and load >= threshold:
        print(f"note: load average still {load:.2f} after waiting {max_wait:.0f}s; measuring anyway", file=sys.stderr)
    return {"waited_s": round(time.time() - start, 1), "load1_before_wait": first, "load1_after_wait": load,
            "threshold": threshold}


# ------------------------------------------------------------------ data subsets and the recipe


def _blocks(path: Path) -> list[str]:
    """Blank-line separated sentence blocks of a CoNLL / CoNLL-U file (CoNLL-2003 -DOCSTART- dropped)."""
    text = path.read_text(encoding="utf-8")
    blocks = [b.strip("\n") for b in text.replace("\r\n", "\n").split("\n\n")]
    return [b for b in blocks if b.strip() and not b.startswith("-DOCSTART-")]


def write_subsets(out_dir: Path, max_examples: int, seed: int = 0) -> dict[str, Path]:
    """A seeded random sample of at most max_examples training examples per task (kept in file order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def sample(items: list) -> list:
        if len(items) <= max_examples:
            return items
        keep = sorted(rng.sample(range(len(items)), max_examples))
        return [items[i] for i in keep]

    lines = (DATA / "sst2/train.tsv").read_text(encoding="utf-8").splitlines()
    (out_dir / "sst2.tsv").write_text("\n".join([lines[0]] + sample(lines[1:])) + "\n", encoding="utf-8")
    for name, source in (("conll_ner.conll", "conll2003/train.txt"),
                         ("ud_upos.conllu", "ud_english_ewt/en_ewt-ud-train.conllu")):
        (out_dir / name).write_text("\n\n".join(sample(_blocks(DATA / source))) + "\n\n", encoding="utf-8")
    return {"sst2": out_dir / "sst2.tsv", "conll_ner": out_dir / "conll_ner.conll",
            "ud_upos": out_dir / "ud_upos.conllu"}


RECIPE = """\
name: bench
output_dir: {output_dir}
data_dir: {data_dir}
model:
  encoder: {encoder}
  max_length: {max_length}
tasks:
  sst2:
    type: classification
    data:
      train: sst2.tsv
      text_column: sentence
      label_names: {{0: negative, 1: positive}}
    metrics: [accuracy]
  conll_ner:
    type: tagging
    data:
      format: conll
      train: conll_ner.conll
      tag_column: 3
    metrics: [seqeval]
  ud_upos:
    type: tagging
    data:
      format: conllu
      train: ud_upos.conllu
      tag_column: upos
    metrics: [token_accuracy]
sampling:
  strategy: temperature
  temperature: 2.0
  group_by_length: true
training:
  steps: {steps}
  batch_size: {batch_size}
  batch_tokens: {batch_tokens}
  lr: 1.0e-4
  warmup: 0.1
  mixed_precision: {precision}
  eval_every: null          # no validation split: the only "evaluation" is at the end (it saves the model)
  save_every: null
  log_every: 10
  seed: 42
"""


def write_recipe(path: Path, data_dir: Path, output_dir: Path, steps: int, batch_size: int = 32,
                 max_length: int = 128, batch_tokens: int | None = None, precision: str = "bf16") -> Path:
    """The bench recipe; `precision` is its training.mixed_precision (auto | bf16 | fp16 | fp32 | no)."""
    path.write_text(RECIPE.format(output_dir=output_dir, data_dir=data_dir, encoder=ENCODER, max_length=max_length,
                                  steps=steps, batch_size=batch_size, precision=precision,
                                  batch_tokens="null" if batch_tokens is None else batch_tokens), encoding="utf-8")
    return path


def sampler_counts(sizes: dict[str, int], steps: int, seed: int = 42, temperature: float = 2.0,
                   strategy: str = "temperature") -> dict[str, int]:
    """How many of `steps` batches mtnlp's TaskSampler gives each task (the sampler is a pure function)."""
    from mtnlp.sampling import TaskSampler

    sampler = TaskSampler(sizes, strategy, seed, steps=steps, temperature=temperature)
    counts = dict.fromkeys(sizes, 0)
    for _ in range(steps):
        counts[next(sampler)] += 1
    return counts
