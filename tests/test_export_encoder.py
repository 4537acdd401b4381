"""`mtnlp export MODEL --encoder OUT [--task T]`: the encoder alone as a plain transformers base model."""

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mtnlp import MultiTaskModel
from mtnlp.export import export_encoder_folder

# the tagging head has no pooler; the classification and regression heads each have their own
TASKS = {"ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER"]},
         "sentiment": {"type": "classification", "labels": ["neg", "pos"]},
         "score": {"type": "regression"}}
SHARINGS = {"hard": None, "lora": {"type": "lora", "r": 2}, "task_layers": {"type": "task_layers", "layers": 1}}
TEXTS = ["John Smith works in New York .", "a gorgeous , witty movie ."]


def nudged(encoder: str, tasks=TASKS, sharing=None) -> MultiTaskModel:
    """A model whose adapters, task layers and heads differ from task to task (fresh LoRA adapters are no-ops)."""
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(encoder, tasks, sharing=sharing)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def loaded(folder, **kwargs):
    """The exported folder as plain transformers loads it, and what it reported missing or unexpected."""
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True, **kwargs)
    return model.eval(), {k: v for k, v in info.items() if v and k != "error_msgs"}


@pytest.mark.parametrize("sharing", list(SHARINGS))
def test_the_exported_encoder_loads_with_plain_automodel_and_equals_each_tasks_encoder(tiny_encoder, tmp_path, sharing):
    model = nudged(tiny_encoder, sharing=SHARINGS[sharing])
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    outputs = {}
    for task in TASKS:
        folder = export_encoder_folder(model, tokenizer, tmp_path / task, task)
        exported, problems = loaded(folder)
        assert type(exported).__name__ == "BertModel" and not problems, problems
        assert AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt").input_ids.equal(enc.input_ids)
        with torch.no_grad():
            out = exported(**enc)
            hidden = model.encode(enc.input_ids, enc.attention_mask, enc.token_type_ids, task)
            # the task's own head's pooler, or the first head's that has one (ner has none: sentiment's)
            pooler = model.heads["sentiment" if task == "ner" else task].pooler(hidden)
        torch.testing.assert_close(out.last_hidden_state, hidden, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.pooler_output, pooler, atol=1e-6, rtol=0)
        outputs[task] = out.last_hidden_state
    # hard sharing: one encoder for every task; soft sharing: each task's own
    same = torch.allclose(outputs["ner"], outputs["sentiment"], atol=1e-6)
    assert same == (sharing == "hard")
    default = export_encoder_folder(model, tokenizer, tmp_path / "default")  # the first task's
    with torch.no_grad():
        torch.testing.assert_close(loaded(default)[0](**enc).last_hidden_state, outputs["ner"], atol=1e-6, rtol=0)


def test_without_a_head_that_has_a_pooler_the_encoder_has_none(tiny_encoder, tmp_path, capsys):
    from mtnlp.cli import main
    from mtnlp.export import encoder_load_kwargs

    model = nudged(tiny_encoder, {"ner": TASKS["ner"]})
    assert encoder_load_kwargs(model) == {"add_pooling_layer": False}
    assert encoder_load_kwargs(nudged(tiny_encoder), "ner") == {}  # sentiment's pooler
    folder = export_encoder_folder(model, AutoTokenizer.from_pretrained(tiny_encoder), tmp_path / "enc")
    exported, problems = loaded(folder, add_pooling_layer=False)
    assert exported.pooler is None and not problems, problems  # nothing loads at random
    ids = torch.tensor([[101, 2000, 2001, 102]])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).last_hidden_state, model.encode(ids), atol=1e-6, rtol=0)
    # without it transformers adds a pooler, which its LOAD REPORT lists as missing (README says so)
    assert loaded(folder)[1] == {"missing_keys": {"pooler.dense.weight", "pooler.dense.bias"}}
    model.save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(tmp_path / "m")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "m"), "--encoder", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f'load it with AutoModel.from_pretrained("{tmp_path / "out"}", add_pooling_layer=False)  (no head has a '
        "pooler: without add_pooling_layer=False a random one is added)")


def test_export_encoder_on_the_command_line(tiny_encoder, tmp_path, capsys, monkeypatch):
    from mtnlp.cli import main

    model = nudged(tiny_encoder, sharing=SHARINGS["lora"])
    model.save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(tmp_path / "m")
    out = tmp_path / "enc"
    monkeypatch.setenv("HOME", str(tmp_path))  # the load line names the folder, not "~/enc" (no hub id)
    assert main(["export", str(tmp_path / "m"), "--encoder", "--task", "score", "~/enc"]) == 0
    assert capsys.readouterr().out.splitlines() == ["wrote ~/enc", f'load it with AutoModel.from_pretrained("{out}")']
    exported, problems = loaded(out)
    assert not problems, problems
    ids = torch.tensor([[101, 2000, 2001, 102]])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).last_hidden_state, model.encode(ids, task="score"), atol=1e-6, rtol=0)
    for args, said in ([str(out)], f"export: {out} is not empty"),  \
                      (["--onnx", str(tmp_path / "x")], "export: --encoder writes a plain transformers base model; "
                                                        "it takes no --onnx"), \
                      (["--quantize", "int8", str(tmp_path / "x")], "it takes no --quantize"), \
                      (["--tasks", "ner,score", str(tmp_path / "x")], "export --encoder: give at most one --task"), \
                      (["--task", "nope", str(tmp_path / "x")], "--task nope: the model has no such task (it has: ner, "):
        assert main(["export", str(tmp_path / "m"), "--encoder", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
