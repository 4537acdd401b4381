"""One precision policy for training, evaluation, `mtnlp predict` and the pipeline.

`auto` picks bf16 only where the hardware runs it natively: a CUDA device with bf16, or a CPU with
AVX512-BF16 or AMX that torch's oneDNN backend uses. Elsewhere bf16 is emulated and much slower than
fp32 (measured on an AVX2-only EPYC: matmuls 20-400x slower), though transformers and Accelerate call
it "available" on any CPU. fp16 is auto's choice only on a CUDA device without bf16; on a CPU, fp16
runs as fp32, since Accelerate does not autocast fp16 there (training would say fp16 and run fp32), and a
model's fp16 weights are cast to fp32 (for_model).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

import torch

from .spec import precision_name  # (the spelling rule: torch-free, for the CLI)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")  # (torch.autocast refuses others, e.g. meta)


@dataclass(frozen=True)
class Precision:
    requested: str  # auto | bf16 | fp16 | fp32
    name: str  # what runs: bf16 | fp16 | fp32
    device_type: str
    reason: str
    warning: str | None = None  # set when an explicit choice will be slow on this hardware
    cast: bool = True  # False: the weights are in this dtype already (for_model): no autocast

    @property
    def accelerate(self) -> str:
        """The value for Accelerator(mixed_precision=...)."""
        return "no" if self.name == "fp32" else self.name

    def autocast(self):
        """A context manager running the forward pass in this precision: fp32, and weights in their own dtype,
        with autocast off (a caller's own autocast around a pipeline call would otherwise run bf16 under fp32)."""
        if self.name == "fp32" or not self.cast:
            return (torch.autocast(self.device_type, enabled=False) if self.device_type in AUTOCAST_DEVICES
                    else contextlib.nullcontext())
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name])

    def describe(self) -> str:
        return f"precision: {self.name} ({self.reason})"

    def as_dict(self) -> dict:
        return {"requested": self.requested, "used": self.name, "device": self.device_type, "reason": self.reason}


# oneDNN's ISAs below AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA's values, in its order): capped to one, oneDNN emulates bf16
BELOW_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_MIC", "AVX512_MIC_4OPS", "AVX512_CORE",
                   "AVX512_CORE_VNNI")
# and those with bf16 but below its AMX kernels
BF16_WITHOUT_AMX_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512")


def cpu_native() -> tuple[bool, str]:
    """Whether this CPU computes bf16 matmuls natively, and the instructions why."""
    amx = torch.cpu._is_amx_tile_supported()
    if not torch.cpu._is_avx512_bf16_supported():  # (oneDNN's AMX kernels need AVX512-BF16 too)
        return False, "no AVX512-BF16 (oneDNN's AMX kernels need it too)" if amx else "no AVX512-BF16 or AMX"
    # oneDNN can be capped below what the CPU has; torch still reports bf16 support under an AVX-512 cap, where
    # oneDNN emulates it (matmuls about 2x slower than fp32). oneDNN reads DNNL_ only without ONEDNN_, any case
    variable = "ONEDNN_MAX_CPU_ISA" if os.environ.get("ONEDNN_MAX_CPU_ISA") else "DNNL_MAX_CPU_ISA"
    cap = os.environ.get(variable, "").upper()
    if cap in BELOW_BF16_ISAS:
        return False, f"{variable}={cap} keeps oneDNN below AVX512_CORE_BF16: it emulates bf16"
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False, "oneDNN does not use its bf16 units"
    return True, "AMX and AVX512-BF16" if amx and cap not in BF16_WITHOUT_AMX_ISAS else "AVX512-BF16"


