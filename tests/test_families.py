"""Every encoder family (families.py) with a tiny random encoder and the packaged tokenizer: training of
each task type, save/load, the one-pass pipeline, export parity with the family's own
AutoModelFor*Classification, soft sharing and the hub round trip."""

import json
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch
from conftest import minilm_path, tiny_tasks, write_recipe
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoTokenizer)

from mtnlp import MultiTaskModel, MultiTaskPipeline, families
from mtnlp.errors import UserError
from mtnlp.export import export_folder, export_head

TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "neutral", "positive"], "dropout": 0.1},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "dropout": 0.1},
    "topics": {"type": "multilabel", "labels": ["arts", "food", "travel"], "dropout": 0.1, "threshold": 0.5},
}
# lengths 3, 7 and 20 tokens: padding catches position-id and attention-mask mistakes
TEXTS = ["Paris .", "Ann Lee flew to Paris today .",
         "a gorgeous , witty , seductive movie that runs far longer than the other two texts do ."]
LORA = {"type": "lora", "r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "key", "value", "dense"]}
TOP = {"type": "task_layers", "layers": 1}

SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def family_configs(tokenizer) -> dict[str, dict]:
    """model_type -> tiny config kwargs; the packaged BERT tokenizer's vocabulary and special ids."""
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    ends = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
    return {
        "bert": {**SIZE, **ids, "max_position_embeddings": 128},
        # RoBERTa numbers positions from pad_token_id + 1: max_length 64 needs 64 + 2 positions
        "roberta": {**SIZE, **ids, **ends, "max_position_embeddings": 66, "type_vocab_size": 1},
        "xlm-roberta": {**SIZE, **ids, **ends, "max_position_embeddings": 66, "type_vocab_size": 1},
        # DeBERTa-v3's settings: relative positions only, no token types
        "deberta-v2": {**SIZE, **ids, "relative_attention": True, "position_buckets": 16, "norm_rel_ebd": "layer_norm",
                       "pos_att_type": ["p2c", "c2p"], "share_att_key": True, "position_biased_input": False,
                       "type_vocab_size": 0, "max_position_embeddings": 128},
        "electra": {**SIZE, **ids, "embedding_size": 16, "max_position_embeddings": 128},
        "distilbert": {**ids, "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 128},
        # a sliding window shorter than the texts; mean pooling reads the attention mask
        "modernbert": {**SIZE, **ids, **ends, "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                       "global_attn_every_n_layers": 2, "local_attention": 8, "classifier_pooling": "mean",
                       "max_position_embeddings": 128},
    }


FAMILY_TYPES = ["bert", "roberta", "xlm-roberta", "deberta-v2", "electra", "distilbert", "modernbert"]
CLASS_PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "deberta-v2": "DebertaV2",
                "electra": "Electra", "distilbert": "DistilBert", "modernbert": "ModernBert"}


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def save_encoders(tmp_path_factory, tokenizer) -> dict[str, str]:
    """model_type -> a saved tiny random encoder folder of each family (with the tokenizer)."""
    folders = {}
    for model_type, kwargs in family_configs(tokenizer).items():
        folder = tmp_path_factory.mktemp(f"tiny-{model_type}")
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            AutoModel.from_config(AutoConfig.for_model(model_type, **kwargs)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[model_type] = str(folder)
    return folders


@pytest.fixture(scope="session")
def encoders(tmp_path_factory, tokenizer) -> dict[str, str]:
    return save_encoders(tmp_path_factory, tokenizer)


def trained_like(encoder: str, sharing=None, seed=0) -> MultiTaskModel:
    """A model from the encoder whose heads (and encoder) have moved away from their initial weights."""
    model = MultiTaskModel.from_encoder(encoder, TASKS, sharing=sharing)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def batch(tokenizer, texts=TEXTS):
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def labels_for(task: str, enc: dict) -> torch.Tensor:
    n = enc["input_ids"].shape[0]
    if task == "sentiment":
        return torch.arange(n) % 3
    if task == "score":
        return torch.linspace(0, 1, n)
    if task == "topics":
        return (torch.arange(n * 3).view(n, 3) % 2).float()
    tags = torch.full(enc["input_ids"].shape, -100)
    tags[:, 1] = 1
    return tags


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_training_step_of_each_task_type(encoders, tokenizer, model_type):
    model = MultiTaskModel.from_encoder(encoders[model_type], TASKS).train()
    # sentence pairs: the BERT tokenizer gives type ids 1, which a one-type family must never see
    enc = dict(tokenizer(TEXTS, ["second part", "and another", "x"], padding=True, return_tensors="pt"))
    assert 1 in enc["token_type_ids"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for task in TASKS:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss = model(**enc, task=task, labels=labels_for(task, enc)).loss
        assert torch.isfinite(loss) and loss > 0, task
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert any(n.startswith(f"heads.{task}.") for n in moved), task
        assert any(n.startswith("encoder.") for n in moved), task
        assert not any(n.startswith("heads.") and not n.startswith(f"heads.{task}.") for n in moved), task


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_inputs_the_family_takes(encoders, tokenizer, model_type):
    model = MultiTaskModel.from_encoder(encoders[model_type], TASKS).eval()
    assert model.uses_token_type_ids == (model_type in ("bert", "electra"))
    seen = []
    model.encoder.register_forward_pre_hook(lambda m, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    MultiTaskPipeline(model, tokenizer, precision="fp32")(TEXTS[0])
    model(**batch(tokenizer), task="sentiment")
    assert all(("token_type_ids" in kwargs) == model.uses_token_type_ids for kwargs in seen), seen
    if model_type == "modernbert":  # no unpadded path in transformers 5.x's ModernBERT: SDPA on padded batches
        assert model.encoder.config._attn_implementation == "sdpa"
    if model_type in ("roberta", "xlm-roberta"):
        # positions count from pad_token_id + 1, so a text gives the same states alone and padded in a batch
        alone = model.encode(**batch(tokenizer, TEXTS[:1]))
        padded = model.encode(**batch(tokenizer))[:1, :alone.shape[1]]
        torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
        assert families.max_tokens(model.config.encoder) == 65
        pipe = MultiTaskPipeline(model, tokenizer, precision="fp32")
        assert pipe.max_length == 65  # the tokenizer's 512 would run out of position embeddings
        with pytest.warns(UserWarning, match="truncated"):
            assert len(pipe(" ".join(["word"] * 100))["ner"]) <= 65


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_save_load_round_trip(encoders, tokenizer, tmp_path, model_type):
    model = trained_like(encoders[model_type])
    model.save_pretrained(tmp_path)
    loaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    assert loaded.config.encoder.model_type == model_type and loaded.config.tasks == model.config.tasks
    state = loaded.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()) and state.keys() == model.state_dict().keys()
    enc = batch(tokenizer)
    for task in TASKS:
        torch.testing.assert_close(loaded(**enc, task=task).logits, model(**enc, task=task).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_pipeline_is_one_pass_and_equals_each_task_alone(encoders, tokenizer, model_type):
    model = trained_like(encoders[model_type])
    enc = batch(tokenizer)
    calls = []
    hook = model.encoder.register_forward_hook(lambda *a: calls.append(1))
    heads = model.forward_heads(**enc)
    assert len(calls) == 1
    hook.remove()
    for task in TASKS:
        torch.testing.assert_close(heads[task], model(**enc, task=task).logits, atol=1e-6, rtol=1e-5)
    pipe = MultiTaskPipeline(model, tokenizer, precision="fp32")
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    results = pipe(TEXTS, return_all_scores=True)
    assert len(calls) == 2  # one more encoder pass for the three texts
    torch.set_grad_enabled(False)
    for text, result in zip(TEXTS, results):  # each text alone, unpadded, per task
        alone = batch(tokenizer, [text])
        probs = model(**alone, task="sentiment").logits.softmax(-1)[0]
        expected = dict(zip(TASKS["sentiment"]["labels"], probs.tolist()))
        assert result["sentiment"]["scores"] == pytest.approx(expected, abs=1e-5)
        assert result["score"]["value"] == pytest.approx(float(model(**alone, task="score").logits), abs=1e-5)
        assert isinstance(result["ner"], list)
    torch.set_grad_enabled(True)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_export_parity_with_the_familys_own_classes(encoders, tokenizer, tmp_path, model_type):
    model = trained_like(encoders[model_type])
    enc = batch(tokenizer)
    for task, spec in TASKS.items():
        folder = export_folder(model, tokenizer, task, tmp_path / task)
        auto = AutoModelForTokenClassification if spec["type"] == "tagging" else AutoModelForSequenceClassification
        exported = auto.from_pretrained(folder).eval()
        if spec["type"] == "multilabel":
            assert exported.config.problem_type == "multi_label_classification"
        assert type(exported).__name__.startswith(CLASS_PREFIX[model_type]) and type(exported).__name__.endswith(
            "TokenClassification" if spec["type"] == "tagging" else "SequenceClassification")
        inputs = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt")
        assert ("token_type_ids" in inputs) == model.uses_token_type_ids  # the tokenizer gives what the model takes
        with torch.no_grad():
            logits = exported(**inputs).logits
        expected = model(**enc, task=task).logits
        torch.testing.assert_close(logits, expected.view_as(logits), atol=1e-5, rtol=0)  # regression: (n, 1) or (n,)
        if spec["labels"]:
            assert list(exported.config.id2label.values()) == spec["labels"]


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_export_encoder_loads_as_the_familys_base_model_with_every_weight(encoders, tokenizer, model_type):
    from mtnlp.export import encoder_load_kwargs, export_encoder

    model = trained_like(encoders[model_type])
    enc = batch(tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        export_encoder(model, "sentiment").save_pretrained(folder)
        exported, info = AutoModel.from_pretrained(folder, output_loading_info=True,
                                                   **encoder_load_kwargs(model, "sentiment"))
    assert type(exported).__name__ == f"{CLASS_PREFIX[model_type]}Model"
    assert not any(v for k, v in info.items() if k != "error_msgs"), info  # nothing at random
    inputs = enc if model.uses_token_type_ids else {k: v for k, v in enc.items() if k != "token_type_ids"}
    with torch.no_grad():
        hidden = exported.eval()(**inputs).last_hidden_state
    torch.testing.assert_close(hidden, model.encode(**enc, task="sentiment"), atol=1e-5, rtol=0)


def test_head_layouts_are_the_familys_own(encoders):
    """The sequence head's modules are the family's transformers classes, under its own names."""
    layouts = {
        "bert": {"pooler": "BertPooler", "classifier": "Linear"},
        "roberta": {"classifier": "RobertaClassificationHead"},
        "xlm-roberta": {"classifier": "XLMRobertaClassificationHead"},
        "deberta-v2": {"pooler": "ContextPooler", "classifier": "Linear"},
        "electra": {"classifier": "ElectraClassificationHead"},
        "distilbert": {"pre_classifier": "Linear", "classifier": "Linear"},
        "modernbert": {"head": "ModernBertPredictionHead", "classifier": "Linear"},
    }
    for model_type, layout in layouts.items():
        model = MultiTaskModel.from_encoder(encoders[model_type], TASKS)
        head = model.heads["sentiment"]
        got = {name: type(m).__name__ for name, m in head.named_children() if list(m.parameters())}
        assert got == layout, model_type
        token = {name for name, m in model.heads["ner"].named_children() if list(m.parameters())}
        assert token == ({"head", "classifier"} if model_type == "modernbert" else {"classifier"}), model_type
    # BERT keeps the key names of saved models, and its heads start from the pretrained pooler
    bert = MultiTaskModel.from_encoder(encoders["bert"], TASKS)
    assert {"heads.sentiment.pooler.dense.weight", "heads.sentiment.classifier.weight",
            "heads.ner.classifier.weight"} <= set(bert.state_dict())
    pooler = AutoModel.from_pretrained(encoders["bert"]).pooler.dense.weight
    assert torch.equal(bert.heads["sentiment"].pooler.dense.weight, pooler)


def test_heads_saved_in_the_former_bert_layout_are_an_error_for_other_families(encoders, tmp_path):
    """Before heads followed the family every sequence head was BERT's pooler + classifier: a RoBERTa
    model saved then must not load with fresh random heads."""
    from safetensors.torch import load_file, save_file

    MultiTaskModel.from_encoder(encoders["roberta"], TASKS).save_pretrained(tmp_path)
    old = {k.replace(".classifier.dense.", ".pooler.dense.").replace(".classifier.out_proj.", ".classifier."): v
           for k, v in load_file(tmp_path / "model.safetensors").items()}
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"do not fit this version's RoBERTa heads .*older mtnlp"):
        MultiTaskModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
@pytest.mark.parametrize("sharing", [LORA, TOP], ids=["lora", "task_layers"])
def test_soft_sharing(encoders, tokenizer, tmp_path, model_type, sharing):
    tasks = {name: TASKS[name] for name in ("sentiment", "ner")}
    enc = batch(tokenizer)
    hard = MultiTaskModel.from_encoder(encoders[model_type], tasks).eval()
    soft = MultiTaskModel.from_encoder(encoders[model_type], tasks, sharing=sharing).eval()
    for task in tasks:  # a fresh adapter / copied top layers: the pretrained encoder exactly
        torch.testing.assert_close(soft.encode(**enc, task=task), hard.encode(**enc), atol=1e-5, rtol=1e-5)
    if sharing is LORA:
        assert sum("lora_A.ner" in n for n, _ in soft.named_parameters()) >= 2 * 3  # q/k/v-like and dense-like
    pattern = "lora_B.sentiment" if sharing is LORA else "task_layers.sentiment."
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in soft.named_parameters():
            if pattern in name:
                p.add_(torch.randn_like(p) * 0.2)
    assert not torch.allclose(soft.encode(**enc, task="sentiment"), hard.encode(**enc), atol=1e-4)
    torch.testing.assert_close(soft.encode(**enc, task="ner"), hard.encode(**enc), atol=1e-5, rtol=1e-5)
    soft.save_pretrained(tmp_path)
    loaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    for task in tasks:
        expected = soft(**enc, task=task).logits
        torch.testing.assert_close(loaded(**enc, task=task).logits, expected, atol=1e-6, rtol=1e-5)
        exported = export_head(soft, task)
        inputs = enc if soft.uses_token_type_ids else {k: v for k, v in enc.items() if k != "token_type_ids"}
        with torch.no_grad():
            logits = exported(**inputs).logits
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


# one of each attention's code (RoBERTa, XLM-R and ELECTRA take BERT's); adapters and per-task layers on BERT
@pytest.mark.parametrize("model_type, sharing", [("bert", None), ("deberta-v2", None), ("distilbert", None),
                                                 ("modernbert", None), ("bert", LORA), ("bert", TOP)],
                         ids=["bert", "deberta-v2", "distilbert", "modernbert", "bert-lora", "bert-task_layers"])
def test_the_onnx_graph_of_each_attention_and_sharing_equals_pytorch(encoders, tokenizer, tmp_path, model_type, sharing):
    """export_onnx traces the encoder with eager attention (onnxruntime runs it faster than sdpa's graph): each
    family's attention, adapters and per-task layers, at two lengths and batch sizes (dynamic axes)."""
    pytest.importorskip("onnxruntime")
    from mtnlp.onnx_model import OnnxMultiTaskModel, export_onnx

    model = trained_like(encoders[model_type], sharing)
    attention = model.encoder.config._attn_implementation
    export_onnx(model, tokenizer, tmp_path)
    onnx = OnnxMultiTaskModel(tmp_path)
    assert model.encoder.config._attn_implementation == attention  # the caller's model is left as it was
    for texts in (TEXTS, TEXTS[:1]):
        enc = batch(tokenizer, texts)
        ids, mask, types = enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")
        with torch.no_grad():
            expected = model.forward_heads(ids, mask, types if model.uses_token_type_ids else None)
        got = onnx.forward_heads(ids, mask, types if model.uses_token_type_ids else None)
        for task in ("sentiment", "score"):
            torch.testing.assert_close(got[task], expected[task], atol=1e-4, rtol=1e-4, msg=task)
        real = mask.bool()  # (a padding position's tag logits are no prediction: ModernBERT's differ there)
        torch.testing.assert_close(got["ner"][real], expected["ner"][real], atol=1e-4, rtol=1e-4, msg="ner")


def test_sharing_that_cannot_work_is_a_one_line_error(encoders):
    with pytest.raises(ValueError, match=r"mtl.task_layers: must be between 1 and 1 .*DeBERTa-v2 keeps 1 shared"):
        MultiTaskModel.from_encoder(encoders["deberta-v2"], TASKS, sharing={"type": "task_layers", "layers": 2})
    both = MultiTaskModel.from_encoder(encoders["bert"], TASKS, sharing={"type": "task_layers", "layers": 2})
    assert len(both.encoder.encoder.layer) == 0


@pytest.fixture(scope="module")
def unknown_family(tmp_path_factory, tokenizer) -> str:
    """ALBERT: a family mtnlp has no entry for (its layers are shared groups)."""
    folder = tmp_path_factory.mktemp("tiny-albert")
    config = AutoConfig.for_model("albert", vocab_size=len(tokenizer), embedding_size=16, **SIZE)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_unknown_family_trains_with_a_first_token_head_but_does_not_export(unknown_family, tokenizer, tmp_path, capsys):
    from mtnlp.cli import main

    model = MultiTaskModel.from_encoder(unknown_family, TASKS)
    assert model.family is families.GENERIC
    enc = batch(tokenizer)
    for task in TASKS:
        loss = model(**enc, task=task, labels=labels_for(task, enc)).loss
        assert torch.isfinite(loss)
        loss.backward()
    with pytest.raises(UserError, match=r"^cannot export a head of a 'albert' encoder: mtnlp knows .*RoBERTa"):
        export_head(model, "sentiment")
    with pytest.raises(UserError, match=r"^mtl.task_layers: not available for 'albert' encoders"):
        MultiTaskModel.from_encoder(unknown_family, TASKS, sharing=TOP)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert MultiTaskModel.from_pretrained(tmp_path).family is families.GENERIC
    capsys.readouterr()
    assert main(["export", str(tmp_path), "--task", "ner", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1:] == [
        "error: cannot export a head of a 'albert' encoder: mtnlp knows the heads of "
        + ", ".join(f.name for f in families.known()) + " only"]

    # its encoder alone is transformers' own AlbertModel: `--encoder` exports it (it was refused as a head), and it
    # loads without a random pooler (no head has one: add_pooling_layer=False, as the command prints)
    assert main(["export", str(tmp_path), "--encoder", str(tmp_path / "enc")]) == 0
    assert 'AutoModel.from_pretrained("' + str(tmp_path / "enc") + '", add_pooling_layer=False)' in capsys.readouterr().out
    exported, info = AutoModel.from_pretrained(tmp_path / "enc", add_pooling_layer=False, output_loading_info=True)
    assert type(exported).__name__ == "AlbertModel" and not any(v for k, v in info.items() if k != "error_msgs"), info
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(**enc).last_hidden_state, model.eval().encode(**enc), atol=1e-6, rtol=0)


def test_an_onnx_graph_takes_the_inputs_its_folders_tokenizer_gives(unknown_family, encoders, tokenizer, tmp_path):
    """transformers 5's ALBERT tokenizer gives no token_type_ids (its model reads zeros in training and predict), but
    the graph asked for them; a RoBERTa model's BERT tokenizer gives them, which its graph does not take: either way
    a plain onnxruntime call with the folder's own tokenizer failed."""
    import copy

    import onnxruntime

    from mtnlp.onnx_model import ONNX_FILE, export_onnx

    albert, roberta = (MultiTaskModel.from_encoder(e, TASKS).eval() for e in (unknown_family, encoders["roberta"]))
    plain = copy.deepcopy(tokenizer)
    plain.model_input_names = plain.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    for k, (model, given, inputs) in enumerate([(albert, tokenizer, ["input_ids", "attention_mask", "token_type_ids"]),
                                               (albert, plain, ["input_ids", "attention_mask"]),
                                               (roberta, tokenizer, ["input_ids", "attention_mask"])]):
        folder = tmp_path / str(k)
        export_onnx(model, given, folder)
        session = onnxruntime.InferenceSession(str(folder / ONNX_FILE))
        assert [i.name for i in session.get_inputs()] == inputs
        enc = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="np")
        out = session.run(["sentiment"], dict(enc))[0]  # every input the graph takes, from the folder's tokenizer
        with torch.no_grad():
            expected = model.forward_heads(*(torch.tensor(enc[n]) for n in inputs))["sentiment"]
        np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)


def test_lora_targets_that_adapt_no_layer_are_warned_of(unknown_family, encoders, tokenizer, tmp_path, capsys):
    """peft refuses targets only when all miss: MPNet's attention is attn.q/k/v/o, so the default targets adapted its
    feed-forward layers alone, without a word."""
    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    mpnet = tmp_path / "mpnet"
    AutoModel.from_config(AutoConfig.for_model("mpnet", vocab_size=len(tokenizer), **SIZE)).save_pretrained(mpnet)
    tokenizer.save_pretrained(mpnet)
    recipe = write_recipe(tmp_path, str(mpnet), tasks={"sentiment": tiny_tasks()["sentiment"]},
                          training={"steps": 1, "batch_size": 4}, mtl={"sharing": "lora"}, overwrite_output_dir=True)
    at = re.escape(load_recipe(recipe).where("mtl.sharing"))  # (the targets are the default: sharing's line)
    with pytest.warns(UserWarning, match=rf"^{at}: mtl.lora_targets: query, key, value adapted no layer of this mpnet "
                                         r"encoder; its linear layers without an adapter: attention.attn.k, "
                                         r"attention.attn.o, attention.attn.q, attention.attn.v \("):
        train(load_recipe(recipe))
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*adapted no layer")
        train(load_recipe(recipe, ["mtl.lora_targets=[attn.q, attn.k, attn.v, attn.o, dense]"]))
    assert "lora adapters on attention.attn.k, attention.attn.o, attention.attn.q, attention.attn.v, intermediate.dense, " \
           "output.dense of this mpnet encoder (mtl.lora_targets chooses)" in capsys.readouterr().out  # a family mtnlp has no entry for: said which
    train(load_recipe(recipe, [f"model.encoder={unknown_family}"]))  # ALBERT: query, key, value and dense all adapt
    assert "of this albert encoder; without: encoder.embedding_hidden_mapping_in, ffn, ffn_output" in capsys.readouterr().out
    for family in ("bert", "distilbert", "deberta-v2"):  # a known family's default targets (its own names) all adapt
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*adapted no layer")
            train(load_recipe(recipe, [f"model.encoder={encoders[family]}"]))
        assert "lora adapters on" not in capsys.readouterr().out
    with pytest.warns(UserWarning, match=r"mtl.lora_targets: ense adapted no layer of this bert encoder"):  # peft: on a dot
        train(load_recipe(recipe, [f"model.encoder={encoders['bert']}", "mtl.lora_targets=[dense, ense]"]))


def test_an_encoder_export_says_add_pooling_layer_only_where_the_base_model_takes_it(encoders, tmp_path):
    """DistilBERT's base model has no such option: the printed load line would fail with a TypeError."""
    from mtnlp.export import encoder_load_kwargs, export_encoder_folder

    for family, kwargs in (("distilbert", {}), ("bert", {"add_pooling_layer": False})):
        model = MultiTaskModel.from_encoder(encoders[family], {"ner": TASKS["ner"]})  # no head has a pooler
        assert encoder_load_kwargs(model) == kwargs, family
        folder = export_encoder_folder(model, AutoTokenizer.from_pretrained(encoders[family]), tmp_path / family)
        loaded, info = AutoModel.from_pretrained(folder, output_loading_info=True, **kwargs)
        assert not any(v for k, v in info.items() if k != "error_msgs"), (family, info)


DECODERS = ["gpt2", "llama", "qwen2", "modernbert-decoder", "bloom", "openai-gpt", "mamba"]  # (the last 3 say no is_causal)
OTHER_ENCODERS = ["albert", "mpnet", "deberta", "longformer", "big_bird", "bert-generation", "xlnet", "canine"]


def test_decoder_only_and_encoder_decoder_models_are_refused_as_encoders(tokenizer, tmp_path):
    """A decoder-only model's first token sees only itself (every text got one prediction); an encoder-decoder's
    AutoModel gives its decoder's states. Told from the config and the model built on the meta device."""
    for model_type in FAMILY_TYPES + OTHER_ENCODERS + DECODERS:
        config = AutoConfig.for_model(model_type)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        assert families.causal(config, model) == (model_type in DECODERS), model_type
    config = AutoConfig.for_model("bert", is_decoder=True, **SIZE)  # BERT built as a decoder (BertLMHeadModel's)
    assert families.causal(config, AutoModel.from_config(config))
    for model_type, kwargs, said in [
            ("gpt2", {"n_embd": 32, "n_layer": 2, "n_head": 2}, "a gpt2 model is decoder-only: each of its tokens sees "
                                                                "only the ones before it"),
            ("t5", {"d_model": 32, "num_layers": 1, "num_heads": 2, "d_ff": 64, "d_kv": 16},
             "a t5 model is an encoder-decoder (is_encoder_decoder): model.encoder takes an encoder")]:
        folder = tmp_path / model_type
        AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **kwargs)).save_pretrained(folder)
        with pytest.raises(ValueError, match=re.escape(f"{folder}: {said}")):
            MultiTaskModel.from_encoder(str(folder), TASKS)


