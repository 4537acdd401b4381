"""Hardware utilisation of mtnlp training: achieved matmul FLOP/s of the real training step as a fraction
of this machine's measured matmul peak in the training precision, both measured in this one run.

Precision (--precision, the bench recipe's training.mixed_precision): auto (the default: what
mtnlp's policy picks on this machine, bf16 where the CPU has AVX512-BF16 / AMX, otherwise fp32), bf16
(bf16 autocast, compared with the bf16 matmul peak) or fp32 (compared with the fp32 peak). Writes
bench/results/utilisation.json (with --batch-tokens 4096: utilisation_tokens4096.json; in fp32
_fp32 before .json) unless --output.

Peak: the best of several large torch.matmul shapes in the training dtype (4096³, 2048³, the
encoder's FFN shapes at 32×128 tokens, batched (32,128,384)×(384,1536)) on all torch threads; the other
dtype (and bf16 autocast) at 2048³ / 4096³ is recorded for reference. The peak is measured twice, each
time with the load average before and after and the CPU time of this process and of the rest of the machine
(/proc/stat); the higher is kept, and `matmul_peak.shared_cores` says whether that measurement shared the
cores with other processes (a low peak makes every fraction of peak too high). If it did, the JSON's
`target_met` is null, the output says so, and the diagnostics run as below target.

Training step: the real one. `run = mtnlp.train.setup(recipe)` on the 3-task bench recipe (seeded
samples of SST-2, CoNLL-2003 NER, UD-EWT UPOS), then the loop of recipes/multitask.py:
`train_step(run)` (timed as a whole) and `log_step(run, task)` (timed apart). Nothing is copied or
replaced. Phase times come from marks set by torch's own hook points on the Run's objects, each of
which only reads the clock:
  - the Run's batch iterator (`run.batches`, the DataLoader's) passed through a generator that marks
    when a batch is asked for and when it arrives, and keeps its task and attention mask;
  - a forward pre-hook and a forward hook on `run.model` (the forward includes the head's loss);
  - post-accumulate-grad hooks on the trainable parameters (the last one of a step ends backward);
  - step pre- and post-hooks on the optimizer (`run.optimizer`'s wrapped torch optimizer).
Each interval between consecutive marks is one phase: data (the DataLoader's batch and the move to
the device), forward (with the loss), backward (with the loss weighting before it), clip (gradient
clipping plus the weighting's and the loss log's bookkeeping), optimizer step, schedule + zero_grad.
They add up to the whole train_step. --no-phase-hooks times whole steps only (to see what the hooks
cost). FLOPs are counted analytically on the padded batch shapes drawn: linear layers 2·params·tokens
forward, attention scores and context 2·2·S²·hidden per sequence and layer, heads; backward = 2×
forward, so ×3 in total. Elementwise work (softmax, GELU, LayerNorm, AdamW) is not counted as FLOPs:
it is part of what the fraction measures. The "useful" count uses only non-pad tokens.

If the fraction is below the target, a short torch.profiler pass over further real steps records the
top ops by self CPU time, and two diagnostics (not the training step) show where time goes: forward +
backward of synthetic fixed-shape batches (B=32, S=16…128) through run.model, and AdamW's step with
its three torch implementations (for-loop, foreach, fused) on a copy of the parameters; the results
say which one the run's optimizer is. Writes bench/results/utilisation.json unless --output.

    python bench/utilisation.py [--steps 200] [--warmup 10] [--max-examples 4000] [--profile-steps 10]
                                [--precision bf16|fp32|auto] [--wait-idle 0] [--output FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product",
              "aten::_flash_attention", "mkldnn", "onednn", "aten::linear")


# ------------------------------------------------------------------ the machine's matmul peak


def time_matmul(a: torch.Tensor, b: torch.Tensor, repeats: int, autocast: bool = False) -> float:
    def run():
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.matmul(a, b)
        return torch.matmul(a, b)
    for _ in range(2):
        run()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(repeats: int, dtype: str = "bf16") -> dict:
    """The best matmul GFLOP/s in `dtype` (bf16 | fp32) over the shapes below; the other dtype and bf16
    autocast of fp32 inputs at the two square shapes (fp32 training: 2048³ only, bf16 may be emulated
    and slow) for reference."""
    shapes = {  # name: (shape of a, shape of b)
        "4096x4096 @ 4096x4096": ((4096, 4096), (4096, 4096)),
        "2048x2048 @ 2048x2048": ((2048, 2048), (2048, 2048)),
        "(32,128,384) @ 384x1536 (batched, FFN up)": ((32, 128, 384), (384, 1536)),
        "4096x1536 @ 1536x384 (FFN down)": ((4096, 1536), (1536, 384)),
        "4096x384 @ 384x384 (attention projections)": ((4096, 384), (384, 384)),
    }
    other = "fp32" if dtype == "bf16" else "bf16"
    reference = ("4096x4096", "2048x2048") if dtype == "bf16" else ("2048x2048",)
    cast = {"bf16": torch.Tensor.bfloat16, "fp32": torch.Tensor.float}
    torch.manual_seed(0)
    out = {"dtype": dtype, dtype: {}, other: {}, "autocast_fp32_inputs": {}}
    for name, (sa, sb) in shapes.items():
        flops = 2 * math.prod(sa) * sb[-1]
        a32, b32 = torch.randn(sa), torch.randn(sb)
        out[dtype][name] = flops / time_matmul(cast[dtype](a32), cast[dtype](b32), repeats) / 1e9
        if name.startswith(reference):
            out[other][name] = flops / time_matmul(cast[other](a32), cast[other](b32), max(2, repeats // 2)) / 1e9
            out["autocast_fp32_inputs"][name] = flops / time_matmul(a32, b32, max(2, repeats // 2), autocast=True) / 1e9
        print(f"  matmul {name}: {dtype} {out[dtype][name]:.0f} GFLOP/s"
              + (f", {other} {out[other][name]:.0f}, bf16 autocast {out['autocast_fp32_inputs'][name]:.0f}"
                 if name in out[other] else ""), flush=True)
    best = max(out[dtype], key=out[dtype].get)
    out["peak_gflops"] = out[dtype][best]
    out["peak_shape"] = best
    square = "2048x2048 @ 2048x2048"
    out["bf16_over_fp32_2048"] = out["bf16"][square] / out["fp32"][square]
    if dtype == "bf16":
        out["bf16_over_fp32_4096"] = out["bf16"]["4096x4096 @ 4096x4096"] / out["fp32"]["4096x4096 @ 4096x4096"]
    return out


def guarded_peak(repeats: int, dtype: str, threshold: float = 0.75) -> dict:
    """matmul_peak measured twice, each time with the load average before and after and the CPU time of this
    process and of all other processes; the higher peak is kept. A measurement shared the cores when this
    process got under `threshold` CPU-seconds per wall-second per torch thread, or other processes used more
    than 0.25 CPU-seconds per wall-second; `shared_cores` says whether the kept one did."""
    measurements = []
    for _ in range(2):
        load_before, meter = list(os.getloadavg()), benchlib.cpu_meter()
        peak = matmul_peak(repeats, dtype)
        wall, own, others = meter()
        facts = {"peak_gflops": peak["peak_gflops"], "peak_shape": peak["peak_shape"], "seconds": round(wall, 2),
                 "cpu_per_wall_s": round(own / wall, 2), "other_processes_cpu_per_wall_s": round(others / wall, 2),
                 "loadavg_before": load_before, "loadavg_after": list(os.getloadavg())}
        facts["shared_cores"] = own / wall < threshold * torch.get_num_threads() or others / wall > 0.25
        measurements.append((peak, facts))
    peak, facts = max(measurements, key=lambda m: m[0]["peak_gflops"])
    return peak | {"shared_cores": facts["shared_cores"], "measurements": [f for _, f in measurements]}


# ------------------------------------------------------------------ analytic FLOPs of one training step


def step_flops(mask: torch.Tensor, task_type: str, num_labels: int, cfg) -> dict:
    """Forward+backward matmul FLOPs (×3 of forward) of BERT + head on this batch, padded and non-pad."""
    B, S = mask.shape
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_token_linear = L * (4 * H * H + 2 * H * I)  # Q, K, V, O projections and the FFN, per layer

    def count(lengths: list[int]) -> dict:
        tokens = sum(lengths)
        linear = 2 * per_token_linear * tokens
        attention = sum(L * 2 * 2 * n * n * H for n in lengths)  # QK^T and (scores)V
        head = 2 * H * num_labels * tokens if task_type == "tagging" else 2 * len(lengths) * (H * H + H * num_labels)
        return {"linear": 3 * linear, "attention": 3 * attention, "head": 3 * head,
                "total": 3 * (linear + attention + head), "tokens": tokens}

    return {"padded": count([S] * B), "non_pad": count(mask.sum(1).tolist()), "rows": B, "width": S}


# ------------------------------------------------------------------ the real training step, timed


def build(work: Path, args):
    """The Run of the 3-task bench recipe, as `mtnlp train` would set it up."""
    from mtnlp.recipe import load_recipe
    from mtnlp.train import setup

    benchlib.write_subsets(work / "data", args.max_examples)
    total = args.warmup + args.steps + args.profile_steps
    recipe = load_recipe(benchlib.write_recipe(work / "recipe.yaml", work / "data", work / "run", total,
                                               args.batch_size, args.max_length, args.batch_tokens,
                                               precision=args.precision))
    run = setup(recipe)
    print(run.precision.describe() + (f"; warning: {run.precision.warning}" if run.precision.warning else ""),
          flush=True)
    return run


# which phase the time up to a mark belongs to (the interval between two marks ends at the later one)
PHASE_ENDED_BY = {"data_start": "data", "data_end": "data", "forward_start": "data", "forward_end": "forward",
                  "backward_end": "backward", "optimizer_start": "clip", "optimizer_end": "optimizer",
                  "step_end": "schedule_zero_grad"}
PHASES = ("data", "forward", "backward", "clip", "optimizer", "schedule_zero_grad")
PHASE_LABELS = {
    "data": "next(run.batches): the DataLoader's batch (collate), then the move to the device",
    "forward": "run.model forward, including the head's loss",
    "backward": "loss weighting and accelerator.backward, to the last parameter gradient",
    "clip": "from the last gradient to optimizer.step: weighting.observe / end_step, loss log, clip_grad_norm_",
    "optimizer": "optimizer.step (between its step pre- and post-hooks)",
    "schedule_zero_grad": "after optimizer.step: scheduler.step, zero_grad, the step counter",
}


class StepClock:
    """Marks inside the real train_step, set from torch's hook points on the Run's objects and from a
    generator the Run's batch iterator is passed through. Nothing of mtnlp is replaced; every hook only
    reads the clock (the batch generator also keeps each batch's task and attention mask for the FLOP
    count)."""

    def __init__(self, run, phase_hooks: bool = True):
        self.run, self.source = run, run.batches
        self.marks: list[tuple[str, float]] = []
        self.batches: list[tuple[str, torch.Tensor]] = []  # (task, attention mask) of this step's batches
        self.last_grad: float | None = None
        self.handles = []
        run.batches = self._pass_through(run.batches)
        if phase_hooks:
            optimizer = getattr(run.optimizer, "optimizer", run.optimizer)  # under Accelerate's wrapper
            self.handles += [
                run.model.register_forward_pre_hook(lambda *_: self.mark("forward_start")),
                run.model.register_forward_hook(lambda *_: self.mark("forward_end")),
                optimizer.register_step_pre_hook(lambda *_: self.mark("optimizer_start")),
                optimizer.register_step_post_hook(lambda *_: self.mark("optimizer_end")),
            ]
            self.handles += [p.register_post_accumulate_grad_hook(self._gradient)
                             for p in run.model.parameters() if p.requires_grad]

    def _pass_through(self, batches):
        while True:
            self.mark("data_start")
            try:
                task, batch, positions = next(batches)
            except StopIteration:
                return
            self.mark("data_end")
            self.batches.append((task, batch["attention_mask"]))
            yield task, batch, positions

    def _gradient(self, _param) -> None:
        self.last_grad = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        if self.last_grad is not None:  # the previous gradient hook was the last of its backward pass
            self.marks.append(("backward_end", self.last_grad))
            self.last_grad = None
        self.marks.append((name, now))

    def step(self) -> dict:
        """One train_step(run), timed as a whole and by phase, then log_step(run, task), timed apart."""
        from mtnlp.train import log_step, train_step

        self.marks.clear()
        self.batches.clear()
        cpu_start = time.process_time()
        self.mark("step_start")
        task = train_step(self.run)
        self.mark("step_end")
        cpu = time.process_time() - cpu_start
        log_start = time.perf_counter()
        log_step(self.run, task)
        record = {"task": task, "total": self.marks[-1][1] - self.marks[0][1], "log_step": time.perf_counter() - log_start,
                  "cpu": cpu, "batches": list(self.batches)}
        if self.handles:  # phases need the hooks' marks
            record.update(dict.fromkeys(PHASES, 0.0))
            for (_, before), (name, at) in zip(self.marks, self.marks[1:]):
                record[PHASE_ENDED_BY[name]] += at - before
        return record

    def close(self) -> None:
        """Remove the hooks and give the Run back its own batch iterator."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.run.batches = self.source


