"""CPU inference: the PyTorch pipeline (fp32, and bf16 where the CPU runs it natively) against the same
model exported as ONNX (fp32) and ONNX int8 (onnxruntime's dynamic quantisation), all through
MultiTaskPipeline with every head, on the same machine in one invocation.

Speed: sentences/s on the SST-2 dev sentences shipped in recipes/data (872), batch size 32, best of
--repeats passes after a warm-up. Quality: each task's validation metrics (`mtnlp evaluate` on
recipes/demo.yaml) for each backend. The model is the demo's (runs/demo/model: run `make demo` first).
Writes bench/results/onnx_speed.json, with --repeats and each ONNX backend's onnxruntime thread settings
(`onnxruntime_threads`: the session's intra/inter-op thread counts, 0 meaning onnxruntime's default of one
per physical core, and the logical CPUs).

    python bench/onnx_speed.py [--model runs/demo/model] [--repeats 3] [--wait-idle 0] [--output PATH]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

REPO = benchlib.REPO


def main() -> None:
    args = benchlib.demo_model_options("onnx_speed.json", __doc__.split("\n\n")[0])
    from mtnlp import MultiTaskPipeline, precision
    from mtnlp.cli import main as mtnlp

    texts = benchlib.sst2_dev_texts()
    idle = benchlib.wait_for_idle(args.wait_idle)
    results = {"environment": benchlib.environment(), "idle": idle, "texts": len(texts),
               "batch_size": args.batch_size, "repeats": args.repeats, "model": args.model, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"pytorch fp32": (args.model, "fp32")}
        if precision.cpu_native()[0]:
            folders["pytorch bf16"] = (args.model, "bf16")
        for name, extra in (("onnx fp32", []), ("onnx int8", ["--quantize", "int8"])):
            out = Path(tmp) / name.replace(" ", "-")
            assert mtnlp(["export", args.model, "--onnx", *extra, str(out)]) == 0
            folders[name] = (str(out), "fp32")
        for name, (folder, precision_name) in folders.items():
            pipe = MultiTaskPipeline.from_pretrained(folder, precision=precision_name, batch_size=args.batch_size)
            pipe(texts[:64])  # warm-up
            seconds = benchlib.best_of(args.repeats, lambda: pipe(texts))
            metrics_file = Path(tmp) / f"{name.replace(' ', '-')}-eval.json"
            overrides = [f"training.mixed_precision={precision_name}"]
            assert mtnlp(["evaluate", folder, str(REPO / "recipes" / "demo.yaml"), *overrides,
                          "--output", str(metrics_file)]) == 0
            metrics = json.loads(metrics_file.read_text())["tasks"]
            size = sum(p.stat().st_size for p in Path(folder).glob("model.*"))
            results["backends"][name] = {"seconds": seconds, "sentences_per_s": len(texts) / seconds,
                                         "model_bytes": size, "validation": metrics}
            session = getattr(pipe.model, "session", None)
            if session is not None:
                import onnxruntime

                options = session.get_session_options()
                results["backends"][name]["onnxruntime_threads"] = {
                    "intra_op_num_threads": options.intra_op_num_threads,
                    "inter_op_num_threads": options.inter_op_num_threads,
                    "logical_cpus": os.cpu_count(), "onnxruntime": onnxruntime.__version__}
            print(f"{name}: {len(texts) / seconds:.1f} sentences/s, {size / 1e6:.0f} MB, "
                  + ", ".join(f"{t} {next(iter(v['validation'].values())):.4f}" for t, v in metrics.items()), flush=True)
    base = results["backends"]["pytorch fp32"]
    for name, r in results["backends"].items():
        r["speedup_vs_pytorch_fp32"] = r["sentences_per_s"] / base["sentences_per_s"]
        r["points_vs_pytorch_fp32"] = {t: {k: 100 * (v - base["validation"][t]["validation"][k])
                                           for k, v in s["validation"].items()} for t, s in r["validation"].items()}
    results["loadavg_at_end"] = list(os.getloadavg())
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    main()