def for_model(requested, model) -> Precision:
    """The precision for evaluating or predicting with `model` (on its device). Weights that are not all fp32
    (loaded or cast so) are cast to fp32, in place, where fp32 runs (asked for, or auto's choice), and fp16 ones
    on a CPU whatever runs (fp16 runs as fp32 there; bf16 autocast then runs over the fp32 weights, as for an
    fp32 model), and bf16 ones where fp16 runs (a CUDA device without bf16: auto's fp16). Where a half precision
    runs, weights all bf16 or all fp16 run in their own dtype without autocast (bf16 autocast over fp16 weights fails
    in layer_norm), and mixed ones under autocast."""
    chosen = resolve(requested, next(model.parameters()).device)
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes <= {torch.float32}:
        return chosen
    if chosen.name == "fp32":
        model.float()
        return replace(chosen, reason=f"{chosen.reason}; the model's half-precision weights cast to fp32")
    if chosen.device_type == "cpu" and torch.float16 in dtypes:
        model.float()
        return replace(chosen, reason=f"{chosen.reason}; the model's fp16 weights cast to fp32 (fp16 runs as fp32 "
                                      "on a CPU)")
    if chosen.name == "fp16" and torch.bfloat16 in dtypes:  # fp16 runs where bf16 does not (or was asked for)
        model.float()
        return replace(chosen, reason=f"{chosen.reason}; the model's bf16 weights cast to fp32 for fp16 autocast "
                                      "(bf16 values can overflow fp16)")
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtypes.pop()) if len(dtypes) == 1 else None
    if name is None:
        return chosen
    # asked for (or auto's choice): an explicit bf16 keeps its warning where bf16 is slow
    warning = chosen.warning if chosen.requested in ("auto", name) else \
        f"{chosen.requested} requested, but the model's weights are {name}: it runs in {name} (fp32, if asked for, casts them)"
    return Precision(chosen.requested, name, chosen.device_type, f"the model's weights are {name}", warning, cast=False)


def for_onnx(requested, quantize: str | None = None) -> Precision:
    """An ONNX model (mtnlp export --onnx) runs in fp32 on onnxruntime's CPU kernels, whatever was asked; one
    exported with `--quantize int8` multiplies int8 weights by int8-quantised activations."""
    requested = precision_name(requested)
    ignored = None if requested in ("auto", "fp32") else f"{requested} does not apply to an ONNX model: it runs in fp32"
    if quantize and requested == "fp32":  # its int8 matmuls stay: answers still vary with what a call batches
        ignored = ("fp32 does not apply to the int8 matmuls of an int8 export: for answers that do not depend on the "
                   "inputs batched with them, export without --quantize")
    why = ("an ONNX model with int8 weights (dynamic quantisation: int8 matmuls, fp32 elsewhere) on onnxruntime; "
           "activations are quantised per call, so an answer varies a little with the inputs batched with it"
           if quantize else "an ONNX model runs in fp32 on onnxruntime")
    return Precision(requested, "fp32", "cpu", why, ignored)


def resolve(requested, device: torch.device | str) -> Precision:
    """The precision to run on `device` for a user's setting (auto | bf16 | fp16 | fp32 | no | false)."""
    requested = precision_name(requested)
    device_type = torch.device(device).type
    if requested == "fp32":
        return Precision(requested, "fp32", device_type, "requested")
    if device_type == "cuda":
        index = torch.device(device).index  # that device's answer, not the current one's (cuda:1)
        with torch.cuda.device(index) if index is not None else contextlib.nullcontext():
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        if requested == "auto":
            name = "bf16" if bf16 else "fp16"
            return Precision(requested, name, device_type, f"auto: the CUDA device {'has' if bf16 else 'lacks'} bf16")
        if requested == "bf16" and not bf16:
            return Precision(requested, "bf16", device_type, "requested",
                             "this CUDA device has no native bf16: expect it to be slow; use auto or fp16")
        return Precision(requested, requested, device_type, "requested")
    if device_type == "cpu":
        if requested == "auto":
            native, why = cpu_native()
            if native:
                return Precision(requested, "bf16", device_type, f"auto: this CPU runs bf16 natively ({why})")
            return Precision(requested, "fp32", device_type,
                             f"auto: this CPU has no native bf16 ({why}), where bf16 is much slower than fp32")
        if requested == "fp16":  # Accelerate's training would run it in fp32; evaluation and predict do the same
            return Precision(requested, "fp32", device_type, "fp16 requested, which runs as fp32 on a CPU",
                             "fp16 on a CPU runs as fp32 (Accelerate does not autocast fp16 on a CPU); "
                             "use bf16 or auto for half precision on a CPU")
        native, why = cpu_native()
        if not native:
            return Precision(requested, requested, device_type, "requested",
                             f"bf16 on a CPU without native bf16 ({why}) runs much slower than fp32 "
                             "(matmuls 2-400x slower); use auto or fp32")
        return Precision(requested, requested, device_type, f"requested; this CPU has {why}")
    if requested == "auto":  # mps, xpu, ...: no measured rule, so the safe choice
        return Precision(requested, "fp32", device_type, f"auto: no rule for {device_type} devices; set bf16 or fp16")
    return Precision(requested, requested, device_type, "requested")
