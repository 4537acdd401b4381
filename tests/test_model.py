"""MultiTaskModel: the config contract, one-pass heads, save/load round trip."""

import pytest
import torch
from transformers import AutoConfig, BertConfig

from mtnlp import MultiTaskConfig, MultiTaskModel

TASKS = {
    "sentiment": {"type": "classification", "labels": ["neg", "pos"], "dropout": 0.1},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER"], "dropout": 0.1},
}


def tiny_model(seed=0) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)
    return MultiTaskModel(MultiTaskConfig(encoder=encoder.to_dict(), tasks=TASKS)).eval()


def inputs():
    ids = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_forward_contract_per_task():
    model = tiny_model()
    ids, mask = inputs()
    out = model(input_ids=ids, attention_mask=mask, task="sentiment", labels=torch.tensor([0, 1, 1]))
    assert out.logits.shape == (3, 2) and out.loss.ndim == 0 and out.loss > 0
    out = model(input_ids=ids, attention_mask=mask, task="score", labels=torch.tensor([0.1, 0.5, 0.9]))
    assert out.logits.shape == (3, 1) and out.loss.ndim == 0  # as transformers' regression models
    labels = torch.full((3, 9), -100)
    labels[:, 1] = 1
    out = model(input_ids=ids, attention_mask=mask, task="ner", labels=labels)
    assert out.logits.shape == (3, 9, 3) and out.loss > 0
    assert model(input_ids=ids, attention_mask=mask, task="ner").loss is None
    assert model.config.tasks["ner"]["labels"] == ["O", "B-PER", "I-PER"]


def test_tagging_loss_ignores_non_first_subtokens():
    model = tiny_model()
    ids, mask = inputs()
    labels = torch.full((3, 9), -100)
    labels[:, 2] = 0
    base = model(input_ids=ids, attention_mask=mask, task="ner", labels=labels).loss
    logits = model(input_ids=ids, attention_mask=mask, task="ner").logits
    expected = torch.nn.functional.cross_entropy(logits[:, 2], labels[:, 2])
    torch.testing.assert_close(base, expected)


def test_forward_heads_is_one_encoder_pass_with_same_logits():
    model = tiny_model()
    ids, mask = inputs()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    all_logits = model.forward_heads(ids, mask)
    assert len(calls) == 1
    for name in TASKS:
        torch.testing.assert_close(all_logits[name], model(input_ids=ids, attention_mask=mask, task=name).logits)


def test_forward_heads_takes_one_task_name_as_a_string():
    model = tiny_model()
    ids, mask = inputs()
    assert list(model.forward_heads(ids, mask, tasks="sentiment")) == ["sentiment"]  # (was: unknown task 's')
    with pytest.raises(ValueError, match=r"^forward_heads takes input_ids of shape \(batch, length\), got \(3, 1, 9\); a multiple-choice "):
        model.forward_heads(ids[:, None], mask[:, None])  # a multiple-choice batch's shape


def test_ignore_mismatched_sizes_loads_a_config_with_more_labels_than_the_weights(tmp_path):
    """transformers' option: the resized head new, the rest loaded (the size check before building refused it)."""
    import json

    model = tiny_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"]["sentiment"]["labels"] = ["neg", "pos", "mixed"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not fit its weights"):
        MultiTaskModel.from_pretrained(tmp_path)
    loaded, info = MultiTaskModel.from_pretrained(tmp_path, ignore_mismatched_sizes=True, output_loading_info=True)
    assert loaded.config.tasks["sentiment"]["labels"] == ["neg", "pos", "mixed"] and info["mismatched_keys"]
    assert torch.equal(loaded.state_dict()["encoder.embeddings.word_embeddings.weight"],
                       model.state_dict()["encoder.embeddings.word_embeddings.weight"])


def test_unknown_task_is_a_clear_error():
    model = tiny_model()
    ids, mask = inputs()
    try:
        model(input_ids=ids, attention_mask=mask, task="nope")
    except KeyError as e:
        assert "sentiment" in str(e)
    else:
        raise AssertionError("expected KeyError")


