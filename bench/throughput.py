"""Training throughput: one mtnlp multi-task run vs standard HF Trainer single-task runs, one per task.

Both sides train all-MiniLM-L6-v2 on the same examples (a seeded sample of --max-examples training
examples each of SST-2, CoNLL-2003 NER and UD-EWT UPOS from ../shared/data), tokenised with the same
tokenizer and max_length, batch size 32, the same precision (--precision: auto, the default, is bf16 autocast on a CPU with native
bf16 and fp32 elsewhere, as mtnlp's policy picks; or bf16 or fp32), on the same machine in one invocation.

- mtnlp: `run = mtnlp.train.setup(load_recipe(...))` on a 3-task recipe (temperature sampling,
  group_by_length, training.mixed_precision = --precision, no evaluation or checkpoints), then the loop
  of recipes/multitask.py for --steps optimizer steps: `train_step(run)` (the real step: the
  DataLoader's next batch, forward with the head's loss, loss weighting, backward, gradient clipping,
  optimizer step, schedule step) and `log_step(run, task)`. The optimizer is whatever setup() built
  (mtnlp.train.make_optimizer: torch.optim.AdamW(fused=True)); the results record its class and its
  fused / foreach flags as read from `run.optimizer`.
- HF Trainer: AutoModelForSequenceClassification (SST-2) / AutoModelForTokenClassification (NER, UPOS),
  dynamic padding (DataCollatorWithPadding / DataCollatorForTokenClassification), bf16=True (--precision
  bf16) or False (fp32), use_cpu=True, no eval, no saving; the same total number of optimizer steps, split
  across the tasks as mtnlp's task sampler splits them. Three variants: default (random) sampling, as a
  user would run it, with Trainer's default optimizer (optim="adamw_torch_fused": torch AdamW with
  fused=True, as mtnlp's); train_sampling_strategy="group_by_length" with the same default optimizer;
  and group_by_length with optim="adamw_torch" (torch AdamW without fused=True, which on CPU runs
  torch's per-parameter for-loop implementation: a slower optimizer step than mtnlp's). The results
  record each run's optimizer as read from `trainer.optimizer`.

Throughput = NON-PAD tokens trained on / wall time of the training loop only (model loading and
tokenisation excluded on both sides). mtnlp: from before the first train_step to after the last
log_step; tokens counted by a generator passed the Run's own batch iterator (`run.batches`, the
DataLoader's) that counts each batch train_step takes from it, checked against the batch plan's own
per-task counts (`run.positions["seen"]`); nothing in mtnlp is replaced. Trainer: from on_train_begin
to on_step_end of the last step; tokens counted by a forward pre-hook on the model (so exactly the
batches that were trained on). Each side runs in its own subprocess; peak RSS per subprocess comes from
os.wait4 (mtnlp: setup and the loop; no end-of-run evaluation or save). Writes
bench/results/throughput.json (in fp32: bench/results/throughput_fp32.json) unless --output.

    python bench/throughput.py [--steps 300] [--max-examples 4000] [--batch-size 32] [--precision auto|bf16|fp32]
                               [--wait-idle 0] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

TRAINER_MODEL = {"sst2": "sequence", "conll_ner": "token", "ud_upos": "token"}


# ------------------------------------------------------------------ the mtnlp side (child process)


def run_mtnlp(args) -> dict:
    import torch

    from mtnlp.recipe import load_recipe
    from mtnlp.train import log_step, setup, train_step

    work = Path(args.workdir)
    recipe_path = benchlib.write_recipe(work / "recipe.yaml", work / "data", work / "mtnlp-run", args.steps,
                                        args.batch_size, args.max_length, precision=args.precision)
    start = time.perf_counter()
    run = setup(load_recipe(recipe_path))  # tokenisation, model, optimizer, DataLoader: not timed
    setup_seconds = time.perf_counter() - start
    loader_iterator = type(run.batches).__qualname__
    stats = {"non_pad_tokens": 0, "padded_tokens": 0, "batches": 0, "task_counts": {}}

    def counting(batches):
        """The Run's own batch iterator, passed through: counts what train_step takes from it."""
        for task, batch, positions in batches:
            mask = batch["attention_mask"]
            stats["non_pad_tokens"] += int(mask.sum())
            stats["padded_tokens"] += mask.numel()
            stats["batches"] += 1
            stats["task_counts"][task] = stats["task_counts"].get(task, 0) + 1
            yield task, batch, positions

    run.batches = counting(run.batches)
    step_seconds = 0.0
    # the loop of recipes/multitask.py with the bench recipe's evaluation and checkpoints off
    # (eval_every and save_every null): train_step (DataLoader batch, forward, head loss, weighting,
    # backward, clipping, optimizer, schedule) and log_step (progress bar; a train_log.jsonl record and
    # the loss read-out every log_every steps)
    loop_start = time.perf_counter()
    while run.progress.step < args.steps:
        step_start = time.perf_counter()
        task = train_step(run)
        step_seconds += time.perf_counter() - step_start
        log_step(run, task)
    loop = time.perf_counter() - loop_start
    run.bar.close()

    seen = run.positions["seen"]  # the plan's own counts of the batches trained on, to cross-check
    if {n: c["batches"] for n, c in seen.items() if c["batches"]} != stats["task_counts"]:
        raise RuntimeError(f"counted {stats['task_counts']}, the batch plan says {seen}")
    t = run.recipe.training
    return {"side": "mtnlp", "steps": run.progress.step, "loop_seconds": loop, "train_step_seconds": step_seconds,
            "loop_seconds_outside_train_step": loop - step_seconds, "setup_seconds": setup_seconds,
            "non_pad_tokens": stats["non_pad_tokens"], "padded_tokens": stats["padded_tokens"],
            "batches": stats["batches"], "task_counts": stats["task_counts"], "plan_seen": seen,
            "non_pad_tokens_per_s": stats["non_pad_tokens"] / loop, "torch_threads": torch.get_num_threads(),
            "precision": run.precision.as_dict(), "optimizer": benchlib.optimizer_facts(run.optimizer),
            "scheduler": type(run.scheduler).__qualname__, "weighting": type(run.weighting).__qualname__,
            "gradient_method": type(run.gradient).__qualname__, "grad_accum": t.grad_accum,
            "max_grad_norm": t.max_grad_norm, "batch_iterator": loader_iterator,
            "dataloader_workers": t.dataloader_workers}


