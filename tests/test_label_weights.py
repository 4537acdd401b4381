"""label_weights: per-label loss weights for imbalanced classification and multi-label tasks."""

import json
import re
import warnings

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_tasks
from datasets import Dataset
from torch.nn import functional as F

from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.tasks import task_type


def spec(type_: str, weights):
    return task_type(type_).Spec(type=type_, data={"train": "x.csv"}, label_weights=weights)


def test_balanced_class_weights_are_sklearns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0, 0, 0, 1, 2, 2]
    got = task_type("classification").label_weights(spec("classification", "balanced"), ["a", "b", "c"],
                                                    Dataset.from_dict({"labels": labels}))
    assert got == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=labels).tolist())


def test_balanced_multilabel_weights_are_negatives_over_positives():
    rows = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    got = task_type("multilabel").label_weights(spec("multilabel", "balanced"), ["a", "b", "all"],
                                                Dataset.from_dict({"labels": rows}))
    # a: 2 negatives / 2 positives; b: 3 / 1; a label every example has: 1 / 4, not 0 (that label would never train)
    assert got == [1.0, 3.0, 0.25]


@pytest.mark.parametrize("type_", ["classification", "multilabel"])
def test_weights_given_per_label_leave_the_others_at_1(type_):
    kind = task_type(type_)
    assert kind.label_weights(spec(type_, {"b": 4}), ["a", "b", "c"], None) == [1.0, 4.0, 1.0]
    assert kind.label_weights(spec(type_, None), ["a", "b"], None) is None
    with pytest.raises(ValueError, match=r"^'d' is not a label of the task \(its labels: a, b, c\)$"):
        kind.label_weights(spec(type_, {"d": 2}), ["a", "b", "c"], None)
    with pytest.raises(ValueError, match=r"^balanced needs the training split's label counts, which a streamed split"):
        kind.label_weights(spec(type_, "balanced"), ["a", "b"], None)  # streamed: no split to count
    for bad, said in (({"a": 0}, "the weight of 'a' must be a positive number, got 0"),
                      ({"a": True}, "the weight of 'a' must be a positive number, got True"),
                      ({}, "an empty mapping: give {label: weight}, or leave label_weights out"),
                      ([1, 2], "expected balanced or a mapping {label: weight}, got [1, 2]")):
        with pytest.raises(Exception, match=re.escape(said)):
            spec(type_, bad)
    assert spec(type_, {0: 2}).label_weights == {"0": 2.0}  # keys are label names, as data.label_names'


@pytest.mark.parametrize("type_", ["classification", "multilabel"])
def test_balanced_weights_of_a_streamed_split_are_a_recipe_error(tmp_path, type_):
    """A streamed split is not counted: said when the recipe is read, not after the set-up."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"tasks": {"t": {"type": type_, "label_weights": "balanced", "data": {
        "hub": "org/data", "train": "train", "streaming": True, "size": 100}}}}))
    with pytest.raises(UserError, match=rf"^{path}:\d+: tasks.t.label_weights: balanced needs the training split's "
                                        r"label counts, which a streamed split does not give"):
        load_recipe(path)


def test_the_weighted_losses_weigh_each_example_by_its_label_and_multilabels_are_torchs_pos_weight():
    """Classification: the mean over rows of weight[label] x loss (Keras' class_weight). torch's `weight=` divides
    by the batch's sum of weights: at batch_size 1 the weights cancelled, and grad_accum was no larger batch."""
    logits, targets = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 2, 1, 0])
    weights = [0.5, 2.0, 1.0]
    loss = task_type("classification").loss
    got = loss(logits, targets, {"label_weights": weights})
    assert torch.allclose(got, (F.cross_entropy(logits, targets, reduction="none") * torch.tensor(weights)[targets]).mean())
    assert not torch.allclose(got, loss(logits, targets, {}))
    one = loss(logits[1:2], targets[1:2], {"label_weights": weights})  # a batch of one (label 1, weight 2)
    assert torch.allclose(one, 2 * loss(logits[1:2], targets[1:2], {}))
    halves = (loss(logits[:3], targets[:3], {"label_weights": weights}) + loss(logits[3:], targets[3:], {"label_weights": weights})) / 2
    assert torch.allclose(halves, got)  # two micro-batches of 3 are one batch of 6
    multi = (torch.rand(6, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    got = task_type("multilabel").loss(logits, multi, {"label_weights": weights})
    assert torch.allclose(got, F.binary_cross_entropy_with_logits(logits, multi, pos_weight=torch.tensor(weights)))


def test_classification_leaves_out_rows_labelled_minus_100_with_or_without_weights_and_takes_a_column():
    """As torch's cross_entropy (ignore_index=-100) and transformers' BertForSequenceClassification; weighted: the
    weighted mean over the rows kept; every row -100 gives 0, not NaN, as tagging's loss. Labels (batch, 1) are
    the same as (batch,)."""
    logits, targets = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, -100, 2, 2, -100, 0])
    weights = [0.5, 2.0, 1.0]
    loss = task_type("classification").loss
    kept = targets != -100
    assert torch.allclose(loss(logits, targets, {}), F.cross_entropy(logits, targets))
    weighted = F.cross_entropy(logits[kept], targets[kept], reduction="none") * torch.tensor(weights)[targets[kept]]
    assert torch.allclose(loss(logits, targets, {"label_weights": weights}), weighted.mean())
    for spec_ in ({}, {"label_weights": weights}):
        assert torch.allclose(loss(logits, targets[:, None], spec_), loss(logits, targets, spec_))
        none = loss(logits, torch.full((6,), -100), spec_)
        assert none.item() == 0
    assert torch.allclose(loss(logits, targets.view(-1, 1), {}), F.cross_entropy(logits, targets))
    assert task_type("classification").loss_items(targets) == 4