def test_save_load_round_trip_identical_for_every_head(tmp_path):
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    assert loaded.config.tasks == model.config.tasks
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MultiTaskConfig)
    ids, mask = inputs()
    for name in TASKS:
        a = model(input_ids=ids, attention_mask=mask, task=name).logits
        b = loaded(input_ids=ids, attention_mask=mask, task=name).logits
        # weights are bit-equal; outputs of two model instances only within a tolerance: CPU kernels may
        # pick different code paths for differently aligned buffers
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_from_encoder_keeps_pretrained_weights(tiny_encoder):
    from transformers import AutoModel

    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS | {"ner": {**TASKS["ner"]}})
    reference = AutoModel.from_pretrained(tiny_encoder)
    ids = torch.randint(1, 1000, (2, 7))
    model.eval(), reference.eval()
    torch.testing.assert_close(model.encode(ids, torch.ones_like(ids)), reference(input_ids=ids).last_hidden_state)
    # the sequence heads' poolers start from the encoder's pretrained pooler
    torch.testing.assert_close(model.heads["sentiment"].pooler.dense.weight, reference.pooler.dense.weight)


def test_from_encoder_takes_a_checkpoint_without_a_pooler_or_with_a_pretraining_head(tmp_path):
    """A pooler may be missing (it starts new, as a head does); a checkpoint of the full pretraining model has the
    base model's prefix (bert.) and weights of its own head (cls.), which the encoder has no place for."""
    from transformers import BertForMaskedLM, BertModel

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "no-pooler")
    BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    for folder in ("no-pooler", "mlm"):
        MultiTaskModel.from_encoder(str(tmp_path / folder), TASKS)


def test_from_encoder_refuses_weights_that_do_not_fit_the_encoders_config(tiny_encoder, tmp_path):
    """transformers starts a weight it does not find from random values (and says so in a log mtnlp quiets)."""
    import json
    import shutil

    from mtnlp.modeling import ConfigMismatch

    encoder = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    config = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ConfigMismatch, match=r"its weights lack 16 of the 55 weights config.json gives the encoder "
                                             r"\(e\.g\. encoder\.layer\.2\."):
        MultiTaskModel.from_encoder(str(encoder), TASKS)


def test_regression_labels_as_a_column_give_the_same_loss():
    """(batch, 1) labels, the shape of the head's own logits, must not broadcast to (batch, batch)."""
    model = tiny_model()
    ids, mask = inputs()
    logits = model(input_ids=ids, attention_mask=mask, task="score").logits.detach()
    assert model(input_ids=ids, attention_mask=mask, task="score", labels=logits).loss == 0
    flat = model(input_ids=ids, attention_mask=mask, task="score", labels=torch.tensor([0.1, 0.5, 0.9])).loss
    column = model(input_ids=ids, attention_mask=mask, task="score", labels=torch.tensor([[0.1], [0.5], [0.9]])).loss
    torch.testing.assert_close(column, flat)


def test_forward_points_to_the_encoder_only_for_its_outputs():
    model = tiny_model()
    ids, mask = inputs()
    for kwargs in ({"output_hidden_states": True}, {"output_attentions": True}):
        with pytest.raises(TypeError, match=r"; for the encoder's hidden states or attentions call model\.encoder"):
            model(input_ids=ids, attention_mask=mask, task="sentiment", **kwargs)
    embeds = model.encoder.get_input_embeddings()(ids)
    for kwargs in ({"inputs_embeds": embeds}, {"position_ids": torch.arange(ids.shape[1])[None]},
                   {"lables": torch.tensor([0, 1, 1])}, {"output_hidden_states": True, "lables": 1}):
        with pytest.raises(TypeError) as caught:
            model(input_ids=ids, attention_mask=mask, task="sentiment", **kwargs)
        assert "hidden states" not in str(caught.value)
        assert str(caught.value).endswith("; it takes input_ids, attention_mask, token_type_ids, task, labels, "
                                          "return_dict (and a QA head's start_positions, end_positions)")


