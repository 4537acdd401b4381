"""What `training.gradient_checkpointing` saves and costs: the activation memory one training step keeps for
its backward pass, and the step's time, with and without it, on the packaged MiniLM (6 layers, hidden 384).

    python bench/checkpointing.py [--lengths 128 512] [--batch-size 32] [--steps 7] [--precision fp32|bf16]
                                  [--wait-idle SECONDS]

Memory is counted, not sampled: the bytes of the tensors autograd keeps during one training forward of a
tagging head (torch.autograd.graph.saved_tensors_hooks), what a step holds between its forward and backward.
A checkpointed step's backward also holds one layer's recomputed activations, which that count misses: the
step's peak is measured too, in a fresh process per variant (the rise of Linux's VmHWM over one forward and
backward, malloc returning freed blocks: MALLOC_MMAP_THRESHOLD_). A device's peak also holds the weights,
their gradients and the optimizer state, which checkpointing does not change. Time: the median of --steps
forward + backward passes of each variant, taken in turn in one run; their ratio is the cost.
Results: bench/results/checkpointing.json (or --output), with the machine's CPU model and bf16 support.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchlib import ENCODER, RESULTS, environment, wait_for_idle, write_results

from mtnlp import MultiTaskModel
from mtnlp.encoders import resolve_encoder

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def step(model, batch, precision: str) -> int:
    """One forward and backward pass; returns the bytes autograd kept for the backward pass."""
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        loss = model(**batch, task="ner").loss
    loss.backward()
    return sum(kept)


def tagger() -> MultiTaskModel:
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(resolve_encoder(ENCODER), {"ner": {"type": "tagging", "labels": LABELS}})
    return model.train()


def random_batch(batch_size: int, length: int) -> dict:
    return {"input_ids": torch.randint(1000, 20000, (batch_size, length)),
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
            "labels": torch.randint(0, len(LABELS), (batch_size, length))}


def peak_rise_mb(variant: str, batch_size: int, length: int, precision: str) -> float:
    """In this (fresh) process: how far one step raises the peak resident memory, in MB."""
    model = tagger()
    if variant == "checkpointed":
        model.checkpoint_activations()
    batch = random_batch(batch_size, length)
    step(model, {k: v[:1, :8] for k, v in batch.items()}, precision)  # gradients allocated, libraries loaded

    def high_water() -> int:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from what is resident now
    before = high_water()
    step(model, batch, precision)
    return round((high_water() - before) / 1024, 1)


def measured_peaks(batch_size: int, length: int, precision: str) -> dict[str, float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    return {variant: json.loads(subprocess.run(
        [sys.executable, __file__, "--peak-of", variant, "--batch-size", str(batch_size), "--lengths", str(length),
         "--precision", precision], capture_output=True, text=True, check=True, env=env).stdout.splitlines()[-1])
        for variant in ("plain", "checkpointed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="wait up to this long for a 1-min load < 0.5")
    parser.add_argument("--output", default=str(RESULTS / "checkpointing.json"))
    parser.add_argument("--peak-of", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)  # (the child)
    args = parser.parse_args()
    if args.peak_of:
        print(json.dumps(peak_rise_mb(args.peak_of, args.batch_size, args.lengths[0], args.precision)))
        return

    idle = wait_for_idle(args.wait_idle)
    plain = tagger()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_activations()
    variants = {"plain": plain, "checkpointed": checkpointed}
    rows = []
    for length in args.lengths:
        batch = random_batch(args.batch_size, length)
        kept = {name: step(model, batch, args.precision) for name, model in variants.items()}  # also a warm-up
        times = {name: [] for name in variants}
        for _ in range(args.steps):
            for name, model in variants.items():
                start = time.perf_counter()
                step(model, batch, args.precision)
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in times.items()}
        rows.append({"length": length, "batch_size": args.batch_size,
                     "kept_mb": {name: round(b / 2**20, 1) for name, b in kept.items()},
                     "kept_share": round(kept["checkpointed"] / kept["plain"], 4),
                     "step_s_median": {name: round(s, 4) for name, s in median.items()},
                     "time_ratio": round(median["checkpointed"] / median["plain"], 3)})
        peak = measured_peaks(args.batch_size, length, args.precision)
        rows[-1].update(peak_rise_mb=peak, peak_share=round(peak["checkpointed"] / peak["plain"], 4))
        print(f"length {length}: kept {rows[-1]['kept_mb']['plain']} -> {rows[-1]['kept_mb']['checkpointed']} MB "
              f"({rows[-1]['kept_share']:.1%}); peak {peak['plain']} -> {peak['checkpointed']} MB "
              f"({rows[-1]['peak_share']:.1%}); step time x{rows[-1]['time_ratio']}")
    write_results(Path(args.output), {"environment": environment(), "idle": idle, "encoder": ENCODER,
                                "precision": args.precision, "steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