@pytest.mark.parametrize("model_type", families.PADDING_POSITIONS)
def test_roberta_style_encoders_without_a_family_hold_max_tokens(model_type):
    """max_tokens of an unknown RoBERTa-style encoder: that many tokens run, one more runs out of positions."""
    extra = {"longformer": {"attention_window": 4}, "luke": {"entity_vocab_size": 10, "entity_emb_size": 16}}
    config = AutoConfig.for_model(model_type, vocab_size=100, max_position_embeddings=40, **SIZE,
                                  **extra.get(model_type, {}))
    assert families.of(config) is families.GENERIC
    encoder = AutoModel.from_config(config).eval()
    if model_type == "xmod":
        encoder.set_default_language("en_XX")
    limit = families.max_tokens(config)
    assert limit == 40 - config.pad_token_id - 1
    with torch.no_grad():
        encoder(input_ids=torch.full((1, limit), 5))
        with pytest.raises((IndexError, RuntimeError)):
            encoder(input_ids=torch.full((1, limit + 1), 5))


def test_a_max_length_beyond_the_position_embeddings_is_a_recipe_error(tokenizer, tmp_path, capsys):
    from mtnlp.cli import main

    folder = tmp_path / "camembert"
    config = AutoConfig.for_model("camembert", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  max_position_embeddings=40, type_vocab_size=1, **SIZE)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    recipe = write_recipe(tmp_path, str(folder), training={"steps": 2, "batch_size": 4})
    capsys.readouterr()
    assert main(["train", str(recipe), "model.max_length=40"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {recipe} (command-line override): model.max_length: 40 is more than the encoder's position "
        "embeddings hold (39)")


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_biases_and_norm_weights_are_not_decayed(encoders, model_type):
    """Whatever a family names its norms (LayerNorm, layer_norm, ModernBERT's attn_norm, final_norm, ...)."""
    from mtnlp.recipe import TrainingSpec
    from mtnlp.train import make_optimizer

    model = MultiTaskModel.from_encoder(encoders[model_type], TASKS)
    optimizer, _ = make_optimizer(model, TrainingSpec(weight_decay=0.01))
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    exempt = {n for n in names if n.endswith("bias") or "norm" in n.lower()}
    assert any("norm" in n.lower() for n in exempt)
    assert {n for n, p in names.items() if decay[id(p)] == 0.0} == exempt
    assert all(decay[id(p)] == 0.01 for n, p in names.items() if n not in exempt)


def test_a_table_named_a_bias_is_not_decayed_as_in_the_trainer(tokenizer, tmp_path):
    """MPNet's relative_attention_bias (2-D: a table of position-bucket biases) was decayed; the Trainer does not
    decay it. A task's name is no module's: a task called bias_check keeps its head's weight decay."""
    from mtnlp.recipe import TrainingSpec
    from mtnlp.train import make_optimizer

    config = AutoConfig.for_model("mpnet", vocab_size=len(tokenizer), **SIZE)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    model = MultiTaskModel.from_encoder(str(tmp_path), {"bias_check": TASKS["sentiment"]})
    optimizer, _ = make_optimizer(model, TrainingSpec(weight_decay=0.01))
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert decay[id(names["encoder.encoder.relative_attention_bias.weight"])] == 0.0
    assert decay[id(names["heads.bias_check.classifier.weight"])] == 0.01
    lora = MultiTaskModel.from_encoder(str(tmp_path), {"bias_check": TASKS["sentiment"]}, sharing=LORA)
    optimizer, _ = make_optimizer(lora, TrainingSpec(weight_decay=0.01))  # its adapters: lora_A.bias_check.weight
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    adapters = [p for n, p in lora.named_parameters() if ".lora_" in n]
    assert adapters and all(decay[id(p)] == 0.01 for p in adapters)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_mtnlp_train_end_to_end(encoders, tmp_path, model_type):
    """`mtnlp train` on the sample tasks (classification, regression, NER); the kept model predicts."""
    from mtnlp.cli import main

    recipe = write_recipe(tmp_path, encoders[model_type], training={"steps": 2, "batch_size": 4})
    assert main(["train", str(recipe)]) == 0
    model_dir = tmp_path / "run" / "model"
    assert json.loads((model_dir / "config.json").read_text())["encoder"]["model_type"] == model_type
    predictions = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")("Ann Lee flew to Paris .")
    assert set(predictions) == set(tiny_tasks())


def test_hub_round_trip_of_every_family(encoders, tmp_path):
    """Push each family's model to the loopback hub, predict from it and export a head from it, in one
    client process for all families (BERT's round trips are test_hub.py's)."""
    from hub_server import LocalHub, client_env
    from test_hub import close

    others = [t for t in FAMILY_TYPES if t != "bert"]
    for model_type in others:
        folder = tmp_path / model_type
        model = trained_like(encoders[model_type])
        model.config.mtnlp = {"max_length": 32}
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(encoders[model_type]).save_pretrained(folder)
    code = f"""
import json
from mtnlp import MultiTaskPipeline
from mtnlp.cli import main
from mtnlp.hub import push
out = {{}}
for model_type in {others!r}:
    push({str(tmp_path)!r} + "/" + model_type, "org/" + model_type)
    remote = MultiTaskPipeline.from_pretrained("org/" + model_type, precision="fp32")({TEXTS!r})
    local = MultiTaskPipeline.from_pretrained({str(tmp_path)!r} + "/" + model_type, precision="fp32")({TEXTS!r})
    code = main(["export", "org/" + model_type, "--task", "sentiment", {str(tmp_path)!r} + "/export-" + model_type])
    out[model_type] = {{"remote": remote, "local": local, "export": code}}
print(json.dumps(out))
"""
    with LocalHub() as hub:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=client_env(hub.url, tmp_path / "client"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(hub.repo_files("org/modernbert"))
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for model_type in others:
        assert close(results[model_type]["remote"], results[model_type]["local"]), model_type
        assert results[model_type]["export"] == 0
        exported = AutoConfig.from_pretrained(tmp_path / f"export-{model_type}")
        assert exported.model_type == model_type and exported.architectures[0].endswith("ForSequenceClassification")


def test_max_length_beyond_the_position_embeddings_is_a_recipe_error(encoders, tmp_path, capsys):
    from mtnlp.cli import main

    recipe = write_recipe(tmp_path, encoders["roberta"], training={"steps": 1})
    assert main(["train", str(recipe), "model.max_length=100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {recipe} (command-line override): model.max_length: 100") and "(65)" in err


def test_an_encoder_that_always_has_a_pooler_loads(tokenizer, tmp_path):
    """SqueezeBERT builds its pooler whatever it is asked: its pretrained pooler weights are loaded, not
    reported missing."""
    config = AutoConfig.for_model("squeezebert", vocab_size=len(tokenizer), embedding_size=SIZE["hidden_size"], **SIZE)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    model = MultiTaskModel.from_encoder(str(tmp_path), TASKS)
    saved = AutoModel.from_pretrained(tmp_path).state_dict()
    assert any(k.startswith("pooler.") for k in saved)
    assert all(torch.equal(v, saved[k]) for k, v in model.encoder.state_dict().items())
    assert model(**batch(tokenizer), task="sentiment").logits.shape == (len(TEXTS), 3)
    # its pooler reaches no loss: DDP must look for unused parameters even in a one-task run (it failed at step 2)
    assert not every_trainable_weight_is_reached(model, tokenizer)
    model.encoder.pooler.requires_grad_(False)
    assert every_trainable_weight_is_reached(model, tokenizer)
    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    tokenizer.save_pretrained(tmp_path)
    recipe = write_recipe(tmp_path, str(tmp_path), tasks={"sentiment": tiny_tasks()["sentiment"]}, training={"steps": 1})
    assert train(load_recipe(recipe)).accelerator.ddp_handler.find_unused_parameters


def every_trainable_weight_is_reached(model, tokenizer) -> bool:
    """Whether one task's loss gives every trainable parameter outside the other tasks' heads a gradient, as
    DistributedDataParallel needs when it is not told to look for unused ones (a one-task run)."""
    model.train()
    model(**batch(tokenizer), labels=torch.tensor([0, 1, 2]), task="sentiment").loss.backward()
    others = {id(p) for name, head in model.heads.items() if name != "sentiment" for p in head.parameters()}
    return all(p.grad is not None for p in model.parameters() if p.requires_grad and id(p) not in others)


@pytest.mark.parametrize("model_type", list(CLASS_PREFIX))
def test_one_tasks_loss_reaches_every_trainable_weight_in_every_family(encoders, tokenizer, model_type):
    assert every_trainable_weight_is_reached(MultiTaskModel.from_encoder(encoders[model_type], TASKS), tokenizer)


@pytest.mark.parametrize("family, kind", [("bert", "classification"), ("roberta", "classification"),
                                          ("xlm-roberta", "classification"), ("electra", "classification"),
                                          ("electra", "multiple_choice")])
def test_a_tasks_head_dropout_is_the_recipes_in_every_family(encoders, family, kind):
    """A task's `dropout` is its head's, in each family's head layout (in eval mode dropout does nothing, so the
    output comparisons above cannot see it)."""
    spec = {"type": kind, "dropout": 0.37, "labels": ["x", "y"] if kind == "classification" else []}
    model = MultiTaskModel.from_encoder(encoders[family], {"t": spec})
    rates = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and not n.startswith("encoder")}
    assert rates and set(rates.values()) == {0.37}, rates


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_an_exported_heads_config_keeps_its_dropout_and_its_problem_type(encoders):
    """The exported config gave the head another dropout than training's (the default 0.1: fine-tuning the export
    further trained otherwise) or another problem_type, which transformers' loss and its text-classification
    pipeline read (a classifier scored by sigmoids, a regression head by cross-entropy)."""
    tasks = {"sentiment": {"type": "classification", "labels": ["neg", "pos"]},
             "score": {"type": "regression", "dropout": 0.37}}
    model = MultiTaskModel.from_encoder(encoders["bert"], tasks)
    sentiment, score = export_head(model, "sentiment").config, export_head(model, "score").config
    assert (sentiment.classifier_dropout, sentiment.problem_type, sentiment.num_labels) == \
        (0.1, "single_label_classification", 2)
    assert (score.classifier_dropout, score.problem_type, score.num_labels) == (0.37, "regression", 1)


def test_an_export_whose_weights_have_a_key_the_class_lacks_is_a_user_error_naming_it():
    """Only missing keys were checked: a key the transformers class does not have (a family entry out of step with
    its classes) failed in load_state_dict with a traceback instead of the one-line error naming it."""
    from mtnlp.errors import UserError
    from mtnlp.export import with_weights

    linear = torch.nn.Linear(2, 2)
    state = {**linear.state_dict(), "pooler.dense.weight": torch.zeros(2, 2)}
    with pytest.raises(UserError, match=r"^cannot export the X head as Linear: its layout differs \(missing \[\], "
                                        r"extra \['pooler.dense.weight'\]\)$"):
        with_weights(linear, state, "the X head")