def test_forward_refuses_arguments_it_does_not_take_and_gives_tuples_on_request():
    model = tiny_model()
    ids, mask = inputs()
    for kwargs in ({"lables": torch.tensor([0, 1, 1])}, {"output_hidden_states": True}):
        try:
            model(input_ids=ids, attention_mask=mask, task="sentiment", **kwargs)
        except TypeError as e:
            assert f"unexpected keyword argument(s) {next(iter(kwargs))}" in str(e)
        else:
            raise AssertionError(f"{kwargs} was ignored")
    labels = torch.tensor([0, 1, 1])
    loss, logits = model(input_ids=ids, attention_mask=mask, task="sentiment", labels=labels, return_dict=False)
    out = model(input_ids=ids, attention_mask=mask, task="sentiment", labels=labels)
    torch.testing.assert_close((loss, logits), (out.loss, out.logits))
    # such arguments left at None ask for nothing (peft passes inputs_embeds, output_attentions, ... so)
    unasked = {"inputs_embeds": None, "output_attentions": False, "output_hidden_states": None}
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, task="sentiment", **unasked).logits, out.logits)
    model.config.return_dict = False  # as transformers' models read it
    assert isinstance(model(input_ids=ids, attention_mask=mask, task="sentiment"), tuple)


def test_transformers_trainer_trains_a_head(tmp_path):
    """Trainer passes num_items_in_batch to a model that takes **kwargs unless it says it does not
    (accepts_loss_kwargs)."""
    from transformers import Trainer, TrainingArguments

    model = tiny_model().train()
    ids, mask = inputs()
    rows = [{"input_ids": i, "attention_mask": m, "labels": torch.tensor(k % 2)} for k, (i, m) in enumerate(zip(ids, mask))]

    def collate(batch):
        return {**{key: torch.stack([row[key] for row in batch]) for key in batch[0]}, "task": "sentiment"}

    before = model.heads["sentiment"].classifier.weight.detach().clone()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=3, report_to=[],
                             use_cpu=True, save_strategy="no", remove_unused_columns=False, learning_rate=1e-2)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    assert not torch.equal(before, model.heads["sentiment"].classifier.weight)


def test_an_encoder_saved_in_half_precision_gives_a_float32_model(tiny_encoder, tmp_path):
    """transformers 5 loads a checkpoint in its saved dtype: the encoder must not end up fp16 beside fp32 heads."""
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(tiny_encoder, dtype=torch.float16).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(tmp_path)
    ids, mask = inputs()
    model = MultiTaskModel.from_encoder(str(tmp_path), TASKS)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model(input_ids=ids, attention_mask=mask, task="score").logits.dtype == torch.float32
    model = MultiTaskModel.from_encoder(str(tmp_path), TASKS, dtype=torch.bfloat16)  # asked for: all of it
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(input_ids=ids, attention_mask=mask, task="sentiment").logits.dtype == torch.bfloat16
    # as from_pretrained takes them: a dtype's name, or "auto" for the checkpoint's
    assert {p.dtype for p in MultiTaskModel.from_encoder(str(tmp_path), TASKS, dtype="bfloat16").parameters()} == {torch.bfloat16}
    assert {p.dtype for p in MultiTaskModel.from_encoder(str(tmp_path), TASKS, dtype="auto").parameters()} == {torch.float16}
    try:
        MultiTaskModel.from_encoder(str(tmp_path), TASKS, dtype="cuda")
    except ValueError as e:
        assert "dtype: 'cuda' is not a torch dtype" in str(e)
    else:
        raise AssertionError("dtype='cuda' was taken")


def test_resized_token_embeddings_save_load_and_export(tmp_path):
    """Added tokens: the new vocabulary size must reach config.encoder, which loading and export build from."""
    from mtnlp.export import export_head

    model = tiny_model()
    model.resize_token_embeddings(103)
    assert model.config.encoder.vocab_size == 103
    model.save_pretrained(tmp_path)
    loaded = MultiTaskModel.from_pretrained(tmp_path)
    assert loaded.encoder.get_input_embeddings().weight.shape[0] == 103
    assert torch.equal(loaded.encoder.get_input_embeddings().weight, model.encoder.get_input_embeddings().weight)
    assert export_head(model, "sentiment").config.vocab_size == 103


