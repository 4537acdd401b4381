"""What `export --onnx --quantize int8` loses on a CPU with AVX2 but without VNNI (e.g. AMD Zen 3), measured on
any CPU by emulating it.

onnxruntime multiplies an int8 export's uint8 activations by its int8 weights with MLAS's U8S8 kernels. With
VNNI (AVX512-VNNI, AVX-VNNI, AMX) each product is summed in int32. Without it (AVX2 only) the kernel uses
vpmaddubsw, which adds each pair of neighbouring products (k = 2p, 2p+1) into an int16 that saturates at
-32768..32767 before the int32 sum, so a pair of large activations times large weights is clipped. Such a CPU
cannot be asked for on a VNNI machine (onnxruntime picks its kernels from the CPU's flags), so this script runs
the demo model in PyTorch with every encoder Linear replaced by the same arithmetic as onnxruntime's dynamic
quantisation: per-tensor uint8 activations (DynamicQuantizeLinear, per call, in float32), per-channel
symmetric int8 weights (checked equal to the export's), sums exact in float64, and for `saturate` the int16
clipping of each pair. Modes:

    fp32      the model as it is (no emulation)
    exact     int8 with int32 sums (what a VNNI CPU computes)
    saturate  int8 with vpmaddubsw's pair saturation (what an AVX2 CPU without VNNI computes)
    reduce    7-bit weights (onnxruntime's reduce_range=True, the usual fix: no pair can saturate)

Each mode's metrics come from `mtnlp evaluate` on recipes/demo.yaml's validation sets; `onnx int8` adds
onnxruntime's own int8 export on this CPU, for how close the emulation comes to it (its activations are
quantised from onnxruntime's fp32 values, so a few borderline examples differ either way). Writes
bench/results/int8_saturation.json.

    python bench/int8_saturation.py [--model runs/demo/model] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

REPO = benchlib.REPO
MODES = ("fp32", "exact", "saturate", "reduce")


def quantized_weight(weight: torch.Tensor, reduce: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """onnxruntime's per-channel symmetric int8 weights of x @ weight.T: ([in, out] integers, [out] scales)."""
    w = weight.detach().float().t()  # in float32, as onnxruntime's quantizer: a value at .5 rounds as its does
    top = 64 if reduce else 127
    absmax = w.abs().amax(0)
    scale = (absmax - -absmax) / torch.tensor(2 * top, dtype=torch.float32)
    return torch.clamp(torch.round(w / scale), -top, top).double(), scale.double()


class Int8Linear(torch.nn.Module):
    """y = dequantised(uint8(x) @ int8(W)) + b, as onnxruntime's DynamicQuantizeLinear + MatMulInteger + Mul + Add."""

    def __init__(self, linear: torch.nn.Linear, reduce: bool, saturate: bool, counts: dict):
        super().__init__()
        self.wq, self.wscale = quantized_weight(linear.weight, reduce)
        self.bias = linear.bias.detach().double()
        self.saturate, self.counts = saturate, counts
        even, odd = self.wq[0::2], self.wq[1::2]
        # the (pair, column)s that some uint8 activations push past int16: few, so only they are computed
        can = (255 * (even.clamp_min(0) + odd.clamp_min(0)) > 32767) | (255 * (even.clamp_max(0) + odd.clamp_max(0)) < -32768)
        self.pairs = can.nonzero()
        counts["weight_pairs"] += even.numel()
        counts["weight_pairs_that_can_saturate"] += len(self.pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        low, high = rows.min().clamp(max=0), rows.max().clamp(min=0)
        scale = (high - low) / 255
        zero = torch.clamp(torch.round(0 - low / scale), 0, 255)
        xq = torch.clamp(torch.round(rows / scale) + zero, 0, 255).double()
        sums = xq @ self.wq
        if self.saturate:
            self.counts["pair_sums"] += xq.shape[0] * self.wq.numel() // 2
        if self.saturate and len(self.pairs):
            p, n = self.pairs[:, 0], self.pairs[:, 1]
            pair = xq[:, 2 * p] * self.wq[2 * p, n] + xq[:, 2 * p + 1] * self.wq[2 * p + 1, n]
            clipped = pair.clamp(-32768, 32767) - pair
            self.counts["saturated_pair_sums"] += int((clipped != 0).sum())
            sums.index_add_(1, n, clipped)
        y = (sums - float(zero) * self.wq.sum(0)) * float(scale) * self.wscale + self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], -1)


def encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """The Linears the int8 export quantises: the encoder layers' (the heads stay fp32)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layer." in f".{name}" and not name.startswith("heads.")}


def initializers(onnx_file: Path) -> dict:
    """The export's initializers (weights, scales, zero points) by name, as numpy arrays."""
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_file)).graph.initializer}


def exported_embeddings(held: dict) -> dict[str, torch.Tensor]:
    """The export's embedding tables as its DequantizeLinear gives them (quantize_dynamic also quantises Gather:
    per tensor, uint8), by the model's parameter name."""
    return {name.removeprefix("model.").removesuffix("_quantized"):
            (torch.from_numpy(q.astype("float32")) - float(held[name.replace("_quantized", "_zero_point")]))
            * float(held[name.replace("_quantized", "_scale")])
            for name, q in held.items() if name.endswith(".weight_quantized")}


def check_weights(model, held: dict) -> int:
    """The emulation's int8 weights equal the export's: how many weight matrices matched."""
    exported = [torch.from_numpy(a.astype("float64")) for name, a in held.items()
                if name.endswith("_quantized") and a.dtype == np.int8 and a.ndim == 2]
    matched = 0
    for linear in encoder_linears(model).values():
        mine, _ = quantized_weight(linear.weight, reduce=False)
        matched += any(a.shape == mine.shape and torch.equal(a, mine) for a in exported)
    return matched


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"))
    parser.add_argument("--output", default=str(benchlib.RESULTS / "int8_saturation.json"))
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").exists():
        sys.exit(f"{args.model}: no trained model; run `make demo` first")
    import mtnlp.cli as cli

    results = {"environment": benchlib.environment(), "model": args.model, "modes": {}}
    real_load = cli.load_model
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(tmp) / "int8"
        assert cli.main(["export", args.model, "--onnx", "--quantize", "int8", str(onnx_dir)]) == 0
        held = initializers(onnx_dir / "model.onnx")
        embeddings = exported_embeddings(held)
        for mode in (*MODES, "onnx int8"):
            counts = dict.fromkeys(("weight_pairs", "weight_pairs_that_can_saturate", "saturated_pair_sums",
                                    "pair_sums"), 0)

            def emulating(name, **kwargs):
                model, tokenizer = real_load(name, **kwargs)
                if mode == "exact":
                    results["weights_equal_to_export"] = f"{check_weights(model, held)} of {len(encoder_linears(model))}"
                if mode in ("exact", "saturate", "reduce"):
                    for module, linear in encoder_linears(model).items():
                        model.set_submodule(module, Int8Linear(linear, mode == "reduce", mode == "saturate", counts))
                    with torch.no_grad():
                        for parameter, table in embeddings.items():
                            model.get_parameter(parameter).copy_(table)
                return model, tokenizer

            cli.load_model = emulating
            out = Path(tmp) / f"{mode.replace(' ', '-')}.json"
            folder = str(onnx_dir) if mode == "onnx int8" else args.model
            try:
                assert cli.main(["evaluate", folder, str(REPO / "recipes" / "demo.yaml"),
                                 "training.mixed_precision=fp32", "--output", str(out)]) == 0
            finally:
                cli.load_model = real_load
            metrics = {t: s["validation"] for t, s in json.loads(out.read_text())["tasks"].items()}
            results["modes"][mode] = {"validation": metrics, **({"counts": counts} if counts["weight_pairs"] else {})}
            print(f"{mode}: " + ", ".join(f"{t} {next(iter(v.values())):.4f}" for t, v in metrics.items()), flush=True)
    base = results["modes"]["fp32"]["validation"]
    for r in results["modes"].values():
        r["points_vs_fp32"] = {t: {k: 100 * (v - base[t][k]) for k, v in m.items()} for t, m in r["validation"].items()}
    benchlib.write_results(Path(args.output), results)


if __name__ == "__main__":
    main()
