"""Where the ONNX model's time goes, and whether onnxruntime's transformer fusions would help: the shipped export
(`mtnlp export --onnx`: torch's dynamo exporter, onnxruntime's online graph optimisations at load) against the
TorchScript exporter's graph run through onnxruntime.transformers' BERT optimizer, which fuses each layer's
attention into one Attention op (QAttention after int8 quantisation), and the embeddings, residual LayerNorms and
bias+GELU into EmbedLayerNormalization, SkipLayerNormalization and BiasGelu. The dynamo graph's attention is not
a pattern that optimizer knows (it fuses only the LayerNorms and GELUs).

For each backend (PyTorch fp32, shipped ONNX fp32/int8, fused ONNX fp32/int8): sentences/s through MultiTaskPipeline
on the SST-2 dev sentences (batch 32, best of --repeats), the largest logit difference from PyTorch fp32 on the first
64 sentences per head, and for the ONNX ones the graph's op types and onnxruntime's profile: each op type's share of
the kernel time.
The model is the demo's (runs/demo/model: run `make demo` first). Writes bench/results/onnx_fusion.json.

    python bench/onnx_fusion.py [--model runs/demo/model] [--repeats 3] [--wait-idle 0] [--output PATH]
"""

from __future__ import annotations

import collections
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def fused_export(pipe, shipped: Path, out: Path, quantize: bool) -> dict:
    """`shipped`'s folder with its model.onnx replaced by the TorchScript export run through the BERT optimizer
    (then int8 as `mtnlp export --quantize int8` quantises: per channel, the heads fp32). The fused ops' counts."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from mtnlp.onnx_model import ONNX_FILE, _Heads, head_nodes, quiet_exporter

    model = pipe.model.float().eval()
    model.encoder.set_attn_implementation("eager")  # (as mtnlp's export)
    tasks = list(model.config.tasks)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.uses_token_type_ids else [])
    example = pipe.tokenizer(["a short text", "and a longer second text for the example batch"], padding=True,
                             return_tensors="pt")
    args = tuple(example[n] for n in names)
    with torch.no_grad():
        outputs = _Heads(model, tasks)(*args)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({t: {0: "batch", 1: "sequence"} if o.dim() >= 3 else {0: "batch"} for t, o in zip(tasks, outputs)})
    shutil.copytree(shipped, out)
    raw, fused = out / "raw.onnx", out / "fused.onnx"
    with quiet_exporter():
        torch.onnx.export(_Heads(model, tasks).eval(), args, str(raw), input_names=names, output_names=tasks,
                          dynamic_axes=axes, dynamo=False, opset_version=17)
        config = model.config.encoder
        optimizer = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
        optimizer.save_model_to_file(str(fused))
        if quantize:
            quantize_dynamic(str(fused), str(out / ONNX_FILE), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=head_nodes(fused),
                             extra_options={"DefaultTensorType": 1})  # (FLOAT: the fused ops' outputs have no type)
        else:
            shutil.copyfile(fused, out / ONNX_FILE)
    raw.unlink()
    fused.unlink()
    return {op: n for op, n in optimizer.get_fused_operator_statistics().items() if n}


def op_shares(folder: Path, batches: list[dict]) -> dict:
    """Each op type's share of onnxruntime's kernel time over `batches` (its profiler, one pass)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for batch in batches:
        session.run(None, {n: batch[n] for n in names})
    events = json.loads(Path(session.end_profiling()).read_text())
    time = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            time[event["args"]["op_name"]] += event["dur"]
    total = sum(time.values())
    return {op: round(t / total, 4) for op, t in time.most_common()}


def main() -> None:
    args = benchlib.demo_model_options("onnx_fusion.json", __doc__.split("\n\n")[0])
    import torch

    from mtnlp import MultiTaskPipeline
    from mtnlp.cli import main as mtnlp

    texts = benchlib.sst2_dev_texts()
    reference = MultiTaskPipeline.from_pretrained(args.model, precision="fp32")
    probe = reference.tokenizer(texts[:64], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference.model.forward_heads(**probe)
    batches = [{k: v.astype("int64") for k, v in reference.tokenizer(
        texts[i:i + args.batch_size], padding=True, return_tensors="np").items()}
        for i in range(0, len(texts), args.batch_size)]
    idle = benchlib.wait_for_idle(args.wait_idle)
    results = {"environment": benchlib.environment(), "idle": idle, "texts": len(texts), "batch_size": args.batch_size,
               "repeats": args.repeats, "model": args.model, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folders, fused_ops = {"pytorch fp32": args.model}, {}
        for name, extra in (("onnx fp32", []), ("onnx int8", ["--quantize", "int8"])):
            folders[name] = Path(tmp) / name.replace(" ", "-")
            assert mtnlp(["export", args.model, "--onnx", *extra, str(folders[name])]) == 0
        for kind in ("fp32", "int8"):
            name = f"fused onnx {kind}"
            folders[name] = Path(tmp) / name.replace(" ", "-")
            fused_ops[name] = fused_export(MultiTaskPipeline.from_pretrained(args.model, precision="fp32"),
                                           folders["onnx fp32"], folders[name], quantize=kind == "int8")
        for name, folder in folders.items():
            precision = "fp32" if name == "pytorch fp32" else "auto"  # (an int8 folder's matmuls are int8 whatever)
            pipe = MultiTaskPipeline.from_pretrained(str(folder), precision=precision, batch_size=args.batch_size)
            pipe(texts[:64])  # warm-up
            seconds = benchlib.best_of(args.repeats, lambda: pipe(texts))
            with torch.no_grad():
                got = pipe.model.forward_heads(**probe)
            result = {"sentences_per_s": len(texts) / seconds, "seconds": seconds,
                      "max_abs_logit_diff_vs_pytorch_fp32": {t: float((got[t] - expected[t]).abs().max()) for t in expected}}
            if name != "pytorch fp32":
                import onnx

                result["op_time_shares"] = op_shares(Path(folder), batches)
                graph = onnx.load(str(Path(folder) / "model.onnx")).graph
                result["graph_ops"] = dict(collections.Counter(node.op_type for node in graph.node).most_common())
            if name in fused_ops:
                result["optimizer_fused_ops"] = fused_ops[name]  # (before int8 quantises Attention into QAttention)
            results["backends"][name] = result
            print(f"{name}: {result['sentences_per_s']:.1f} sentences/s, max |logit diff| "
                  + ", ".join(f"{t} {d:.1e}" for t, d in result["max_abs_logit_diff_vs_pytorch_fp32"].items()), flush=True)
    base = results["backends"]["pytorch fp32"]["sentences_per_s"]
    for result in results["backends"].values():
        result["speedup_vs_pytorch_fp32"] = result["sentences_per_s"] / base
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    main()