def test_a_batch_without_a_labelled_token_has_loss_zero_not_nan():
    """A tagging batch whose words all tokenised to nothing (labels all -100): NaN would poison learned
    loss weights and then every weight."""
    model = tiny_model()
    ids, mask = inputs()
    out = model(input_ids=ids, attention_mask=mask, task="ner", labels=torch.full((3, 9), -100))
    assert out.loss == 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    labels = torch.full((3, 9), -100)
    labels[0, 1], labels[2, 3] = 1, 2  # with labelled tokens: the mean over them, as PyTorch's
    logits = model(input_ids=ids, attention_mask=mask, task="ner").logits
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, task="ner", labels=labels).loss,
                               torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()))


def test_inputs_of_the_wrong_rank_for_the_head_are_a_clear_error():
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    tasks = {"mc": {"type": "multiple_choice", "labels": []}, "sentiment": TASKS["sentiment"]}
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder.to_dict(), tasks=tasks)).eval()
    ids, mask = inputs()
    for task, args, shape in [("mc", (ids, mask), "(batch, choices, length), got (3, 9)"),
                              ("sentiment", (ids[None], mask[None]), "(batch, length), got (1, 3, 9)")]:
        try:
            model(input_ids=args[0], attention_mask=args[1], task=task, labels=torch.tensor([1]))
        except ValueError as e:
            assert str(e).endswith(f"takes input_ids of shape {shape}"), e
        else:
            raise AssertionError(task)
    assert model(input_ids=ids[None], attention_mask=mask[None], task="mc").logits.shape == (1, 3)


def test_from_encoder_names_the_task_and_key_of_a_bad_task_spec(tiny_encoder):
    import pytest

    for tasks, message in (
            ({"s": {"type": "classfication", "labels": ["a", "b"]}}, r"^tasks\['s'\]\['type'\]: unknown type 'classfication' \(one of: classification, "),
            ({"s": {"labels": ["a", "b"]}}, r"^tasks\['s'\]\['type'\]: missing "),
            ({"s": {"type": "classification"}}, r"^tasks\['s'\]\['labels'\]: expected a list of at least 2 distinct label names"),
            ({"s": {"type": "tagging", "labels": ["O", "O"]}}, r"^tasks\['s'\]\['labels'\]: .* got \['O', 'O'\]$"),
            ({"s": {"type": "classification", "labels": ["a", "b"], "dropout": 1.5}}, r"^tasks\['s'\]\['dropout'\]: expected a number in \[0, 1\)"),
            ({"s": ["a", "b"]}, r"^tasks\['s'\]: expected a task name and a dict"),
            ({}, r"^tasks: expected a non-empty dict"),
            # a type's own keys, as a recipe checks them: a typo, another type's key, a bad value
            ({"e": {"type": "multilabel", "labels": ["a"], "treshold": 0.3}},
             r"^tasks\['e'\]\['treshold'\]: not a key of a multilabel task \(every task's: dropout, label_weights, "
             r"labels, type; its own: text_pair, threshold, "
             r"threshold_grid, thresholds, tune_thresholds\)$"),
            ({"s": {"type": "classification", "labels": ["a", "b"], "threshold": 0.3}}, r"^tasks\['s'\]\['threshold'\]: not a key"),
            ({"e": {"type": "multilabel", "labels": ["a"], "threshold": 2}}, r"^tasks\['e'\]\['threshold'\]: .*less than 1, got 2$"),
            ({"e": {"type": "multilabel", "labels": ["a"], "thresholds": [0.5, 0.5]}},
             r"^tasks\['e'\]\['thresholds'\]: expected one threshold in \[0, 1\) per label \(1\)"),
            ({"e": {"type": "multilabel", "labels": ["a", "b"], "thresholds": [1.0, 0.5]}},  # 1: never predicted
             r"^tasks\['e'\]\['thresholds'\]: expected one threshold in \[0, 1\) per label \(2\)"),
            ({"c": {"type": "classification", "labels": ["a", "b"], "text_pair": "yes"}},
             r"^tasks\['c'\]\['text_pair'\]: expected true or false, got 'yes'$"),
            ({"q": {"type": "extractive_qa", "doc_stride": "x"}}, r"^tasks\['q'\]\['doc_stride'\]: .*, got 'x'$"),
            ({"q": {"type": "extractive_qa", "max_answer_length": 0}}, r"^tasks\['q'\]\['max_answer_length'\]: "),
            # names torch refuses as module names, refused as a recipe refuses them
            ({"a.b": {"type": "regression"}}, r"^tasks\['a.b'\]: not a task name"),
            ({"train": {"type": "regression"}}, r"^tasks\['train'\]: not a task name"),
            ({"a\x08": {"type": "regression"}}, r"^tasks\['a\\x08'\]: not a task name \(.*control character"),
            ({'a"b': {"type": "regression"}}, r"""^tasks\['a"b'\]: not a task name \(.*'=', '"' or '\\'""")):
        with pytest.raises(ValueError, match=message):
            MultiTaskModel.from_encoder(tiny_encoder, tasks)
    # types without a label set need no labels
    model = MultiTaskModel.from_encoder(tiny_encoder, {"score": {"type": "regression"}})
    assert model.config.tasks["score"]["labels"] == [] and model.heads["score"].classifier.out_features == 1
    own = {"e": {"type": "multilabel", "labels": ["a", "b"], "threshold": 0.3, "thresholds": [0.2, 0.6],
                 "text_pair": True},
           "q": {"type": "extractive_qa", "doc_stride": 16, "max_answer_length": 10, "allow_unanswerable": True}}
    assert MultiTaskModel.from_encoder(tiny_encoder, own).config.tasks["q"]["doc_stride"] == 16
    # read as a recipe reads them: "false" is false (it was kept as the string, which is true), "16" is 16
    read = MultiTaskModel.from_encoder(tiny_encoder, {"q": {"type": "extractive_qa", "allow_unanswerable": "false",
                                                            "doc_stride": "16"}}).config.tasks["q"]
    assert read["allow_unanswerable"] is False and read["doc_stride"] == 16


