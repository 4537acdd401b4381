"""training.gradient_checkpointing: transformers' activation checkpointing of the encoder's layers (task
layers and LoRA adapters included) keeps fewer activations and gives the same gradients and the same run."""

import copy

import pytest
import torch

from mtnlp import MultiTaskModel
from mtnlp.recipe import MTLSpec, load_recipe, sharing_config
from mtnlp.recipes.multitask import train

TASKS = {"sentiment": {"type": "classification", "labels": ["negative", "positive"]},
         "ner": {"type": "tagging", "labels": ["B-PER", "I-PER", "O"]}}
SHARING = {"hard": {}, "task_layers": {"sharing": "task_layers", "task_layers": 1},
           "lora": {"sharing": "lora", "lora_targets": ["query", "value"]}}


def kept_bytes_and_gradients(model, batch, task):
    """The bytes of the tensors autograd keeps for the backward pass of one training forward (a
    checkpointed layer keeps only its inputs), and the gradients."""
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    model.train()
    torch.manual_seed(3)  # the same dropout masks (checkpointing replays a layer's random state)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch, task=task).loss
    loss.backward()
    return sum(kept), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("sharing", list(SHARING))
@pytest.mark.parametrize("task", ["sentiment", "ner"])
def test_fewer_activations_kept_and_the_same_gradients(tiny_encoder, sharing, task):
    torch.manual_seed(0)
    plain = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=sharing_config(MTLSpec(**SHARING[sharing])))
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_activations()
    batch = {"input_ids": torch.randint(1000, 2000, (8, 64)), "attention_mask": torch.ones(8, 64, dtype=torch.long)}
    if task == "sentiment":
        batch["labels"] = torch.randint(0, 2, (8,))
    else:
        batch["labels"] = torch.randint(0, 3, (8, 64))
    kept, grads = kept_bytes_and_gradients(plain, batch, task)
    kept_checkpointed, grads_checkpointed = kept_bytes_and_gradients(checkpointed, batch, task)
    assert kept_checkpointed < 0.25 * kept, (kept_checkpointed, kept)  # 0.06-0.08; task layers unchecked: 0.5
    assert grads.keys() == grads_checkpointed.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grads_checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("mtl", [{"gradient": "pcgrad"}, {"sharing": "lora", "freeze_encoder": True}])
def test_a_run_with_it_equals_the_run_without(make_recipe, mtl):
    runs = []
    for checkpointing in (False, True):
        recipe = make_recipe(training={"steps": 3, "gradient_checkpointing": checkpointing}, mtl=mtl,
                             overwrite_output_dir=True)
        runs.append(train(load_recipe(recipe)).last_model.state_dict())
    assert runs[0].keys() == runs[1].keys()
    for name, value in runs[0].items():
        torch.testing.assert_close(runs[1][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_a_frozen_shared_encoder_is_neither_run_again_nor_back_propagated(tiny_encoder):
    """transformers' checkpointing also makes the embeddings' output require grad (for reentrant checkpointing):
    frozen shared layers would then be run twice and back-propagated in every step."""
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing={"type": "task_layers", "layers": 1})
    for name, p in model.encoder.named_parameters():
        p.requires_grad_(False)
    model.checkpoint_activations()
    calls = []
    model.encoder.encoder.layer[0].register_forward_hook(lambda *_: calls.append("forward"))
    model.encoder.encoder.layer[0].register_full_backward_hook(lambda *_: calls.append("backward"))
    batch = {"input_ids": torch.randint(1000, 2000, (4, 16)), "labels": torch.randint(0, 2, (4,))}
    model.train()
    model(**batch, task="sentiment").loss.backward()
    assert calls == ["forward"]
    assert all(p.grad is not None for p in model.task_layers["sentiment"].parameters())  # its own layer learns


def test_an_encoder_transformers_cannot_checkpoint_is_a_recipe_error(tmp_path):
    from transformers import AlbertConfig, AlbertModel, AutoTokenizer

    from conftest import minilm_path, write_recipe
    from mtnlp.errors import UserError

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    AlbertModel(AlbertConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path / "albert")
    tokenizer.save_pretrained(tmp_path / "albert")
    recipe = write_recipe(tmp_path, str(tmp_path / "albert"), training={"steps": 1, "gradient_checkpointing": True})
    with pytest.raises(UserError, match=rf"^{recipe}:\d+: training.gradient_checkpointing: transformers cannot "
                                        "checkpoint the layers of a albert encoder$"):
        train(load_recipe(recipe))
    assert not (tmp_path / "run").exists()
