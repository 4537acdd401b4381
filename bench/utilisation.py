"""Hardware utilisation of mtnlp training: achieved matmul FLOP/s of the training step as a fraction of
this machine's measured bf16 matmul peak, both measured in this one run.

Peak: the best of several large bf16 torch.matmul shapes (4096³, 2048³, the encoder's FFN shapes at
32×128 tokens, batched (32,128,384)×(384,1536)) on all torch threads; fp32 and autocast numbers are
recorded for reference.

Training step: the loop of mtnlp.train.train() replicated step by step (same recipe objects, the same
Accelerator with bf16 autocast, TaskSampler / TaskBatches / collate, fused AdamW, linear schedule, grad-norm
clipping) on the 3-task bench recipe (seeded samples of SST-2, CoNLL-2003 NER, UD-EWT UPOS), with a
timer around each phase. FLOPs are counted analytically on the padded batch shapes actually drawn:
linear layers 2·params·tokens forward, attention scores and context 2·2·S²·hidden per sequence and layer,
heads; backward = 2× forward, so ×3 in total. Elementwise work (softmax, GELU, LayerNorm, AdamW) is not
counted as FLOPs: it is part of what the fraction measures. The "useful" count uses only non-pad tokens.

If the fraction is below the target, a short torch.profiler pass records the top ops by self CPU time,
and two diagnostics show where time goes: fwd+bwd utilisation of fixed batch shapes (B=32, S=16…128),
and the optimizer step with AdamW's for-loop / foreach / fused (mtnlp's) implementations.
Writes bench/results/utilisation.json.

    python bench/utilisation.py [--steps 200] [--warmup 10] [--max-examples 4000] [--profile-steps 10] [--wait-idle 0]
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


def matmul_peak(repeats: int) -> dict:
    shapes = {  # name: (shape of a, shape of b)
        "4096x4096 @ 4096x4096": ((4096, 4096), (4096, 4096)),
        "2048x2048 @ 2048x2048": ((2048, 2048), (2048, 2048)),
        "(32,128,384) @ 384x1536 (batched, FFN up)": ((32, 128, 384), (384, 1536)),
        "4096x1536 @ 1536x384 (FFN down)": ((4096, 1536), (1536, 384)),
        "4096x384 @ 384x384 (attention projections)": ((4096, 384), (384, 384)),
    }
    torch.manual_seed(0)
    out = {"bf16": {}, "fp32": {}, "autocast_fp32_inputs": {}}
    for name, (sa, sb) in shapes.items():
        flops = 2 * math.prod(sa) * sb[-1]
        a32, b32 = torch.randn(sa), torch.randn(sb)
        out["bf16"][name] = flops / time_matmul(a32.bfloat16(), b32.bfloat16(), repeats) / 1e9
        if name.startswith(("4096x4096", "2048x2048")):
            out["fp32"][name] = flops / time_matmul(a32, b32, max(2, repeats // 2)) / 1e9
            out["autocast_fp32_inputs"][name] = flops / time_matmul(a32, b32, repeats, autocast=True) / 1e9
        print(f"  matmul {name}: bf16 {out['bf16'][name]:.0f} GFLOP/s"
              + (f", fp32 {out['fp32'][name]:.0f}, autocast {out['autocast_fp32_inputs'][name]:.0f}"
                 if name in out["fp32"] else ""), flush=True)
    best = max(out["bf16"], key=out["bf16"].get)
    out["peak_gflops"] = out["bf16"][best]
    out["peak_shape"] = best
    out["bf16_over_fp32_4096"] = out["bf16"]["4096x4096 @ 4096x4096"] / out["fp32"]["4096x4096 @ 4096x4096"]
    return out


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

    return {"padded": count([S] * B), "non_pad": count(mask.sum(1).tolist())}


# ------------------------------------------------------------------ the mtnlp training loop, timed


def build(work: Path, args):
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    from mtnlp.encoders import resolve_encoder
    from mtnlp.modeling import MultiTaskModel
    from mtnlp.recipe import load_recipe
    from mtnlp.train import load_tasks, make_accelerator, make_optimizer, task_streams

    benchlib.write_subsets(work / "data", args.max_examples)
    total = args.warmup + args.steps + args.profile_steps
    recipe = load_recipe(benchlib.write_recipe(work / "recipe.yaml", work / "data", work / "run", total,
                                               args.batch_size, args.max_length, args.batch_tokens))
    t = recipe.training
    # --- as in mtnlp.train.train()
    accelerator, chosen = make_accelerator(recipe)  # the recipe asks for bf16: this measures the bf16 peak
    print(chosen.describe() + (f"; warning: {chosen.warning}" if chosen.warning else ""), flush=True)
    set_seed(t.seed)
    encoder = resolve_encoder(recipe.model.encoder)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    tasks = load_tasks(recipe, tokenizer, accelerator)
    heads = {name: {"type": d.type, "labels": d.labels, "dropout": recipe.tasks[name].dropout}
             for name, d in tasks.items()}
    model = MultiTaskModel.from_encoder(encoder, heads)
    optimizer, scheduler = make_optimizer(model, t)  # the same optimizer train() uses
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler, batches, train_rows = task_streams(recipe, tasks, accelerator)
    weights = {n: recipe.tasks[n].loss_weight for n in tasks}
    return dict(recipe=recipe, accelerator=accelerator, precision=chosen, tokenizer=tokenizer, tasks=tasks, model=model,
                optimizer=optimizer, scheduler=scheduler, sampler=sampler, batches=batches, train_rows=train_rows,
                weights=weights)


def train_step(s) -> dict:
    """One optimizer step exactly as mtnlp.train.train() does it (grad_accum 1), with phase timers."""
    from mtnlp.data import collate

    acc, model, t = s["accelerator"], s["model"], s["recipe"].training
    t0 = time.perf_counter()
    task = next(s["sampler"])
    batch = collate([s["train_rows"][task][i] for i in next(s["batches"][task])], s["tokenizer"].pad_token_id,
                    s["tasks"][task].type)
    batch = {k: v.to(acc.device) for k, v in batch.items()}
    t1 = time.perf_counter()
    loss = model(**batch, task=task).loss
    t2 = time.perf_counter()
    acc.backward(s["weights"][task] * loss)
    loss.item()
    t3 = time.perf_counter()
    acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
    t4 = time.perf_counter()
    s["optimizer"].step()
    s["scheduler"].step()
    s["optimizer"].zero_grad(set_to_none=True)
    t5 = time.perf_counter()
    return {"task": task, "mask": batch["attention_mask"], "data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2,
            "clip": t4 - t3, "optimizer": t5 - t4, "total": t5 - t0}


def measure_training(s, args, peak_gflops: float, target: float) -> dict:
    model = s["accelerator"].unwrap_model(s["model"])
    cfg = model.config.encoder
    num_labels = {n: len(d.labels) for n, d in s["tasks"].items()}
    s["model"].train()
    for _ in range(args.warmup):
        train_step(s)
    records = []
    for i in range(args.steps):
        r = train_step(s)
        r["flops"] = step_flops(r["mask"], s["tasks"][r["task"]].type, num_labels[r["task"]], cfg)
        r["shape"] = list(r.pop("mask").shape)
        records.append(r)

    def aggregate(rs: list[dict]) -> dict:
        seconds = {k: sum(r[k] for r in rs) for k in ("data", "forward", "backward", "clip", "optimizer", "total")}
        padded = {k: sum(r["flops"]["padded"][k] for r in rs) for k in ("linear", "attention", "head", "total", "tokens")}
        useful = {k: sum(r["flops"]["non_pad"][k] for r in rs) for k in ("linear", "attention", "head", "total", "tokens")}
        fb = seconds["forward"] + seconds["backward"]
        return {
            "steps": len(rs),
            "seconds": seconds,
            "time_share": {k: v / seconds["total"] for k, v in seconds.items() if k != "total"},
            "ms_per_step": 1000 * seconds["total"] / len(rs),
            "padded_tokens": padded["tokens"], "non_pad_tokens": useful["tokens"],
            "padding_fraction": 1 - useful["tokens"] / padded["tokens"],
            "mean_batch_shape": [statistics.mean(r["shape"][0] for r in rs), statistics.mean(r["shape"][1] for r in rs)],
            "matmul_flops_executed": padded["total"],
            "matmul_flops_useful_non_pad": useful["total"],
            "flops_share": {k: padded[k] / padded["total"] for k in ("linear", "attention", "head")},
            "achieved_gflops_whole_step": padded["total"] / seconds["total"] / 1e9,
            "achieved_gflops_fwd_bwd_only": padded["total"] / fb / 1e9,
            "fraction_of_peak": padded["total"] / seconds["total"] / 1e9 / peak_gflops,
            "fraction_of_peak_fwd_bwd_only": padded["total"] / fb / 1e9 / peak_gflops,
            "fraction_of_peak_useful_non_pad": useful["total"] / seconds["total"] / 1e9 / peak_gflops,
            "non_pad_tokens_per_s": useful["tokens"] / seconds["total"],
            # the step time the target would need for these FLOPs, next to what the optimizer alone takes
            "ms_per_step_needed_for_target": 1000 * padded["total"] / len(rs) / (target * peak_gflops * 1e9),
            "optimizer_ms_per_step": 1000 * seconds["optimizer"] / len(rs),
        }

    out = aggregate(records)
    out["per_task"] = {task: aggregate([r for r in records if r["task"] == task])
                       for task in sorted({r["task"] for r in records})}
    step_ms = sorted(1000 * r["total"] for r in records)
    out["step_ms_median"], out["step_ms_p90"] = step_ms[len(step_ms) // 2], step_ms[int(0.9 * len(step_ms))]
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


def profile(s, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("## train_step"):
                train_step(s)
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


def shape_sweep(s, peak_gflops: float, lengths=(16, 32, 64, 128), repeats: int = 3) -> dict:
    """fwd+bwd utilisation of fixed (32, S) tagging batches, with dropout (train mode, as in training) and
    without (eval mode: no dropout, so SDPA may take its fused kernel): what small shapes and dropout cost."""
    model = s["model"]
    unwrapped = s["accelerator"].unwrap_model(model)
    task = next(n for n, d in s["tasks"].items() if d.type == "tagging")
    labels = len(s["tasks"][task].labels)
    out = {}
    for S in lengths:
        ids = torch.randint(1000, 20000, (32, S))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
                 "labels": torch.randint(0, labels, (32, S))}
        flops = step_flops(batch["attention_mask"], "tagging", labels, unwrapped.config.encoder)["padded"]["total"]
        row = {}
        for mode in ("train_dropout_on", "eval_dropout_off"):
            model.train(mode == "train_dropout_on")
            best = math.inf
            for _ in range(repeats + 1):
                start = time.perf_counter()
                loss = model(**batch, task=task).loss
                s["accelerator"].backward(loss)
                best = min(best, time.perf_counter() - start)
                unwrapped.zero_grad(set_to_none=True)
            row[mode] = {"fwd_bwd_ms": 1000 * best, "gflops": flops / best / 1e9,
                         "fraction_of_peak": flops / best / 1e9 / peak_gflops}
        model.train()
        out[f"32x{S}"] = row
        print(f"  fixed batch 32x{S} fwd+bwd: dropout on {row['train_dropout_on']['fwd_bwd_ms']:.0f} ms "
              f"({row['train_dropout_on']['fraction_of_peak']:.1%} of peak), dropout off "
              f"{row['eval_dropout_off']['fwd_bwd_ms']:.0f} ms ({row['eval_dropout_off']['fraction_of_peak']:.1%})",
              flush=True)
    return out


def optimizer_variants(s, repeats: int = 10) -> dict:
    """AdamW step time on a copy of the model's parameters: for-loop (torch's default on CPU), foreach, and
    fused (mtnlp's: make_optimizer uses fused=True)."""
    params = [p.detach().clone().requires_grad_(True) for p in s["model"].parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    out = {"parameters": sum(p.numel() for p in params)}
    for name, kwargs in (("for_loop (torch default on CPU)", {"foreach": False}),
                         ("foreach", {"foreach": True}), ("fused (used by mtnlp)", {"fused": True})):
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
    parser.add_argument("--peak-repeats", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=10, help="profiled steps when below target (0: none)")
    parser.add_argument("--profile", action="store_true", help="profile and run the diagnostics even above target")
    parser.add_argument("--target", type=float, default=0.35)
    parser.add_argument("--wait-idle", type=float, default=0,
                        help="first wait up to this many seconds for the 1-min load average to drop below 0.5")
    parser.add_argument("--output", default=str(benchlib.RESULTS / "utilisation.json"))
    args = parser.parse_args()

    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    results = benchlib.environment()
    results["wait_for_idle"] = idle
    print(f"bf16 matmul peak on {torch.get_num_threads()} threads:", flush=True)
    peak = matmul_peak(args.peak_repeats)
    print(f"peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['peak_shape']}); bf16/fp32 at 4096³ "
          f"{peak['bf16_over_fp32_4096']:.1f}x", flush=True)
    with tempfile.TemporaryDirectory(prefix="mtnlp-util-") as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "hf-datasets-cache")
        s = build(Path(tmp), args)
        model = s["accelerator"].unwrap_model(s["model"])
        optimizer = getattr(s["optimizer"], "optimizer", s["optimizer"])  # under Accelerate's wrapper
        train = measure_training(s, args, peak["peak_gflops"], args.target)
        print(f"mtnlp training step: {train['ms_per_step']:.0f} ms/step, {train['achieved_gflops_whole_step']:.0f} "
              f"GFLOP/s = {train['fraction_of_peak']:.1%} of peak (fwd+bwd only {train['fraction_of_peak_fwd_bwd_only']:.1%}; "
              f"non-pad FLOPs only {train['fraction_of_peak_useful_non_pad']:.1%}); padding {train['padding_fraction']:.1%}; "
              f"time: " + ", ".join(f"{k} {v:.0%}" for k, v in train["time_share"].items())
              + f"; the target needs {train['ms_per_step_needed_for_target']:.0f} ms/step, the optimizer step alone "
              f"takes {train['optimizer_ms_per_step']:.0f} ms", flush=True)
        for task, r in train["per_task"].items():
            print(f"  {task}: {r['steps']} steps, mean batch {r['mean_batch_shape'][0]:.0f}x{r['mean_batch_shape'][1]:.1f}, "
                  f"{r['ms_per_step']:.0f} ms/step, {r['fraction_of_peak']:.1%} of peak "
                  f"(fwd+bwd only {r['fraction_of_peak_fwd_bwd_only']:.1%})", flush=True)
        diagnostics = None
        if (train["fraction_of_peak"] < args.target or args.profile) and args.profile_steps:
            print(f"below the {args.target:.0%} target: profiling {args.profile_steps} steps and diagnostics", flush=True)
            diagnostics = {"profile": profile(s, args.profile_steps)}
            for op in diagnostics["profile"]["top10_by_self_cpu"]:
                print(f"  {op['op']:<55} {op['self_cpu_ms']:8.0f} ms  {op['self_share']:.1%}  ({op['calls']} calls)")
            for name, share in diagnostics["profile"]["self_cpu_share_by_category"].items():
                print(f"  {share:6.1%}  {name}", flush=True)
            diagnostics["fixed_shape_fwd_bwd"] = shape_sweep(s, peak["peak_gflops"])
            diagnostics["optimizer_step"] = optimizer_variants(s)
            print("  AdamW step: " + ", ".join(f"{k.split(' ')[0]} {v['step_ms']:.0f} ms"
                                              for k, v in diagnostics["optimizer_step"].items()
                                              if isinstance(v, dict) and "step_ms" in v), flush=True)
    results.update({
        "config": {"steps_timed": args.steps, "warmup_steps": args.warmup, "max_examples_per_task": args.max_examples,
                   "batch_size": args.batch_size, "batch_tokens": args.batch_tokens, "max_length": args.max_length, "precision": "bf16 autocast",
                   "mtnlp_precision": s["precision"].as_dict(),
                   "mtnlp_optimizer": {"class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
                                       **{k: optimizer.defaults.get(k) for k in ("fused", "foreach")}},
                   "encoder": benchlib.ENCODER, "attn_implementation": model.config.encoder._attn_implementation,
                   "params": sum(p.numel() for p in model.parameters()),
                   "flop_model": "3x forward; forward = 2*params_in_linear*tokens + 2*2*L*S^2*hidden per sequence "
                                 "+ head; on padded shapes (executed) and non-pad lengths (useful)"},
        "matmul_peak": peak,
        "training": train,
        "fraction_of_peak": train["fraction_of_peak"],
        "target": args.target,
        "diagnostics": diagnostics,
        "loadavg_at_end": list(os.getloadavg()),
    })
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    sys.exit(main())
