"""`mtnlp export --onnx`: every head in one ONNX graph (dynamic batch and length), int8, and ONNX
folders run by MultiTaskPipeline and `mtnlp predict` with the same output format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from conftest import save_model
from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.cli import main

TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"], "dropout": 0.1},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "dropout": 0.1},
    "topics": {"type": "multilabel", "labels": ["arts", "food", "travel"], "dropout": 0.1, "threshold": 0.5},
}
TEXTS = ["Ann Lee flew to Paris .", "a gorgeous , witty , seductive movie that runs on and on and on .", "ok",
         "Who was Galileo ?"]


@pytest.fixture(scope="module")
def int8_export_process(tmp_path_factory, tiny_encoder):
    """A saved model with every text task type and its int8 ONNX export by a `python -m mtnlp export` process:
    (the folder, the finished process)."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("onnx")
    save_model(folder / "model", tiny_encoder, TASKS, nudge=0.05)
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "export", str(folder / "model"), "--onnx", "--quantize",
                           "int8", str(folder / "int8")], capture_output=True, text=True, timeout=600)
    return folder, proc


@pytest.fixture(scope="module")
def exported(int8_export_process):
    """A saved model with every text task type, and its fp32 and int8 ONNX exports (via the CLI)."""
    folder, proc = int8_export_process
    assert proc.returncode == 0, proc.stderr
    assert main(["export", str(folder / "model"), "--onnx", str(folder / "fp32")]) == 0
    return folder


def onnx_session(folder):
    import onnxruntime

    return onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def run_onnx(folder, enc):
    session = onnx_session(folder)
    names = [i.name for i in session.get_inputs()]
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {n: enc[n].numpy() for n in names})))


