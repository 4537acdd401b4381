"""Inference speed: the 3-head MultiTaskPipeline vs 3 exported single-task models run one after another.

Same texts (SST-2 dev sentences from recipes/data), same encoder (all-MiniLM-L6-v2), same batch size
and precision, same machine, one invocation. Speed does not depend on the weights, so the heads are
freshly initialised. Each precision (fp32, then bf16) is the pipeline's `precision=` and the autocast
of the baselines. Writes bench/results/inference.json.

The sides do not process the same number of tokens: MultiTaskPipeline sorts the texts by length before
batching (little padding), the baselines batch in input order (transformers.pipeline and the plain
forward passes alike), and each of the 3 baselines runs its own encoder pass. One untimed pass of each
side with a forward pre-hook on the encoder counts the tokens its encoder passes got (`encoder_tokens`:
padded, non-pad, passes) so the ratios can be split into these two causes.

    python bench/inference.py [--texts 872] [--batch-size 32] [--repeats 3] [--output PATH]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, pipeline

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.encoders import resolve_encoder
from mtnlp.export import export_head

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"]},
    "question": {"type": "classification", "labels": ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]},
    "pos": {"type": "tagging", "labels": ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
                                          "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]},
}


def count_encoder_tokens(encoders: list[torch.nn.Module], fn) -> dict:
    """Run fn() once with a forward pre-hook on each encoder module: the tokens (padded and non-pad) and
    the number of encoder passes they got."""
    counts = {"padded_tokens": 0, "non_pad_tokens": 0, "encoder_passes": 0}

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        counts["padded_tokens"] += ids.numel()
        counts["non_pad_tokens"] += int(mask.sum()) if mask is not None else ids.numel()
        counts["encoder_passes"] += 1

    handles = [encoder.register_forward_pre_hook(hook, with_kwargs=True) for encoder in encoders]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    counts["padding"] = round(1 - counts["non_pad_tokens"] / max(counts["padded_tokens"], 1), 4)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=872)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(benchlib.RESULTS / "inference.json"))
    args = parser.parse_args()
    texts = benchlib.sst2_dev_texts()[: args.texts]

    encoder = resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(encoder, TASKS)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    results = {"texts": len(texts), "batch_size": args.batch_size, "repeats": args.repeats,
               "machine": platform.processor() or platform.machine(), **benchlib.environment()}
    with tempfile.TemporaryDirectory() as tmp:
        single, plain = {}, {}
        for name in TASKS:
            folder = Path(tmp) / name
            export_head(model, name).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            kind = "token-classification" if TASKS[name]["type"] == "tagging" else "text-classification"
            single[name] = pipeline(kind, model=str(folder), device="cpu")
            plain[name] = single[name].model.eval()
        for precision in ("fp32", "bf16"):
            multi = MultiTaskPipeline(model, tokenizer, device="cpu", precision=precision, batch_size=args.batch_size)
            autocast = multi.precision.autocast  # the baselines run in the pipeline's precision

            def run_single():
                with autocast():
                    for pipe in single.values():
                        pipe(texts, batch_size=args.batch_size)

            def run_plain():  # the lower bound for 3 models: batched forward passes only, no pre/post-processing
                with torch.no_grad(), autocast():
                    for model_ in plain.values():
                        for i in range(0, len(texts), args.batch_size):
                            model_(**tokenizer(texts[i:i + args.batch_size], padding=True, truncation=True,
                                               return_tensors="pt"))

            multi(texts[:64]), run_single(), run_plain()  # warm-up
            t_multi = benchlib.best_of(args.repeats, lambda: multi(texts))
            t_single = benchlib.best_of(args.repeats, run_single)
            t_plain = benchlib.best_of(args.repeats, run_plain)
            baseline_encoders = [model_.base_model for model_ in plain.values()]
            tokens = {"multitask_pipeline": count_encoder_tokens([model.encoder], lambda: multi(texts)),
                      "three_transformers_pipelines": count_encoder_tokens(baseline_encoders, run_single),
                      "three_plain_forward_passes": count_encoder_tokens(baseline_encoders, run_plain)}
            results[precision] = {
                "pipeline_precision": multi.precision.as_dict(),
                "multitask_pipeline_sentences_per_s": len(texts) / t_multi,
                "three_transformers_pipelines_sentences_per_s": len(texts) / t_single,
                "three_plain_forward_passes_sentences_per_s": len(texts) / t_plain,
                "ratio_vs_pipelines": t_single / t_multi,
                "ratio_vs_plain_forward": t_plain / t_multi,
                "encoder_tokens": tokens,
            }
            print(f"{precision}: 3-head pipeline {len(texts) / t_multi:.0f} sentences/s | 3 transformers pipelines "
                  f"{len(texts) / t_single:.0f} ({t_single / t_multi:.2f}x) | 3 plain batched forwards "
                  f"{len(texts) / t_plain:.0f} ({t_plain / t_multi:.2f}x) | padded tokens "
                  + ", ".join(f"{side} {c['padded_tokens']:,} ({c['padding']:.1%} padding)" for side, c in tokens.items()))
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    sys.exit(main())
