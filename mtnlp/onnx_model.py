"""ONNX: a multi-task model's heads in one graph (one encoder pass, one output per task, dynamic batch
and length), optionally int8 (onnxruntime's dynamic quantisation of the weights), and a model that runs
it with what the pipeline asks of a model, so MultiTaskPipeline, `mtnlp predict` and `mtnlp serve`
take an ONNX folder as they take a model folder."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from .errors import UserError, quiet_loggers, require
from .export import save_export_tokenizer
from .folders import ONNX_FILE, ONNX_INPUTS
from .modeling import MultiTaskConfig, MultiTaskModel, checked_tasks


def onnx_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's errors for a model file it cannot load (they derive from Exception only)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort
    except ImportError:
        return ()
    return tuple(getattr(ort, name) for name in ("Fail", "InvalidProtobuf", "InvalidGraph", "NoSuchFile")
                 if hasattr(ort, name))


class _Heads(nn.Module):
    """forward_heads with positional inputs and a tuple of outputs, as the exporter traces it."""

    def __init__(self, model: MultiTaskModel, tasks: list[str]):
        super().__init__()
        self.model, self.tasks = model, tasks

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.model.forward_heads(input_ids, attention_mask, token_type_ids, tasks=self.tasks)
        return tuple(out[t] for t in self.tasks)


@contextlib.contextmanager
def quiet_exporter():
    """torch's exporter warns about its own internals (deprecated pytree classes, torchvision not
    installed, dynamic axis renames), onnxscript's optimizer about ops it does not fold (DeBERTa's
    LayerNormalization), onnxruntime's quantizer (on the root logger) about optional pre-processing:
    nothing a user of `mtnlp export` can act on."""
    with quiet_loggers("torch.onnx", "onnxscript", None), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def export_onnx(model: MultiTaskModel, tokenizer, out: str | Path, tasks: list[str] | None = None,
                quantize: str | None = None) -> Path:
    """Write OUT/model.onnx (the heads of `tasks`, default all), the model's config (its task registry
    reduced to those heads) and tokenizer. Every head reads the same (batch, length) inputs: a multiple
    choice head gives one score per sequence (OnnxMultiTaskModel folds them into (batch, choices)), a
    question-answering head a start and an end logit per token."""
    model = copy.deepcopy(model).float().cpu().eval()  # the caller's model keeps its dtype, device and mode
    for t in tasks or []:
        if t not in model.config.tasks:
            raise UserError(f"--task {t}: the model has no such task (it has: {', '.join(model.config.tasks)})")
    tasks = list(dict.fromkeys(tasks or model.config.tasks))  # --task given twice: one head
    for t in [t for t in model.config.tasks if t not in tasks]:  # (the copy's): only the exported heads are traced
        del model.heads[t]
    # sdpa's graph adds a NaN guard and reshapes to every layer: onnxruntime runs the eager attention's 1.1x (fp32) to
    # 1.2x (int8) faster, with the same outputs
    model.encoder.set_attn_implementation("eager")
    # torch writes the traced modules' names into Python source: a '"' or '\' in a task name (which an older mtnlp
    # allowed) breaks it; per-task layers or adapters are all traced, whichever heads are exported
    traced = tasks if model.config.sharing is None else list(model.config.tasks)
    if odd := next((t for t in traced if '"' in t or "\\" in t), None):
        raise UserError(f"task {odd}: torch's ONNX exporter cannot take a '\"' or '\\' in a task name (an older "
                        "mtnlp allowed them): " + ("export the other heads (--task)" if model.config.sharing is None else
                                                   "with per-task layers or adapters the model cannot be exported"))
    # token types only where the model reads them and the tokenizer gives them (transformers 5's ALBERT, XLNet and
    # Funnel tokenizers give none, so their models read zeros in training and predict): an input the folder's own
    # tokenizer does not give would fail a plain onnxruntime call
    given = "token_type_ids" in tokenizer.model_input_names
    names = list(ONNX_INPUTS if model.uses_token_type_ids and given else ONNX_INPUTS[:2])
    if clash := [t for t in tasks if t in names]:
        raise UserError(f"task {clash[0]}: an input of the ONNX graph has that name; a head's output cannot have it")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    example = tokenizer(["a short text", "and a longer second text for the example batch"], padding=True,
                        return_tensors="pt")
    args = tuple(example[n] if n in example else torch.zeros_like(example["input_ids"]) for n in names)
    batch = length = torch.export.Dim.AUTO  # (named Dims: a guard the trace adds is an error before torch 2.10)
    with tempfile.TemporaryDirectory() as tmp, quiet_exporter():
        raw = Path(tmp) / ONNX_FILE
        torch.onnx.export(_Heads(model, tasks).eval(), args, str(raw), input_names=names,
                          output_names=[f"{OUTPUT_PREFIX}{i}" for i in range(len(tasks))],
                          dynamic_shapes={n: {0: batch, 1: length} for n in names}, dynamo=True,
                          verbose=False, external_data=False)  # one self-contained file
        name_outputs(raw, tasks)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per-channel scales: on the demo model 0.2-0.7 points from fp32, per-tensor 1.3-1.4 (BENCHMARKS.md);
            # the heads stay fp32: they are a sliver of the FLOPs, and their errors reach the outputs unsoftened
            quantize_dynamic(str(raw), str(out / ONNX_FILE), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=head_nodes(raw))
        elif quantize is None:
            shutil.copyfile(raw, out / ONNX_FILE)
        else:
            raise UserError(f"--quantize {quantize}: only int8 is supported")
    config = MultiTaskConfig.from_dict(model.config.to_dict())
    config.dtype = config.encoder.dtype = torch.float32  # the graph's (a half-precision model's config says its own)
    config.tasks = {t: model.config.tasks[t] for t in tasks}
    config.mtnlp = {**(config.mtnlp or {}), "onnx": {"tasks": tasks, "quantize": quantize}}
    config.save_pretrained(out)
    save_export_tokenizer(model, tokenizer, out)  # giving the graph's inputs (token types only where it takes them)
    return out


OUTPUT_PREFIX = "mtnlp_output_"  # the outputs' names while exporting (then the tasks')


def name_outputs(path: Path, tasks: list[str]) -> None:
    """Name the graph's outputs by task, and its dynamic axes batch and sequence (the exporter's s0, s1...).
    The exporter names inner values after their ops (linear, gelu, layer_norm, add_3): an inner value that has
    a task's name is renamed first (an ONNX name is defined once)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    axes = {}
    for value in graph.input:  # (batch, length) each
        for dim, axis in zip(value.type.tensor_type.shape.dim, ("batch", "sequence")):
            if not dim.HasField("dim_param"):  # (Dim.AUTO fixes an axis the trace specialised, silently)
                raise UserError(f"export --onnx: tracing this model fixed the {axis} axis of its {value.name} to "
                                f"{dim.dim_value}: the graph would take no other {axis} size")
            axes[dim.dim_param] = axis
    for value in (*graph.input, *graph.value_info, *graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in axes:
                dim.dim_param = axes[dim.dim_param]
    inner = {v for node in graph.node for v in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    taken = inner | set(tasks)  # a fresh name must not be a later task's
    rename = {}
    for task in tasks:
        if task in inner:
            fresh = next(f"{task}_{k}" for k in range(len(taken) + 1) if f"{task}_{k}" not in taken)
            rename[task] = fresh
            taken.add(fresh)
    rename.update({f"{OUTPUT_PREFIX}{i}": task for i, task in enumerate(tasks)})
    for node in graph.node:
        node.input[:] = [rename.get(v, v) for v in node.input]
        node.output[:] = [rename.get(v, v) for v in node.output]
    for value in (*graph.initializer, *graph.value_info, *graph.output):
        value.name = rename.get(value.name, value.name)
    onnx.save(model, str(path))


def head_nodes(path: Path) -> list[str]:
    """Names of the graph's nodes that read a head's weights (initializers named *heads.*), and of the
    matmuls whose output such a node reads (a 3-D linear exports as MatMul + Add: only its bias keeps
    the parameter's name)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer if init.name.startswith("heads.") or ".heads." in init.name}
    heads = [node for node in graph.node if weights.intersection(node.input)]
    feeding = {name for node in heads for name in node.input}
    matmuls = [node.name for node in graph.node if node.op_type == "MatMul" and feeding.intersection(node.output)]
    # quantize_dynamic first splits a Gemm into NAME_MatMul + NAME_Add, and then applies its exclusions
    return [node.name for node in heads] + matmuls + [f"{node.name}_MatMul" for node in heads if node.op_type == "Gemm"]


class OnnxMultiTaskModel:
    """An exported ONNX folder run by onnxruntime on the CPU, with the interface the pipeline uses
    (config, uses_token_type_ids, forward_heads, to, eval)."""

    def __init__(self, folder: str | Path):
        require("onnxruntime", "onnx", f"running the ONNX export {folder}")
        import onnxruntime

        folder = Path(folder).expanduser()
        self.config = MultiTaskConfig.from_pretrained(folder)
        self.config.tasks = checked_tasks(self.config.tasks, new=False)  # as a PyTorch model's (a hand-edited threshold)
        self.session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
        outputs = [o.name for o in self.session.get_outputs()]
        if set(outputs) != set(self.config.tasks):  # e.g. a deploy folder given only the new model.onnx
            raise UserError(f"{folder}: model.onnx's outputs ({', '.join(sorted(outputs))}) are not config.json's heads "
                            f"({', '.join(self.config.tasks)}): the two files come from different exports")
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.uses_token_type_ids = "token_type_ids" in self.inputs
        self.device = torch.device("cpu")
        self.quantize = ((self.config.mtnlp or {}).get("onnx") or {}).get("quantize")  # None or "int8"

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, task: str | None = None):
        """One head's `logits` (only), as MultiTaskModel's forward gives them (evaluation.py, `mtnlp evaluate`,
        the pipelines of types with their own inputs): (batch, choices, length) inputs give (batch, choices)."""
        shape = input_ids.shape
        if len(shape) == 3:  # every choice is one sequence (multiple choice)
            flat = [None if x is None else x.flatten(0, 1) for x in (input_ids, attention_mask, token_type_ids)]
            return SimpleNamespace(logits=self.forward_heads(*flat, [task])[task].view(shape[0], shape[1], -1).squeeze(-1))
        return SimpleNamespace(logits=self.forward_heads(input_ids, attention_mask, token_type_ids, [task])[task])

    def parameters(self):
        yield torch.empty(0)  # where inputs go: the CPU

    def to(self, device) -> "OnnxMultiTaskModel":
        if torch.device(device).type != "cpu":
            raise UserError("an ONNX model runs on the CPU (onnxruntime); give device='cpu'")
        return self

    def forward_heads(self, input_ids, attention_mask=None, token_type_ids=None, tasks=None) -> dict:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {n: (given[n] if given[n] is not None else torch.zeros_like(input_ids)).cpu().numpy() for n in self.inputs}
        tasks = list(tasks or self.config.tasks)
        return {t: torch.from_numpy(v) for t, v in zip(tasks, self.session.run(tasks, feed))}

    def __repr__(self) -> str:
        return f"OnnxMultiTaskModel({json.dumps(self.config.mtnlp.get('onnx'))})"