def test_the_weights_are_on_the_logits_device_made_once():
    """No host-to-device copy per step (a sync on a GPU): the tensor is made once per device; the meta device shows
    it follows the logits wherever they are."""
    from mtnlp.tasks.base import on_device

    assert on_device((1.0, 2.0), torch.device("cpu")) is on_device((1.0, 2.0), torch.device("cpu"))
    logits = torch.empty(4, 2, device="meta")
    loss = task_type("classification").loss(logits, torch.zeros(4, dtype=torch.long, device="meta"),
                                            {"label_weights": [1.0, 3.0]})
    assert loss.device.type == "meta"
    with torch.inference_mode():  # an evaluation first: the cached tensor must still serve a training step after
        task_type("classification").loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), {"label_weights": [1.0, 5.0]})
    logits = torch.zeros(2, 2, requires_grad=True)
    task_type("classification").loss(logits, torch.zeros(2, dtype=torch.long), {"label_weights": [1.0, 5.0]}).backward()
    assert logits.grad is not None


def test_a_run_writes_its_balanced_weights_to_the_config_and_names_a_bad_label(make_recipe, tmp_path):
    tasks = tiny_tasks()
    tasks["sentiment"]["label_weights"] = "balanced"
    result = train(load_recipe(make_recipe(tasks=tasks, training={"steps": 2})))
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["tasks"]["sentiment"]
    train_labels = result.last_model.config.tasks["sentiment"]["labels"]
    assert len(config["label_weights"]) == len(train_labels) and all(w > 0 for w in config["label_weights"])
    assert "label_weights" not in config.get("score", {})
    tasks["sentiment"]["label_weights"] = {"nope": 2}
    path = make_recipe(tasks=tasks, name="bad.yaml", output_dir=str(tmp_path / "bad"))
    with pytest.raises(UserError, match=rf"^{path}:\d+: tasks.sentiment.label_weights: 'nope' is not a label of the task"):
        train(load_recipe(path))


def test_a_model_given_wrong_label_weights_says_which(tiny_encoder):
    from mtnlp import MultiTaskModel

    tasks = {"s": {"type": "classification", "labels": ["a", "b"], "label_weights": [1.0]}}
    with pytest.raises(ValueError, match=r"tasks\['s'\]\['label_weights'\]: expected one positive number per label \(2\)"):
        MultiTaskModel.from_encoder(tiny_encoder, tasks)
    source = MultiTaskModel.from_encoder(tiny_encoder, {"s": {**tasks["s"], "label_weights": [1.0, 2.0]}})
    with pytest.raises(ValueError, match=r"tasks\['s'\]\['label_weights'\]"):  # a transfer checks them too
        MultiTaskModel.from_trained(source, {"s": {**tasks["s"], "label_weights": [0.0, 2.0]}})


def test_tuned_thresholds_at_the_grids_highest_are_said():
    """Positive weights raise the probabilities: with balanced weights on GoEmotions 6 of 28 labels' thresholds
    were at 0.95, the grid's top, where model selection had used 0.5: now a warning says so."""
    kind, spec = task_type("multilabel"), task_type("multilabel").Spec(type="multilabel", data={"train": "x"})
    gold = [[1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]]
    probs = torch.tensor([[0.99, 0.98, 0.4], [0.93, 0.92, 0.9], [0.97, 0.94, 0.8], [0.91, 0.99, 0.3]])
    with pytest.warns(UserWarning, match=r"^tasks.tags.tune_thresholds: 2 of 3 labels' tuned thresholds are at the "
                                         r"grid's highest, 0.95: .* model selection during training used threshold 0.5$"):
        assert kind.fit(torch.logit(probs), gold, spec, "tags")["thresholds"] == [0.95, 0.95, 0.5]
    # a grid whose top is 0.5 or less: every tie goes to it (nearest 0.5), which says nothing of the probabilities
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low = task_type("multilabel").Spec(type="multilabel", data={"train": "x"}, threshold_grid=[0.3, 0.5])
        assert kind.fit(torch.logit(probs), gold, low, "tags")["thresholds"] == [0.5, 0.5, 0.5]


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_balanced_weights_give_a_label_missing_from_training_a_weight_too():
    """Counted without minlength, the last label that no training example has got no weight: the weights were
    one short, and the loss of a batch holding that label indexed past them."""
    got = task_type("classification").label_weights(spec("classification", "balanced"), ["a", "b", "c"],
                                                    Dataset.from_dict({"labels": [0, 0, 1]}))
    assert got == [0.5, 1.0, 1.0]  # 3 examples / (3 labels · count), a count of 0 taken as 1