def measure_training(run, args, peak_gflops: float, target: float) -> dict:
    cfg = run.unwrapped.config.encoder
    num_labels = {n: len(d.labels) for n, d in run.tasks.items()}
    clock = StepClock(run, phase_hooks=not args.no_phase_hooks)
    for _ in range(args.warmup):
        clock.step()
    records = []
    for _ in range(args.steps):
        r = clock.step()
        flops = [step_flops(mask, run.tasks[task].type, num_labels[task], cfg) for task, mask in r.pop("batches")]
        r["flops"] = {kind: {k: sum(f[kind][k] for f in flops) for k in flops[0][kind]} for kind in ("padded", "non_pad")}
        r["rows"] = sum(f["rows"] for f in flops)  # a step's batches (one, unless grad_accum > 1 or PCGrad/CAGrad)
        r["width"] = max(f["width"] for f in flops)
        records.append(r)
    clock.close()
    timed = ("total", "log_step", "cpu") + (() if args.no_phase_hooks else PHASES)

    def aggregate(rs: list[dict]) -> dict:
        seconds = {k: sum(r[k] for r in rs) for k in timed}
        padded = {k: sum(r["flops"]["padded"][k] for r in rs) for k in ("linear", "attention", "head", "total", "tokens")}
        useful = {k: sum(r["flops"]["non_pad"][k] for r in rs) for k in ("linear", "attention", "head", "total", "tokens")}
        out = {
            "steps": len(rs),
            "seconds": seconds,
            "ms_per_step": 1000 * seconds["total"] / len(rs),
            # CPU seconds of this process per wall second of train_step: ~torch threads when the cores are
            # the step's alone, less when another job shares them
            "cpu_per_wall": seconds["cpu"] / seconds["total"],
            "log_step_ms_per_step": 1000 * seconds["log_step"] / len(rs),
            "padded_tokens": padded["tokens"], "non_pad_tokens": useful["tokens"],
            "padding_fraction": 1 - useful["tokens"] / padded["tokens"],
            "mean_batch_shape": [statistics.mean(r["rows"] for r in rs), statistics.mean(r["width"] for r in rs)],
            "matmul_flops_executed": padded["total"],
            "matmul_flops_useful_non_pad": useful["total"],
            "flops_share": {k: padded[k] / padded["total"] for k in ("linear", "attention", "head")},
            "achieved_gflops_whole_step": padded["total"] / seconds["total"] / 1e9,
            "fraction_of_peak": padded["total"] / seconds["total"] / 1e9 / peak_gflops,
            "fraction_of_peak_useful_non_pad": useful["total"] / seconds["total"] / 1e9 / peak_gflops,
            "fraction_of_peak_with_log_step": padded["total"] / (seconds["total"] + seconds["log_step"]) / 1e9 / peak_gflops,
            "non_pad_tokens_per_s": useful["tokens"] / seconds["total"],
            # the step time the target would need for these FLOPs
            "ms_per_step_needed_for_target": 1000 * padded["total"] / len(rs) / (target * peak_gflops * 1e9),
        }
        if not args.no_phase_hooks:
            fb = seconds["forward"] + seconds["backward"]
            out.update({
                "time_share": {k: seconds[k] / seconds["total"] for k in PHASES},
                "achieved_gflops_fwd_bwd_only": padded["total"] / fb / 1e9,
                "fraction_of_peak_fwd_bwd_only": padded["total"] / fb / 1e9 / peak_gflops,
                "optimizer_ms_per_step": 1000 * seconds["optimizer"] / len(rs),
                "clip_ms_per_step": 1000 * seconds["clip"] / len(rs),
            })
        return out

    out = aggregate(records)
    out["phases"] = PHASE_LABELS if not args.no_phase_hooks else None
    out["per_task"] = {task: aggregate([r for r in records if r["task"] == task])
                       for task in sorted({r["task"] for r in records})}
    step_ms = sorted(1000 * r["total"] for r in records)
    out["step_ms_median"], out["step_ms_p90"] = step_ms[len(step_ms) // 2], step_ms[int(0.9 * len(step_ms))]
    # steps with under 0.75 CPU-seconds per wall-second per torch thread: they shared the cores with another job
    out["steps_sharing_cores"] = sum(r["cpu"] < 0.75 * torch.get_num_threads() * r["total"] for r in records)
    return out


# ------------------------------------------------------------------ diagnostics (when below target)


CATEGORIES = {  # approximate: by op name (some in-place ops also occur in backward)
    "matmul (mm/addmm/bmm/attention kernels)": MATMUL_OPS,
    "dropout RNG (bernoulli_)": ("aten::bernoulli_",),
    "copies and dtype casts (copy_)": ("aten::copy_",),
    "AdamW-style in-place elementwise (lerp_, addcdiv_, addcmul_, sqrt, mul_, add_, div)":
        ("aten::lerp_", "aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::mul_", "aten::add_", "aten::div",
         "aten::_foreach", "aten::_fused_adamw"),
}


def profile(run, steps: int) -> dict:
    """torch.profiler over `steps` further real steps (train_step and log_step, as in recipes/multitask.py)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from mtnlp.train import log_step, train_step

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("## train_step"):
                task = train_step(run)
            with record_function("## log_step"):
                log_step(run, task)
    events = [e for e in prof.key_averages() if not e.key.startswith(("ProfilerStep", "## "))]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    shares, seen = {}, set()
    for name, prefixes in CATEGORIES.items():
        picked = [e for e in events if e.key not in seen and any(e.key.startswith(p) or p in e.key for p in prefixes)]
        seen.update(e.key for e in picked)
        shares[name] = sum(e.self_cpu_time_total for e in picked) / total
    shares["other"] = 1 - sum(shares.values())
    return {
        "steps": steps,
        "self_cpu_ms_total": total / 1000,
        "self_cpu_share_by_category": shares,
        "top10_by_self_cpu": [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000,
                               "self_share": e.self_cpu_time_total / total, "calls": e.count,
                               "cpu_total_ms": e.cpu_time_total / 1000} for e in top],
    }


def shape_sweep(run, peak_gflops: float, lengths=(16, 32, 64, 128), repeats: int = 3) -> dict:
    """Diagnostic, not the training step: forward + backward of synthetic fixed (32, S) tagging batches
    through run.model (so in the run's precision), with dropout (train mode, as in training) and without
    (eval mode: no dropout, so SDPA may take its fused kernel): what small shapes and dropout cost.
    The gradients are thrown away (set to None)."""
    model = run.model
    task = next(n for n, d in run.tasks.items() if d.type == "tagging")
    labels = len(run.tasks[task].labels)
    out = {}
    for S in lengths:
        ids = torch.randint(1000, 20000, (32, S))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
                 "labels": torch.randint(0, labels, (32, S))}
        flops = step_flops(batch["attention_mask"], "tagging", labels, run.unwrapped.config.encoder)["padded"]["total"]
        row = {}
        for mode in ("train_dropout_on", "eval_dropout_off"):
            model.train(mode == "train_dropout_on")
            best = math.inf
            for _ in range(repeats + 1):
                start = time.perf_counter()
                loss = model(**batch, task=task).loss
                run.accelerator.backward(loss)
                best = min(best, time.perf_counter() - start)
                run.unwrapped.zero_grad(set_to_none=True)
            row[mode] = {"fwd_bwd_ms": 1000 * best, "gflops": flops / best / 1e9,
                         "fraction_of_peak": flops / best / 1e9 / peak_gflops}
        model.train()
        out[f"32x{S}"] = row
        print(f"  fixed batch 32x{S} fwd+bwd: dropout on {row['train_dropout_on']['fwd_bwd_ms']:.0f} ms "
              f"({row['train_dropout_on']['fraction_of_peak']:.1%} of peak), dropout off "
              f"{row['eval_dropout_off']['fwd_bwd_ms']:.0f} ms ({row['eval_dropout_off']['fraction_of_peak']:.1%})",
              flush=True)
    return out


def optimizer_variants(run, repeats: int = 10) -> dict:
    """Diagnostic: AdamW step time on a copy of the model's parameters with torch's three
    implementations: for-loop (foreach=False; what torch picks on CPU when neither flag is given, e.g.
    Trainer's optim="adamw_torch"), foreach, fused. `run_optimizer` says which one the run's optimizer is."""
    params = [p.detach().clone().requires_grad_(True) for p in run.model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    out = {"parameters": sum(p.numel() for p in params),
           "run_optimizer": benchlib.optimizer_facts(run.optimizer)["implementation"].replace("-", "_")}
    for name, kwargs in (("for_loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        try:
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, **kwargs)
            opt.step()
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                opt.step()
                best = min(best, time.perf_counter() - start)
            out[name] = {"step_ms": 1000 * best}
        except (RuntimeError, TypeError) as e:
            out[name] = {"error": str(e)[:200]}
    return out


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed training steps first")
    parser.add_argument("--max-examples", type=int, default=4000, help="training examples per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-tokens", type=int, help="token-budget batches (training.batch_tokens) instead of rows")
    parser.add_argument("--precision", choices=["bf16", "fp32", "auto"], default="auto",
                        help="the recipe's training.mixed_precision; the peak is measured in the precision it resolves "
                             "to on this machine (default auto: bf16 autocast on a CPU with native bf16, as in "
                             "bench/results/utilisation.json, else fp32)")
    parser.add_argument("--peak-repeats", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=10, help="profiled steps when below target (0: none)")
    parser.add_argument("--profile", action="store_true", help="profile and run the diagnostics even above target")
    parser.add_argument("--no-phase-hooks", action="store_true",
                        help="time whole train_steps only, without the hooks that split them into phases")
    parser.add_argument("--target", type=float, default=0.35)
    parser.add_argument("--wait-idle", type=float, default=0,
                        help="first wait up to this many seconds for the 1-min load average to drop below 0.5")
    parser.add_argument("--output", help="default bench/results/utilisation.json (utilisation_tokens4096.json with "
                                         "--batch-tokens 4096; _fp32 before .json in fp32)")
    args = parser.parse_args()

    from mtnlp import precision

    dtype = precision.resolve(args.precision, "cpu").name  # what setup() will train in (mtnlp's policy)
    if dtype not in ("bf16", "fp32"):
        sys.exit(f"--precision {args.precision} resolves to {dtype}: only bf16 and fp32 are measured")
    tokens = f"_tokens{args.batch_tokens}" if args.batch_tokens else ""
    args.output = args.output or str(benchlib.RESULTS / f"utilisation{tokens}{'' if dtype == 'bf16' else '_fp32'}.json")
    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    results = benchlib.environment()
    results["wait_for_idle"] = idle
    print(f"{dtype} matmul peak on {torch.get_num_threads()} threads:", flush=True)
    peak = guarded_peak(args.peak_repeats, dtype)
    print(f"peak {peak['peak_gflops']:.0f} GFLOP/s {dtype} ({peak['peak_shape']}); bf16/fp32 at 2048³ "
          f"{peak['bf16_over_fp32_2048']:.2f}x", flush=True)
    if peak["shared_cores"]:
        print("note: the kept peak measurement shared the cores with other processes (see matmul_peak.measurements); "
              "the peak may be low and every fraction of peak too high: no verdict on the target", flush=True)
    with tempfile.TemporaryDirectory(prefix="mtnlp-util-") as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "hf-datasets-cache")
        run = build(Path(tmp), args)
        if run.precision.name != dtype:
            sys.exit(f"the run trains in {run.precision.name}, the peak was measured in {dtype}")
        model = run.unwrapped
        train = measure_training(run, args, peak["peak_gflops"], args.target)
        phases = ("" if args.no_phase_hooks else
                  f" (fwd+bwd only {train['fraction_of_peak_fwd_bwd_only']:.1%})"
                  + "; time: " + ", ".join(f"{k} {v:.0%}" for k, v in train["time_share"].items())
                  + f"; optimizer step {train['optimizer_ms_per_step']:.0f} ms")
        print(f"mtnlp train_step: {train['ms_per_step']:.0f} ms/step (+ log_step {train['log_step_ms_per_step']:.1f} ms), "
              f"{train['achieved_gflops_whole_step']:.0f} GFLOP/s = {train['fraction_of_peak']:.1%} of the {dtype} peak"
              f"{phases}; non-pad FLOPs only {train['fraction_of_peak_useful_non_pad']:.1%}; padding "
              f"{train['padding_fraction']:.1%}; the target needs {train['ms_per_step_needed_for_target']:.0f} ms/step; "
              f"{train['cpu_per_wall']:.2f} CPU-s per wall-s on {torch.get_num_threads()} threads "
              f"({train['steps_sharing_cores']} of {args.steps} steps under 0.75 per thread)", flush=True)
        for task, r in train["per_task"].items():
            print(f"  {task}: {r['steps']} steps, mean batch {r['mean_batch_shape'][0]:.0f}x{r['mean_batch_shape'][1]:.1f}, "
                  f"{r['ms_per_step']:.0f} ms/step, {r['fraction_of_peak']:.1%} of peak"
                  + ("" if args.no_phase_hooks else f" (fwd+bwd only {r['fraction_of_peak_fwd_bwd_only']:.1%})"),
                  flush=True)
        diagnostics = None
        if (train["fraction_of_peak"] < args.target or args.profile or peak["shared_cores"]) and args.profile_steps:
            why = "the peak shared the cores" if peak["shared_cores"] and train["fraction_of_peak"] >= args.target \
                else f"below the {args.target:.0%} target"
            print(f"{why}: profiling {args.profile_steps} steps and diagnostics", flush=True)
            diagnostics = {"profile": profile(run, args.profile_steps)}
            for op in diagnostics["profile"]["top10_by_self_cpu"]:
                print(f"  {op['op']:<55} {op['self_cpu_ms']:8.0f} ms  {op['self_share']:.1%}  ({op['calls']} calls)")
            for name, share in diagnostics["profile"]["self_cpu_share_by_category"].items():
                print(f"  {share:6.1%}  {name}", flush=True)
            diagnostics["fixed_shape_fwd_bwd"] = shape_sweep(run, peak["peak_gflops"])
            diagnostics["optimizer_step"] = optimizer_variants(run)
            print("  AdamW step (diagnostic, a copy of the parameters): "
                  + ", ".join(f"{k} {v['step_ms']:.0f} ms" for k, v in diagnostics["optimizer_step"].items()
                              if isinstance(v, dict) and "step_ms" in v)
                  + f"; the run's optimizer is {diagnostics['optimizer_step']['run_optimizer']}", flush=True)
        run.bar.close()
        t = run.recipe.training
        config = {"steps_timed": args.steps, "warmup_steps": args.warmup, "max_examples_per_task": args.max_examples,
                  "batch_size": args.batch_size, "batch_tokens": args.batch_tokens, "max_length": args.max_length,
                  "precision": "bf16 autocast" if dtype == "bf16" else "fp32 (no autocast)",
                  "mtnlp_precision": run.precision.as_dict(),
                  "mtnlp_optimizer": benchlib.optimizer_facts(run.optimizer),
                  "gradient_method": type(run.gradient).__qualname__, "weighting": type(run.weighting).__qualname__,
                  "grad_accum": t.grad_accum, "max_grad_norm": t.max_grad_norm,
                  "step": "mtnlp.train.train_step(run) on run = mtnlp.train.setup(recipe), timed as a whole; "
                          "log_step(run, task) after it, timed apart",
                  "phase_hooks": not args.no_phase_hooks,
                  "encoder": benchlib.ENCODER, "attn_implementation": model.config.encoder._attn_implementation,
                  "params": sum(p.numel() for p in model.parameters()),
                  "flop_model": "3x forward; forward = 2*params_in_linear*tokens + 2*2*L*S^2*hidden per sequence "
                                "+ head; on padded shapes (executed) and non-pad lengths (useful)"}
    results.update({
        "config": config,
        "matmul_peak": peak,
        "training": train,
        "fraction_of_peak": train["fraction_of_peak"],
        "target": args.target,
        # None when the peak measurement shared the cores with other processes: the fraction may be inflated
        "target_met": None if peak["shared_cores"] else train["fraction_of_peak"] >= args.target,
        "diagnostics": diagnostics,
        "loadavg_at_end": list(os.getloadavg()),
    })
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    sys.exit(main())