def test_sharing_left_partly_unsaid_takes_the_recipes_defaults_and_a_wrong_key_is_named(tiny_encoder):
    import pytest

    model = MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "classification", "labels": ["a", "b"]}},
                                        sharing={"type": "lora", "r": 4})
    assert model.config.sharing == {"type": "lora", "r": 4, "alpha": 16.0, "dropout": 0.1,
                                    "targets": ["query", "key", "value", "dense"]}
    assert any("lora_A" in name for name, _ in model.named_parameters())
    config = MultiTaskConfig(encoder=model.config.encoder, tasks=model.config.tasks, sharing={"type": "task_layers"})
    assert MultiTaskModel(config).config.sharing == {"type": "task_layers", "layers": 2}  # a config: checked too
    for sharing, message in [({"type": "lora", "rank": 4}, r"^sharing\['rank'\]: not a key of lora sharing \(its keys: r, "),
                             ({"type": "task_layers", "layers": 0}, r"^sharing\['layers'\]: .*greater than 0, got 0$"),
                             ({"layers": 1}, r"^sharing\['type'\]: expected 'lora' or 'task_layers' \(or sharing=None\)")]:
        with pytest.raises(ValueError, match=message):
            MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "regression"}}, sharing=sharing)


def test_from_pretrained_on_a_plain_encoder_says_what_it_is(tiny_encoder):
    import pytest

    with pytest.raises(ValueError, match=r": a bert checkpoint, not an mtnlp multi-task model; "
                                         r"MultiTaskModel.from_encoder\(it, tasks\) builds one on its encoder$"):
        MultiTaskModel.from_pretrained(tiny_encoder)


def test_tasks_keep_their_order_through_save_and_load(tmp_path):
    """transformers writes config.json with sorted keys: the recipe's task order (predict's, the card's) was lost."""
    import json

    model = tiny_model()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert list(saved["tasks"]) == sorted(TASKS) and saved["task_order"] == ["sentiment", "score", "ner"]
    loaded = MultiTaskModel.from_pretrained(tmp_path)
    assert list(loaded.config.tasks) == ["sentiment", "score", "ner"]
    loaded.config.tasks = {"ner": TASKS["ner"], "sentiment": TASKS["sentiment"]}  # changed after loading
    loaded.config.save_pretrained(tmp_path)
    assert list(MultiTaskConfig.from_pretrained(tmp_path).tasks) == ["ner", "sentiment"]
    del saved["task_order"]  # a model saved before the order was kept: config.json's order
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert list(MultiTaskConfig.from_pretrained(tmp_path).tasks) == sorted(TASKS)