def test_one_graph_with_every_head_equals_pytorch(exported):
    model = MultiTaskModel.from_pretrained(exported / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(exported / "fp32")
    for texts in (TEXTS, TEXTS[:1], TEXTS * 3):  # batch sizes and lengths other than the traced example's
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        outputs = run_onnx(exported / "fp32", enc)
        assert sorted(outputs) == sorted(TASKS)  # outputs named by task
        with torch.no_grad():
            expected = model.forward_heads(**enc)
        for task in TASKS:
            np.testing.assert_allclose(outputs[task], expected[task].numpy(), atol=1e-4, rtol=0)
    config = json.loads((exported / "fp32" / "config.json").read_text())
    assert sorted(config["mtnlp"]["onnx"]["tasks"]) == sorted(TASKS) and config["mtnlp"]["onnx"]["quantize"] is None


def test_the_graphs_axes_are_named_batch_and_sequence(exported):
    """The exporter names dynamic axes s0, s1, ... (and gives each input's batch its own); a user reading the
    graph (netron, onnxruntime's get_inputs) sees (batch, sequence) on every input and on the outputs."""
    for variant in ("fp32", "int8"):
        session = onnx_session(exported / variant)
        assert {tuple(i.shape) for i in session.get_inputs()} == {("batch", "sequence")}
        shapes = {o.name: o.shape for o in session.get_outputs()}
        assert shapes["ner"] == ["batch", "sequence", 5] and shapes["sentiment"] == ["batch", 2]
        assert shapes["topics"] == ["batch", 3] and shapes["score"][0] == "batch"


@pytest.mark.parametrize("input_shape", [["s0", "s1"], ["s0", 11], [4, "s1"]])
def test_an_axis_the_trace_fixed_is_refused_and_no_fixed_size_renamed(tmp_path, input_shape):
    """The exporter (Dim.AUTO) fixes an axis the trace specialised without a word: such a graph would take
    one size only. Sizes that are fixed by design (2 labels) stay numbers."""
    import onnx
    from onnx import TensorProto, helper

    from mtnlp.errors import UserError
    from mtnlp.onnx_model import OUTPUT_PREFIX, name_outputs

    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], [f"{OUTPUT_PREFIX}0"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, input_shape)],
                              [helper.make_tensor_value_info(f"{OUTPUT_PREFIX}0", TensorProto.INT64, ["s0", 2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    if input_shape == ["s0", "s1"]:
        name_outputs(tmp_path / "model.onnx", ["sentiment"])
        saved = onnx.load(str(tmp_path / "model.onnx")).graph
        shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        assert (shape(saved.input[0]), saved.output[0].name, shape(saved.output[0])) == \
            (["batch", "sequence"], "sentiment", ["batch", 2])
    else:
        axis, size = ("sequence", 11) if input_shape[1] == 11 else ("batch", 4)
        with pytest.raises(UserError, match=f"fixed the {axis} axis of its input_ids to {size}: "):
            name_outputs(tmp_path / "model.onnx", ["sentiment"])


def test_pipeline_and_predict_run_the_onnx_folder_with_the_same_output(exported, capsys):
    torch_pipe = MultiTaskPipeline.from_pretrained(str(exported / "model"), precision="fp32")
    onnx_pipe = MultiTaskPipeline.from_pretrained(str(exported / "fp32"))
    assert type(onnx_pipe.model).__name__ == "OnnxMultiTaskModel"
    assert onnx_pipe.precision.describe() == "precision: fp32 (an ONNX model runs in fp32 on onnxruntime)"
    with pytest.warns(UserWarning, match="bf16 does not apply to an ONNX model"):
        MultiTaskPipeline.from_pretrained(str(exported / "fp32"), precision="bf16")
    ours, theirs = torch_pipe(TEXTS, return_all_scores=True), onnx_pipe(TEXTS, return_all_scores=True)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys()
        assert a["sentiment"]["label"] == b["sentiment"]["label"]
        assert a["sentiment"]["scores"] == pytest.approx(b["sentiment"]["scores"], abs=1e-4)
        assert a["score"]["value"] == pytest.approx(b["score"]["value"], abs=1e-4)
        assert [(s["tag"] if "tag" in s else s["type"], s["start"], s["end"]) for s in a["ner"]] == \
            [(s["tag"] if "tag" in s else s["type"], s["start"], s["end"]) for s in b["ner"]]
        assert a["topics"]["scores"] == pytest.approx(b["topics"]["scores"], abs=1e-4)
    capsys.readouterr()
    assert main(["predict", str(exported / "fp32"), TEXTS[0], "--tasks", "sentiment,topics"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert set(line["predictions"]) == {"sentiment", "topics"}
    assert line["predictions"]["sentiment"]["label"] == ours[0]["sentiment"]["label"]


def test_int8_is_smaller_and_close(exported):
    assert (exported / "int8" / "model.onnx").stat().st_size < 0.5 * (exported / "fp32" / "model.onnx").stat().st_size
    tokenizer = AutoTokenizer.from_pretrained(exported / "int8")
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    fp32, int8 = run_onnx(exported / "fp32", enc), run_onnx(exported / "int8", enc)
    a = np.concatenate([fp32[task].ravel() for task in TASKS])
    b = np.concatenate([int8[task].ravel() for task in TASKS])
    assert not np.array_equal(a, b)  # really quantised
    assert np.corrcoef(a, b)[0, 1] > 0.95  # and still the same model (quality on real data: BENCHMARKS.md)
    assert json.loads((exported / "int8" / "config.json").read_text())["mtnlp"]["onnx"]["quantize"] == "int8"
    assert MultiTaskPipeline.from_pretrained(str(exported / "int8")).precision.describe() == (
        "precision: fp32 (an ONNX model with int8 weights (dynamic quantisation: int8 matmuls, fp32 elsewhere) on "
        "onnxruntime; activations are quantised per call, so an answer varies a little with the inputs batched "
        "with it)")
    with pytest.warns(UserWarning, match="fp32 does not apply to the int8 matmuls of an int8 export: for answers that "
                                         "do not depend on the inputs batched with them, export without --quantize"):
        MultiTaskPipeline.from_pretrained(str(exported / "int8"), precision="fp32")


def test_int8_quantises_the_encoder_and_keeps_every_head_fp32(exported):
    import onnx

    from mtnlp.onnx_model import head_nodes

    fp32 = onnx.load(str(exported / "fp32" / "model.onnx")).graph
    int8 = onnx.load(str(exported / "int8" / "model.onnx")).graph
    kept = head_nodes(exported / "fp32" / "model.onnx")
    # a dense head per sequence task (pooler + classifier), a matmul + bias per tagging task
    assert {n.op_type for n in fp32.node if n.name in kept} >= {"Gemm", "MatMul"}
    # onnxruntime splits a Gemm into MatMul + Add: the head's matmuls stay float MatMuls either way
    assert all(n.op_type in ("MatMul", "Add") for n in int8.node if n.name in kept)
    assert not any(n.name.startswith(tuple(kept)) and n.op_type == "MatMulInteger" for n in int8.node)
    assert sum(n.op_type == "MatMulInteger" for n in int8.node) >= 4 * 2  # the encoder's layers (2 here)
    quantised = {n.input[1] for n in int8.node if n.op_type == "MatMulInteger"}
    assert not any("heads." in name for name in quantised)


def test_one_head_and_bad_export_options(exported, tmp_path, capsys):
    assert main(["export", str(exported / "model"), "--onnx", "--task", "ner", str(tmp_path / "ner")]) == 0
    pipe = MultiTaskPipeline.from_pretrained(str(tmp_path / "ner"))
    assert list(pipe.tasks) == ["ner"] and set(pipe(TEXTS[0])) == {"ner"}
    # several heads (not only the last --task); --tasks a,b as predict and serve take it (it was unrecognized)
    assert main(["export", str(exported / "model"), "--onnx", "--task", "score", "--task", "score", "--tasks", "ner,score",
                 str(tmp_path / "two")]) == 0
    pipe = MultiTaskPipeline.from_pretrained(str(tmp_path / "two"))
    assert sorted(pipe.tasks) == ["ner", "score"] and set(pipe(TEXTS[0])) == {"score", "ner"}
    capsys.readouterr()
    assert main(["export", str(exported / "model"), "--onnx", "--tasks", "score,", str(tmp_path / "w")]) == 2
    assert "--tasks 'score,': an empty task name" in capsys.readouterr().err
    assert main(["export", str(exported / "model"), str(tmp_path / "x")]) == 2  # neither --task nor --onnx
    assert main(["export", str(exported / "model"), "--task", "ner", "--task", "score", str(tmp_path / "x")]) == 2
    assert "(2 heads were given)" in capsys.readouterr().err
    assert main(["export", str(exported / "model"), "--tasks", "ner,score", str(tmp_path / "x")]) == 2
    assert "(2 heads were given)" in capsys.readouterr().err
    assert main(["export", str(exported / "model"), "--task", "ner", "--quantize", "int8", str(tmp_path / "y")]) == 2
    assert main(["export", str(exported / "model"), "--onnx", "--task", "nope", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "--onnx" in err and "--quantize applies to --onnx" in err and "no such task" in err
    # the flag the user gave is the one named; a space after a comma is part of the next name, and the error says so
    assert main(["export", str(exported / "model"), "--onnx", "--tasks", "ner, score", str(tmp_path / "z")]) == 2
    assert capsys.readouterr().err == ("error: --tasks  score: the model has no such task (it has: sentiment, score, "
                                       "ner, topics); spaces count in a task name: 'score' is one\n")
    assert not (tmp_path / "z").exists()


def test_export_prints_only_its_own_lines(int8_export_process):
    """No warnings from the exporter or the quantiser: nothing there a user can act on."""
    folder, proc = int8_export_process
    out = folder / "int8"
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [f"wrote {out} (ONNX, int8): mtnlp predict {out} ..."]


def test_damaged_onnx_folders_are_one_line_errors(exported, tmp_path, capsys):
    import shutil

    cases = {"truncated": ("model.onnx", "cannot read its weights"),
             "no-tokenizer": ("tokenizer.json", "no tokenizer that loads"),
             "no-config": ("config.json", "no config.json"),
             "no-model": ("model.onnx", "an ONNX export without its model.onnx")}
    for name, (damaged, message) in cases.items():
        folder = shutil.copytree(exported / "fp32", tmp_path / name)
        if name == "truncated":
            (folder / damaged).write_bytes((folder / damaged).read_bytes()[:2000])
        else:
            for path in folder.glob(damaged.replace(".json", "*")):
                path.unlink()
        capsys.readouterr()
        assert main(["predict", str(folder), "some text"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {folder}: ") and message in err and len(err.splitlines()) == 1, (name, err)
    assert main(["export", str(exported / "fp32"), "--task", "ner", str(tmp_path / "again")]) == 2
    assert "is an ONNX export; export reads a PyTorch model folder" in capsys.readouterr().err
    # config.json and model.onnx of different exports (a deploy folder given only one new file): an onnxruntime
    # traceback at the first call, before
    mixed = shutil.copytree(exported / "fp32", tmp_path / "mixed")
    config = json.loads((mixed / "config.json").read_text())
    heads = list(config["tasks"])
    del config["tasks"][heads[-1]]
    if "task_order" in config:
        config["task_order"] = heads[:-1]
    (mixed / "config.json").write_text(json.dumps(config))
    assert main(["predict", str(mixed), "some text"]) == 2
    assert capsys.readouterr().err == (f"error: {mixed}: model.onnx's outputs ({', '.join(sorted(heads))}) are not config.json's "
                                       f"heads ({', '.join(heads[:-1])}): the two files come from different exports\n")
    # its config is checked as a PyTorch model's (a hand-edited threshold that no probability exceeds)
    config = json.loads((exported / "fp32" / "config.json").read_text())
    multilabel = next(name for name, spec in config["tasks"].items() if spec["type"] == "multilabel")
    edited = shutil.copytree(exported / "fp32", tmp_path / "edited")
    config["tasks"][multilabel]["threshold"] = 2
    (edited / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["predict", str(edited), "some text"]) == 2
    assert f"tasks['{multilabel}']['threshold']: Input should be less than 1, got 2" in capsys.readouterr().err
    with pytest.raises(TypeError, match=r"^from_pretrained\(\) got an unexpected keyword argument 'batchsize' \(for an ONNX"):
        MultiTaskPipeline.from_pretrained(exported / "fp32", batchsize=4)


def test_mtnlp_evaluate_runs_an_onnx_folder(make_recipe, tmp_path, capsys):
    """The metrics of the ONNX export are the trained model's (fp32)."""
    recipe = make_recipe(training={"steps": 3})
    assert main(["train", str(recipe)]) == 0
    model_dir = tmp_path / "run" / "model"
    assert main(["export", str(model_dir), "--onnx", str(tmp_path / "onnx")]) == 0
    for folder in (model_dir, tmp_path / "onnx"):
        assert main(["evaluate", str(folder), str(recipe), "--output", str(folder / "eval.json")]) == 0
    ours = json.loads((model_dir / "eval.json").read_text())["tasks"]
    theirs = json.loads((tmp_path / "onnx" / "eval.json").read_text())["tasks"]
    assert ours.keys() == theirs.keys() == {"sentiment", "score", "ner"}
    for task in ours:
        assert theirs[task]["validation"] == pytest.approx(ours[task]["validation"], abs=1e-3)


OWN_INPUT_TASKS = {
    "mc": {"type": "multiple_choice", "labels": [], "dropout": 0.1},
    "qa": {"type": "extractive_qa", "labels": [], "dropout": 0.1, "doc_stride": 8, "max_answer_length": 10,
           "allow_unanswerable": False},
    "sentiment": TASKS["sentiment"],
}
MC_INPUTS = [{"text": "The sky on a clear day is", "choices": ["blue", "loud", "salty"]},
             {"text": "Paris is in", "choices": ["France", "a very long answer about nothing in particular"]}]
QA_INPUTS = [{"question": "Where did Ann fly ?", "context": "Ann Lee flew to Paris on a sunny day in June ."},
             {"question": "Who ?", "context": "a long context " * 12 + "that needs several windows ."}]


@pytest.fixture(scope="module")
def exported_own_inputs(tmp_path_factory, tiny_encoder):
    """A model with multiple choice and question-answering heads beside a text head, exported whole."""
    folder = tmp_path_factory.mktemp("onnx-own")
    save_model(folder / "model", tiny_encoder, OWN_INPUT_TASKS, seed=1, nudge=0.05)
    assert main(["export", str(folder / "model"), "--onnx", str(folder / "fp32")]) == 0
    assert main(["export", str(folder / "model"), "--onnx", "--quantize", "int8", str(folder / "int8")]) == 0
    return folder


def test_multiple_choice_and_qa_heads_are_in_the_graph(exported_own_inputs):
    from mtnlp.onnx_model import OnnxMultiTaskModel

    folder = exported_own_inputs
    model = MultiTaskModel.from_pretrained(folder / "model").eval()
    onnx_model = OnnxMultiTaskModel(folder / "fp32")
    tokenizer = AutoTokenizer.from_pretrained(folder / "fp32")
    enc = tokenizer(["a question ?"] * 2, ["a context that is long enough", "short"], padding=True, return_tensors="pt")
    outputs = run_onnx(folder / "fp32", enc)
    assert sorted(outputs) == sorted(OWN_INPUT_TASKS)
    with torch.no_grad():
        expected = model.forward_heads(**enc)
        for task in OWN_INPUT_TASKS:
            np.testing.assert_allclose(outputs[task], expected[task].numpy(), atol=1e-4, rtol=0)
        # (batch, choices, length) inputs: one score per choice, as MultiTaskModel's forward gives them
        choices = {k: v.view(1, 2, -1) for k, v in enc.items()}
        ours = model(**choices, task="mc").logits
    theirs = onnx_model(**choices, task="mc").logits
    assert theirs.shape == (1, 2) and torch.allclose(theirs, ours, atol=1e-4)
    for variant in ("fp32", "int8"):  # the axes' names, on a span head and a choice head too
        shapes = {o.name: o.shape for o in onnx_session(folder / variant).get_outputs()}
        assert shapes == {"qa": ["batch", "sequence", 2], "mc": ["batch", 1], "sentiment": ["batch", 2]}


def test_pipeline_answers_choices_and_questions_from_the_onnx_folder(exported_own_inputs):
    folder = exported_own_inputs
    torch_pipe = MultiTaskPipeline.from_pretrained(str(folder / "model"), precision="fp32")
    for backend in ("fp32", "int8"):
        onnx_pipe = MultiTaskPipeline.from_pretrained(str(folder / backend))
        ours, theirs = torch_pipe(MC_INPUTS + QA_INPUTS, return_all_scores=True), onnx_pipe(MC_INPUTS + QA_INPUTS,
                                                                                           return_all_scores=True)
        for a, b in zip(ours, theirs):
            assert a.keys() == b.keys() and len(a) == 1
        tolerance = 1e-4 if backend == "fp32" else 0.1  # int8: close, not equal
        for a, b in zip(ours[:2], theirs[:2]):
            assert a["mc"].keys() == b["mc"].keys() and a["mc"]["scores"] == pytest.approx(b["mc"]["scores"],
                                                                                          abs=tolerance)
            if backend == "fp32":
                assert (a["mc"]["choice"], a["mc"]["text"]) == (b["mc"]["choice"], b["mc"]["text"])
        for a, b in zip(ours[2:], theirs[2:]):
            assert a["qa"].keys() == b["qa"].keys()
            if backend == "fp32":
                assert (a["qa"]["answer"], a["qa"]["start"], a["qa"]["end"]) == \
                    (b["qa"]["answer"], b["qa"]["start"], b["qa"]["end"])
                assert a["qa"]["score"] == pytest.approx(b["qa"]["score"], abs=1e-4)


def test_int8_keeps_choice_and_answer_heads_fp32(exported_own_inputs):
    import onnx

    int8 = onnx.load(str(exported_own_inputs / "int8" / "model.onnx")).graph
    quantised = {n.input[1] for n in int8.node if n.op_type == "MatMulInteger"}
    assert quantised and not any("heads." in name for name in quantised)


def test_an_onnx_export_carries_the_model_card_for_serve_to_show_its_metrics(exported, tmp_path):
    import shutil

    from mtnlp.hub import write_card
    from mtnlp.serve import card_metrics

    shutil.copytree(exported / "model", tmp_path / "model")
    (tmp_path / "metrics.json").write_text(json.dumps({"tasks": {"sentiment": {"validation": {"accuracy": 0.875}},
                                                                 "ner": {"validation": {"f1": 0.5}, "test": {"f1": 0.25}}},
                                                       "best_step": 30, "steps": {"trained": 40, "planned": 60}}))
    (tmp_path / "curves.png").write_bytes(b"png")
    write_card(tmp_path / "model")
    assert card_metrics(str(tmp_path / "model"))["sentiment"] == {"validation": {"accuracy": 0.875}}
    # tasks in the recipe's order (config.json's keys are sorted: its task_order keeps the order)
    assert "# Multi-task model: sentiment, score, ner, topics\n" in (tmp_path / "model" / "README.md").read_text()
    assert main(["export", str(tmp_path / "model"), "--onnx", "--quantize", "int8", "--task", "ner",
                 str(tmp_path / "onnx")]) == 0
    assert card_metrics(str(tmp_path / "onnx")) == {"ner": {"validation": {"f1": 0.5}, "test": {"f1": 0.25}}}
    card = (tmp_path / "onnx" / "README.md").read_text()
    # the card of the exported heads: no other head, no curves (not copied), no `export --task` (ONNX is not read)
    assert "# Multi-task model: ner\n" in card and "with 1 task head," in card and "| ner | tagging |" in card
    assert not any(t in card for t in ("sentiment", "score", "topics", "curves", "ner-model")), card
    assert "`mtnlp export MODEL --onnx --task ner --quantize int8` output (heads: ner)" in card  # no local path
    assert "Kept model: step 30 of 40 trained (early stopping; 60 planned)." in card
    card = (exported / "fp32" / "README.md").read_text()  # the export of a folder without one
    assert "# Multi-task model: sentiment, score, ner, topics\n" in card and "`mtnlp evaluate` on this folder" in card


@pytest.mark.parametrize("names", [["linear", "linear_0"], ["layer_norm", "add_3"]])  # linear_0: no fresh name
def test_heads_named_as_the_exporter_names_inner_values_export(tmp_path, tiny_encoder, names):
    """The exporter names inner values after their ops; a task of such a name gave a graph onnxruntime refused."""
    tasks = {names[0]: TASKS["sentiment"], names[1]: TASKS["ner"]}
    save_model(tmp_path / "model", tiny_encoder, tasks, nudge=0.05)
    assert main(["export", str(tmp_path / "model"), "--onnx", str(tmp_path / "onnx")]) == 0
    onnx_pipe = MultiTaskPipeline.from_pretrained(str(tmp_path / "onnx"))
    theirs = onnx_pipe(TEXTS, return_all_scores=True)
    ours = MultiTaskPipeline.from_pretrained(str(tmp_path / "model"), precision="fp32")(TEXTS, return_all_scores=True)
    for a, b in zip(ours, theirs):
        assert list(b) == names and a[names[0]]["scores"] == pytest.approx(b[names[0]]["scores"], abs=1e-4)
        assert [w["score"] for w in a[names[1]]] == pytest.approx([w["score"] for w in b[names[1]]], abs=1e-4)


def test_a_head_named_as_a_graph_input_is_refused(tmp_path, tiny_encoder, capsys):
    save_model(tmp_path / "model", tiny_encoder, {"input_ids": TASKS["sentiment"]})
    capsys.readouterr()  # (save_model's loading bar, drawn unless a CLI command in this process turned bars off)
    assert main(["export", str(tmp_path / "model"), "--onnx", str(tmp_path / "onnx")]) == 2
    assert capsys.readouterr().err.strip() == ("error: task input_ids: an input of the ONNX graph has that name; a "
                                               "head's output cannot have it")


def test_a_head_whose_name_the_exporter_cannot_write_is_refused_in_one_line_and_the_others_export(tmp_path, tiny_encoder,
                                                                                                    capsys):
    """torch's exporter writes the traced heads' names into Python source: a '"' in one (which an older mtnlp allowed)
    was a SyntaxError traceback, even exporting another head (every head was traced)."""
    from safetensors.torch import load_file, save_file

    model = save_model(tmp_path / "model", tiny_encoder, {"quoted": TASKS["sentiment"], "other": TASKS["sentiment"]})
    config = json.loads((model / "config.json").read_text())
    config["tasks"] = {'a"b' if t == "quoted" else t: spec for t, spec in config["tasks"].items()}
    config["task_order"] = ['a"b', "other"]
    (model / "config.json").write_text(json.dumps(config))
    weights = load_file(model / "model.safetensors")
    save_file({k.replace("heads.quoted.", 'heads.a"b.'): v for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    pipe = MultiTaskPipeline.from_pretrained(str(model))
    assert pipe("a text")['a"b']["label"] in ("negative", "positive")
    capsys.readouterr()
    assert main(["export", str(model), "--onnx", str(tmp_path / "all")]) == 2
    assert capsys.readouterr().err.strip() == ("error: task a\"b: torch's ONNX exporter cannot take a '\"' or '\\' in a "
                                               "task name (an older mtnlp allowed them): export the other heads (--task)")
    assert main(["export", str(model), "--onnx", "--task", "other", str(tmp_path / "other")]) == 0
    onnx = MultiTaskPipeline.from_pretrained(str(tmp_path / "other"))("a text", return_all_scores=True)
    assert list(onnx) == ["other"]
    assert onnx["other"]["scores"] == pytest.approx(pipe("a text", return_all_scores=True)["other"]["scores"], abs=1e-4)


def test_the_onnx_export_of_a_bf16_model_says_float32_as_its_graph_is(tmp_path, tiny_encoder):
    """export_onnx casts the model to fp32; its config.json still said bfloat16 over the fp32 graph. (A head's
    transformers export keeps the model's dtype, as README says.)"""
    import onnx

    from mtnlp.export import export_head
    from mtnlp.onnx_model import export_onnx

    model = MultiTaskModel.from_encoder(tiny_encoder, {"sentiment": TASKS["sentiment"]}, dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "model")
    model = MultiTaskModel.from_pretrained(tmp_path / "model")
    assert model.config.dtype == torch.bfloat16
    export_onnx(model, AutoTokenizer.from_pretrained(tiny_encoder), tmp_path / "onnx")
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert (config["dtype"], config["encoder"]["dtype"]) == ("float32", "float32")
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert {o.type.tensor_type.elem_type for o in graph.output} == {onnx.TensorProto.FLOAT}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the caller's model is left as it was
    pipe = MultiTaskPipeline.from_pretrained(str(tmp_path / "onnx"))
    assert pipe.precision.name == "fp32" and set(pipe("a text")) == {"sentiment"}
    head = export_head(model, "sentiment")
    assert {p.dtype for p in head.parameters()} == {torch.bfloat16} and head.config.dtype == torch.bfloat16


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_an_onnx_multiple_choice_head_folds_scores_back_per_example():
    from mtnlp.onnx_model import OnnxMultiTaskModel

    onnx = OnnxMultiTaskModel.__new__(OnnxMultiTaskModel)  # the folding only: no graph needed
    onnx.forward_heads = lambda ids, mask, types, tasks: {tasks[0]: ids[:, :1].float()}  # one score per sequence
    ids = torch.arange(6).view(2, 3, 1).expand(2, 3, 4)  # 2 examples x 3 choices: sequence k scores k
    assert onnx(ids, torch.ones_like(ids), None, task="mc").logits.tolist() == [[0, 1, 2], [3, 4, 5]]


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_onnx_heads_answer_as_pytorch_without_token_types_and_refuse_another_device(exported):
    """forward_heads without token_type_ids is type 0, as BERT takes None; a GPU asked for is refused, not ignored."""
    from mtnlp.errors import UserError
    from mtnlp.onnx_model import OnnxMultiTaskModel

    onnx_model, torch_model = OnnxMultiTaskModel(exported / "fp32"), MultiTaskModel.from_pretrained(exported / "model")
    ids = torch.tensor([[101, 2204, 3185, 102, 0], [101, 2919, 102, 0, 0]])
    mask = (ids != 0).long()
    expected = torch_model.eval().forward_heads(ids, mask, None, tasks=["sentiment"])["sentiment"]
    np.testing.assert_allclose(onnx_model.forward_heads(ids, mask, None, tasks=["sentiment"])["sentiment"].numpy(),
                               expected.detach().numpy(), atol=1e-4)
    assert onnx_model.to("cpu") is onnx_model
    with pytest.raises(UserError, match=r"^an ONNX model runs on the CPU \(onnxruntime\); give device='cpu'$"):
        onnx_model.to("cuda")


def test_a_task_given_twice_to_export_onnx_is_one_output(exported, tmp_path):
    from mtnlp.onnx_model import OnnxMultiTaskModel, export_onnx

    model = MultiTaskModel.from_pretrained(exported / "model")
    export_onnx(model, AutoTokenizer.from_pretrained(exported / "model"), tmp_path / "out", tasks=["score", "score"])
    assert [o.name for o in OnnxMultiTaskModel(tmp_path / "out").session.get_outputs()] == ["score"]


def test_the_benchmarks_int8_emulation_is_onnxruntimes_arithmetic_and_saturates_as_vpmaddubsw(exported):
    """bench/int8_saturation.py's claim about AVX2 CPUs without VNNI rests on its emulation computing what
    onnxruntime computes: checked here on the tiny model, and the pair saturation on a Linear built to hit it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from int8_saturation import Int8Linear, check_weights, encoder_linears, exported_embeddings, initializers

    model = MultiTaskModel.from_pretrained(exported / "model").eval()
    held = initializers(exported / "int8" / "model.onnx")
    assert check_weights(model, held) == len(encoder_linears(model)) == 12
    enc = AutoTokenizer.from_pretrained(exported / "int8")(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        fp32 = {t: l.numpy() for t, l in model.forward_heads(**enc).items()}
    counts = dict.fromkeys(("weight_pairs", "weight_pairs_that_can_saturate", "saturated_pair_sums", "pair_sums"), 0)
    for name, linear in encoder_linears(model).items():
        model.set_submodule(name, Int8Linear(linear, reduce=False, saturate=False, counts=counts))
    with torch.no_grad():
        for name, table in exported_embeddings(held).items():
            model.get_parameter(name).copy_(table)
        emulated = {t: l.numpy() for t, l in model.forward_heads(**enc).items()}
    onnx = run_onnx(exported / "int8", enc)
    for task in TASKS:  # far closer to onnxruntime's int8 than int8 is to fp32
        assert np.abs(emulated[task] - onnx[task]).mean() < 0.2 * np.abs(fp32[task] - onnx[task]).mean(), task

    linear = torch.nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 1.0, 0.1, 0.1], [1.0, -1.0, 0.1, 0.1], [-1.0, -1.0, 0.1, 0.1]]))
        linear.bias.zero_()
    saturating = Int8Linear(linear, reduce=False, saturate=True, counts=counts)
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # uint8 255, 255 (zero point 0) times 127, 127: 64,770 past int16
    assert counts["weight_pairs_that_can_saturate"] >= 1
    exact = Int8Linear(linear, reduce=False, saturate=False, counts=counts)(x)
    clipped = saturating(x)
    assert exact[0, 0] == pytest.approx(2.0, abs=0.01) and clipped[0, 0] == pytest.approx(2.0 * 32767 / 64770, abs=0.01)
    assert clipped[0, 1] == exact[0, 1]  # 127 - 127: nothing to clip
    assert exact[0, 2] == pytest.approx(-2.0, abs=0.01) and clipped[0, 2] == pytest.approx(-2.0 * 32768 / 64770, abs=0.01)
    assert counts["saturated_pair_sums"] == 2
    assert Int8Linear(linear, reduce=True, saturate=True, counts=counts)(x)[0, 0] == pytest.approx(2.0, abs=0.02)