# ------------------------------------------------------------------ the HF Trainer side (child process)


# each task's subset file (benchlib.write_subsets writes them), its reading and its task type
SUBSETS = {"sst2": ("sst2.tsv", {"text_column": "sentence"}, "classification"),
           "conll_ner": ("conll_ner.conll", {"format": "conll", "tag_column": 3}, "tagging"),
           "ud_upos": ("ud_upos.conllu", {"format": "conllu", "tag_column": "upos"}, "tagging")}


def read_subset(data_dir: Path, task: str) -> tuple[list[dict], str]:
    """A task's subset as mtnlp's readers give it, and its task type: what both sides train on."""
    from mtnlp.readers import iter_examples
    from mtnlp.spec import DataSpec

    file, options, kind = SUBSETS[task]
    return list(iter_examples(data_dir / file, DataSpec(**options), kind)), kind


def run_trainer(args) -> dict:
    import datasets
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments)

    from mtnlp.encoders import resolve_encoder

    task, work = args.task, Path(args.workdir)
    encoder = resolve_encoder(benchlib.ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    examples, kind = read_subset(work / "data", task)  # the same examples mtnlp reads (its readers, the same files)

    # standard HF recipe: tokenise with truncation (no padding), label the first sub-token of each word
    if kind == "classification":
        labels = sorted({ex["label"] for ex in examples})
        ids = {label: i for i, label in enumerate(labels)}
        raw = datasets.Dataset.from_dict({"text": [ex["text"] for ex in examples],
                                          "label": [ids[ex["label"]] for ex in examples]})

        def encode(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=args.max_length)
            enc["labels"] = batch["label"]
            return enc
        collator = DataCollatorWithPadding(tokenizer)
        model_cls = AutoModelForSequenceClassification
    else:
        labels = sorted({t for ex in examples for t in ex["tags"]})
        ids = {label: i for i, label in enumerate(labels)}
        raw = datasets.Dataset.from_dict({"tokens": [ex["tokens"] for ex in examples],
                                          "tags": [[ids[t] for t in ex["tags"]] for ex in examples]})

        def encode(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=args.max_length)
            all_labels = []
            for i, tags in enumerate(batch["tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(tags[word] if word is not None and word != previous else -100)
                    previous = word
                all_labels.append(row)
            enc["labels"] = all_labels
            return enc
        collator = DataCollatorForTokenClassification(tokenizer)
        model_cls = AutoModelForTokenClassification
    train_set = raw.map(encode, batched=True, remove_columns=raw.column_names)
    train_set = train_set.map(lambda b: {"length": [len(x) for x in b["input_ids"]]}, batched=True)
    model = model_cls.from_pretrained(encoder, num_labels=len(labels))

    stats = {"non_pad_tokens": 0, "padded_tokens": 0, "batches": 0, "t0": None, "t1": None}

    def count(module, a, kwargs):
        mask = kwargs.get("attention_mask")
        stats["non_pad_tokens"] += int(mask.sum())
        stats["padded_tokens"] += mask.numel()
        stats["batches"] += 1
    model.register_forward_pre_hook(count, with_kwargs=True)

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, args_, state, control, **kw):
            stats["t0"] = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            if state.global_step == state.max_steps:
                stats["t1"] = time.perf_counter()

    extra = {}
    if args.sampling != "random":
        extra = {"train_sampling_strategy": args.sampling, "length_column_name": "length"}
    if args.optim != "default":
        extra["optim"] = args.optim
    training_args = TrainingArguments(
        output_dir=str(work / f"trainer-{task}"), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=1e-4, weight_decay=0.01, warmup_steps=math.ceil(0.1 * args.steps),
        bf16=args.precision == "bf16", use_cpu=True, report_to=[], eval_strategy="no", save_strategy="no",
        dataloader_num_workers=0, seed=42, disable_tqdm=False, **extra)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set, data_collator=collator,
                      callbacks=[LoopTimer()])
    out = trainer.train()
    loop = stats["t1"] - stats["t0"]
    return {"side": f"trainer-{args.sampling}-{args.optim}", "task": task, "steps": args.steps, "loop_seconds": loop,
            "train_runtime": out.metrics.get("train_runtime"), "non_pad_tokens": stats["non_pad_tokens"],
            "padded_tokens": stats["padded_tokens"], "batches": stats["batches"],
            "non_pad_tokens_per_s": stats["non_pad_tokens"] / loop, "optim": str(training_args.optim),
            "optimizer": benchlib.optimizer_facts(trainer.optimizer),
            "train_sampling_strategy": training_args.train_sampling_strategy,
            "precision": "bf16" if training_args.bf16 else "fp32", "torch_threads": torch.get_num_threads()}


# ------------------------------------------------------------------ the parent: runs each side, compares


def child(argv: list[str], log: Path) -> tuple[dict, float]:
    """Run `throughput.py --child ...` in its own process; return its result (with the process's CPU
    seconds) and its peak RSS in MiB."""
    out_file = log.with_suffix(".json")
    load_before = list(os.getloadavg())
    start = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, __file__, *argv, "--result", str(out_file)],
                                stdout=log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}); log:\n{log.read_text()[-4000:]}")
    result = json.loads(out_file.read_text())
    result["process_cpu_seconds"] = usage.ru_utime + usage.ru_stime  # ~2x wall on 2 uncontended cores
    result["process_wall_seconds"] = time.perf_counter() - start
    # another job on the cores shows as CPU seconds per wall second well under the 2 threads' ~1.8 and as load
    result["loadavg_before"], result["loadavg_after"] = load_before, list(os.getloadavg())
    return result, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def summarise(runs: list[dict]) -> dict:
    tokens = sum(r["non_pad_tokens"] for r in runs)
    padded = sum(r["padded_tokens"] for r in runs)
    seconds = sum(r["loop_seconds"] for r in runs)
    return {"loop_seconds": seconds, "non_pad_tokens": tokens, "padded_tokens": padded,
            "padding_fraction": 1 - tokens / padded, "non_pad_tokens_per_s": tokens / seconds,
            "padded_tokens_per_s": padded / seconds, "steps": sum(r["steps"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps in total (each side)")
    parser.add_argument("--max-examples", type=int, default=4000, help="training examples per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-grouped-trainer", action="store_true",
                        help="only the default Trainer: skip the variants with train_sampling_strategy=group_by_length "
                             "(with Trainer's default adamw_torch_fused, the same fused torch AdamW as mtnlp's, and "
                             "with optim=adamw_torch, torch AdamW without fused: its for-loop implementation on CPU)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="both sides: mtnlp's training.mixed_precision and Trainer's bf16=True/False (default "
                             "auto: bf16 autocast where this CPU runs bf16 natively, as in bench/results/throughput.json, "
                             "else fp32)")
    parser.add_argument("--wait-idle", type=float, default=0,
                        help="first wait up to this many seconds for the 1-min load average to drop below 0.5")
    parser.add_argument("--output", help="default bench/results/throughput.json; in fp32 "
                                         "bench/results/throughput_fp32.json")
    # internal: one side in a child process
    parser.add_argument("--child", choices=["mtnlp", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--sampling", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--optim", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.precision == "auto":  # mtnlp's policy, so that both sides train in what mtnlp would pick here
        from mtnlp import precision

        args.precision = precision.resolve("auto", "cpu").name
    if args.output is None:
        args.output = str(benchlib.RESULTS / ("throughput.json" if args.precision == "bf16"
                                              else f"throughput_{args.precision}.json"))

    if args.child:
        result = run_mtnlp(args) if args.child == "mtnlp" else run_trainer(args)
        result["peak_rss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        Path(args.result).write_text(json.dumps(result, indent=2))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    results = benchlib.environment()
    results["wait_for_idle"] = idle
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
              "--precision", args.precision]
    with tempfile.TemporaryDirectory(prefix="mtnlp-bench-") as tmp:
        work = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(work / "hf-datasets-cache")  # a clean cache: nothing pre-tokenised
        benchlib.write_subsets(work / "data", args.max_examples)

        sizes = {task: len(read_subset(work / "data", task)[0]) for task in SUBSETS}
        counts = benchlib.sampler_counts(sizes, args.steps)
        print(f"examples per task {sizes}; mtnlp's sampler gives {counts} of {args.steps} steps", flush=True)

        mt, mt_rss = child(["--child", "mtnlp", "--workdir", tmp, *common], work / "mtnlp.log")
        mt["peak_rss_mib"] = mt_rss
        if {t: c for t, c in mt["task_counts"].items() if c} != {t: c for t, c in counts.items() if c}:
            sys.exit(f"mtnlp drew {mt['task_counts']}, expected {counts}")
        print(f"mtnlp   {mt['non_pad_tokens_per_s']:8.0f} non-pad tokens/s  ({mt['non_pad_tokens']} tokens, "
              f"{mt['loop_seconds']:.1f} s loop, padding {1 - mt['non_pad_tokens'] / mt['padded_tokens']:.1%}, "
              f"peak RSS {mt_rss:.0f} MiB; {mt['optimizer']['class']}, {mt['optimizer']['implementation']})", flush=True)

        # (sampling, optim): Trainer as a user runs it; with length grouping (both with Trainer's default
        # adamw_torch_fused, the same torch.optim.AdamW(fused=True) as mtnlp's); and grouped with
        # optim=adamw_torch (torch AdamW without fused=True: on CPU its for-loop implementation, a slower
        # step than mtnlp's fused one)
        variants = [("random", "default")] + ([] if args.no_grouped_trainer else
                                              [("group_by_length", "default"), ("group_by_length", "adamw_torch")])
        trainer = {}
        for sampling, optim in variants:
            key = sampling if optim == "default" else f"{sampling}+{optim}"
            runs = []
            for task, steps in counts.items():
                if not steps:
                    continue
                argv = ["--child", "trainer", "--task", task, "--sampling", sampling, "--optim", optim, "--workdir", tmp,
                        "--steps", str(steps), "--batch-size", str(args.batch_size),
                        "--max-length", str(args.max_length), "--precision", args.precision]
                try:
                    run, rss = child(argv, work / f"trainer-{key}-{task}.log")
                except SystemExit as e:
                    if sampling == "random":
                        raise
                    print(f"Trainer[{key}] failed, skipped: {str(e)[:2000]}", file=sys.stderr)
                    runs = None
                    break
                run["peak_rss_mib"] = rss
                runs.append(run)
                print(f"  Trainer[{key}] {task}: {run['non_pad_tokens_per_s']:.0f} non-pad tokens/s over "
                      f"{steps} steps ({run['loop_seconds']:.1f} s, padding "
                      f"{1 - run['non_pad_tokens'] / run['padded_tokens']:.1%}, peak RSS {rss:.0f} MiB; "
                      f"{run['optimizer']['class']}, {run['optimizer']['implementation']})", flush=True)
            if runs is None:
                trainer[key] = {"failed": True}
                continue
            summary = summarise(runs)
            summary["peak_rss_mib_max"] = max(r["peak_rss_mib"] for r in runs)
            summary["per_task"] = runs
            summary["ratio_mtnlp_over_trainer"] = mt["non_pad_tokens_per_s"] / summary["non_pad_tokens_per_s"]
            trainer[key] = summary
            print(f"Trainer[{key}] {summary['non_pad_tokens_per_s']:8.0f} non-pad tokens/s "
                  f"({summary['non_pad_tokens']} tokens, {summary['loop_seconds']:.1f} s, padding "
                  f"{summary['padding_fraction']:.1%}, peak RSS max {summary['peak_rss_mib_max']:.0f} MiB) "
                  f"-> mtnlp/Trainer = {summary['ratio_mtnlp_over_trainer']:.2f}x", flush=True)

    mt_summary = summarise([mt])
    mt_summary.update({k: mt[k] for k in (
        "task_counts", "plan_seen", "train_step_seconds", "loop_seconds_outside_train_step", "setup_seconds",
        "peak_rss_mib", "peak_rss_self_mib", "process_cpu_seconds", "process_wall_seconds", "loadavg_before",
        "loadavg_after", "precision", "optimizer", "scheduler", "weighting", "gradient_method", "grad_accum",
        "max_grad_norm", "batch_iterator", "dataloader_workers")})
    results.update({
        "config": {"steps": args.steps, "max_examples_per_task": args.max_examples, "examples_per_task": sizes,
                   "batch_size": args.batch_size, "max_length": args.max_length,
                   "precision": "bf16 autocast" if args.precision == "bf16" else "fp32 (no autocast)",
                   "encoder": benchlib.ENCODER, "trainer_steps_per_task": counts,
                   "mtnlp_sampling": "temperature T=2, group_by_length (windows of 50 batches)",
                   "mtnlp_loop": "run = mtnlp.train.setup(recipe); per step train_step(run) + log_step(run, task), "
                                 "as recipes/multitask.py (evaluation and checkpoints off); timed from the first "
                                 "train_step to the last log_step",
                   "mtnlp_optimizer": mt["optimizer"],
                   "trainer_optimizers": {key: summary["per_task"][0]["optimizer"]
                                          for key, summary in trainer.items() if "per_task" in summary}},
        "precision": args.precision,
        "mtnlp": mt_summary,
        "trainer": trainer,
        "target_ratio": 1.3,
        "loadavg_at_end": list(os.getloadavg()),
    })
    for sampling, summary in trainer.items():
        if "ratio_mtnlp_over_trainer" in summary:
            results[f"ratio_vs_trainer_{sampling}"] = summary["ratio_mtnlp_over_trainer"]
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    sys.exit(main())