def test_a_qa_head_takes_and_gives_what_transformers_qa_models_do():
    """start_positions / end_positions as labels; start_logits / end_logits beside the one logits tensor."""
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder.to_dict(), tasks={
        "qa": {"type": "extractive_qa", "labels": [], "dropout": 0.0}, **TASKS})).eval()
    ids, mask = inputs()
    starts, ends = torch.tensor([1, 2, 0]), torch.tensor([3, 2, 0])
    out = model(input_ids=ids, attention_mask=mask, task="qa", start_positions=starts, end_positions=ends)
    torch.testing.assert_close(out.loss, model(input_ids=ids, attention_mask=mask, task="qa",
                                               labels=torch.stack([starts, ends], -1)).loss)
    assert out.logits.shape == (3, 9, 2)
    torch.testing.assert_close((out.start_logits, out.end_logits), (out.logits[..., 0], out.logits[..., 1]))
    column = model(input_ids=ids, attention_mask=mask, task="qa", start_positions=starts[:, None], end_positions=ends[:, None])
    torch.testing.assert_close(column.loss, out.loss)  # (batch, 1) positions, as transformers takes them
    loss, logits = model(input_ids=ids, attention_mask=mask, task="qa", labels=torch.stack([starts, ends], -1),
                         return_dict=False)  # the tuple of every head: (loss, logits)
    torch.testing.assert_close((loss, logits), (out.loss, out.logits))
    for task, kwargs in (("sentiment", {"start_positions": starts, "end_positions": ends}),
                         ("qa", {"start_positions": starts})):
        try:
            model(input_ids=ids, attention_mask=mask, task=task, **kwargs)
        except TypeError as e:
            assert "start_positions and end_positions (both, without labels) are an extractive QA head's labels" in str(e)
        else:
            raise AssertionError(f"{task} {list(kwargs)} was taken")


def test_a_model_built_from_a_config_checks_its_tasks():
    encoder = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32).to_dict()
    with pytest.raises(ValueError, match=r"^tasks\['s'\]\['labels'\]: expected a list of at least 2 distinct label"):
        MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks={"s": {"type": "classification"}}))
    with pytest.raises(ValueError, match=r"^tasks\['s'\]\['dropout'\]: expected a number in \[0, 1\)"):
        MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks={"s": {"type": "regression", "dropout": 2}}))
    with pytest.raises(ValueError, match=r"^tasks\['e'\]\['threshold'\]: "):  # a type's own key's value
        MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks={"e": {"type": "multilabel", "labels": ["a"],
                                                                     "threshold": 2}}))
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks={"v": {"type": "regression"}}))
    assert model.config.tasks["v"]["labels"] == []
    # a key this mtnlp does not know, in a saved config (an older mtnlp's): kept, not refused
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks={"v": {"type": "regression", "old_key": 1}}))
    assert model.config.tasks["v"]["old_key"] == 1


def test_saving_again_leaves_no_weights_of_the_earlier_save(tmp_path):
    """transformers leaves a sharded save's index beside a later single model.safetensors (a push uploaded it), and
    a single model.safetensors beside later shards (loading read the older file)."""
    from mtnlp.hub import pushed_files

    model, ids = tiny_model(), inputs()[0]
    expected = model(input_ids=ids, task="sentiment").logits
    model.save_pretrained(tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
    model.save_pretrained(tmp_path)
    names = [p.name for p in pushed_files(tmp_path)]
    assert "model.safetensors" in names and "model.safetensors.index.json" not in names
    assert not any("-of-" in name for name in names)
    torch.testing.assert_close(MultiTaskModel.from_pretrained(tmp_path)(input_ids=ids, task="sentiment").logits, expected)
    other = tiny_model(seed=1)
    other.save_pretrained(tmp_path, max_shard_size="50KB")
    assert not (tmp_path / "model.safetensors").exists()
    torch.testing.assert_close(MultiTaskModel.from_pretrained(tmp_path)(input_ids=ids, task="sentiment").logits,
                               other(input_ids=ids, task="sentiment").logits)
    model.save_pretrained(tmp_path)  # the same again: the file is written anew
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.safetensors.index.json").exists()


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_a_head_built_without_dropout_gets_the_documented_default_of_0_1(tiny_encoder):
    from torch import nn
    from mtnlp import MultiTaskModel

    model = MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "classification", "labels": ["a", "b"]}})
    assert [m.p for m in model.heads["s"].modules() if isinstance(m, nn.Dropout)] == [0.1]


def test_a_head_with_the_same_labels_in_another_order_is_not_kept():
    from mtnlp.modeling import head_mismatch

    old = {"type": "classification", "labels": ["pos", "neg"]}  # e.g. a source built in Python
    assert head_mismatch("s", old, {"type": "classification", "labels": ["neg", "pos"]}) is not None


def test_a_transfer_from_a_source_loaded_in_bf16_is_float32(tmp_path):
    """from_pretrained(dtype=bfloat16) writes bfloat16 into the source's encoder config: the new model must not take
    it (training keeps fp32 weights), before or after a save."""
    tiny_model().save_pretrained(tmp_path / "source")
    source = MultiTaskModel.from_pretrained(tmp_path / "source", dtype=torch.bfloat16)
    assert {p.dtype for p in source.parameters()} == {torch.bfloat16}
    model = MultiTaskModel.from_trained(source, {"s": {"type": "classification", "labels": ["a", "b"]}})
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model.save_pretrained(tmp_path / "new")
    assert {p.dtype for p in MultiTaskModel.from_pretrained(tmp_path / "new").parameters()} == {torch.float32}


@pytest.mark.parametrize("dropout", [1, 1.0])
def test_a_head_dropout_of_1_is_refused_in_python_as_in_a_recipe(dropout, tiny_encoder):
    with pytest.raises(ValueError, match=r"^tasks\['s'\]\['dropout'\]: expected a number in \[0, 1\), got 1"):
        MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "regression", "dropout": dropout}})


def test_a_fresh_model_starts_its_linear_layers_as_bert_does():
    """transformers' BERT initialisation (the config's initializer_range): normal weights, zero biases."""
    linears = [m for m in tiny_model().modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(torch.count_nonzero(m.bias) == 0 for m in linears)
    assert float(linears[0].weight.std()) == pytest.approx(0.02, rel=0.2)


def test_a_config_with_a_task_whose_weights_are_not_saved_names_the_task(tmp_path):
    import json

    from mtnlp.modeling import ConfigMismatch

    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"]["extra"] = {"type": "regression", "labels": []}
    config["task_order"] = [*config.get("task_order", TASKS), "extra"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigMismatch, match=r"a task 'extra' the config has, whose weights are not there \(load it"):
        MultiTaskModel.from_pretrained(tmp_path)


# ---------------------------------------------------------------- pinned by mutation testing (mutation9 survivors)

def test_evaluating_switches_off_dropout_of_a_part_left_training_under_a_model_in_eval_mode():
    """Only the model's own mode was looked at: after `model.eval(); model.heads.train()`, the heads kept their
    dropout on in a pipeline call or an evaluation, and predictions came out random."""
    from mtnlp.modeling import evaluating

    model = tiny_model()
    model.heads.train()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.heads.modules()) and not model.training and not model.encoder.training


def test_a_new_tagging_head_given_text_pair_true_keeps_it(tiny_encoder):
    """from_encoder wrote text_pair false over a tagging head's own text_pair: true (false is only its default, as
    training records it)."""
    tasks = {"ner": {"type": "tagging", "labels": ["O", "B-PER"], "text_pair": True},
             "pos": {"type": "tagging", "labels": ["A", "B"]}}
    model = MultiTaskModel.from_encoder(tiny_encoder, tasks)
    assert model.config.tasks["ner"]["text_pair"] is True and model.config.tasks["pos"]["text_pair"] is False
