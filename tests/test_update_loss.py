"""An update's loss: each task's loss averaged over all its items in the update (rows; labelled tokens for
tagging), so that grad_accum micro-batches give the update one larger batch gives (train.draw_update)."""

import pytest
import torch
from conftest import DATA, tiny_tasks

from mtnlp.folders import release_run_folder
from mtnlp.recipe import load_recipe
from mtnlp.train import draw_update, forward_backward, setup

NER = {"ner": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ner_sample.conll")}}}
POS = {"pos": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ud_sample.conllu"), "tag_column": "upos"}}}


def one_update(make_recipe, tmp_path, name, tasks, mtl=None, **training):
    """One update's gradients (dropout off) and the losses it logged, of a fresh run; and its drawn batches."""
    run = setup(load_recipe(make_recipe(tasks=tasks, training={"steps": 1, **training}, mtl=mtl or {},
                                        sampling={"strategy": "uniform", "group_by_length": False}, output_dir=str(tmp_path / name),
                                        name=f"{name}.yaml")))
    try:
        run.model.eval()
        draw_update(run)
        drawn = list(run.drawn)
        run.gradient.accumulate(run, forward_backward)
        grads = {n: p.grad.clone() for n, p in run.unwrapped.named_parameters() if p.grad is not None}
        return grads, run.log.flush(), drawn
    finally:
        release_run_folder(run.lock)
        run.bar.close()


def assert_same_gradients(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("gradient", ["sum", "pcgrad"])
def test_four_tagging_micro_batches_are_one_batch_of_their_sentences(make_recipe, tmp_path, gradient):
    """The same 16 sentences (the epoch's order does not depend on the batch size) as 4 micro-batches of 4 and
    as one batch of 16: the same gradient and the same logged loss. Each micro-batch's own token mean gave a
    gradient 1.1 % off; PCGrad takes each task's mean over its micro-batches in the same way."""
    mtl, tasks = {"gradient": gradient}, NER if gradient == "sum" else {**NER, **POS}  # (PCGrad: every task)
    small, small_loss, drawn = one_update(make_recipe, tmp_path, "small", tasks, mtl, batch_size=4, grad_accum=4)
    large, large_loss, _ = one_update(make_recipe, tmp_path, "large", tasks, mtl, batch_size=16)
    assert_same_gradients(small, large)
    for task in tasks:
        tokens = [int((batch["labels"] != -100).sum()) for drawn_task, batch, _, _ in drawn if drawn_task == task]
        assert len(tokens) == 4 and len(set(tokens)) > 1  # unequal: each micro-batch's own mean would weigh them wrongly
        shares = [float(share) for drawn_task, *_, share in drawn if drawn_task == task]
        assert shares == pytest.approx([4 * n / sum(tokens) for n in tokens])
        assert small_loss[task] == pytest.approx(large_loss[task], rel=1e-5)


def test_a_mixed_update_weighs_each_task_by_its_micro_batches_and_each_item_alike(make_recipe, tmp_path):
    """Micro-batches of several tasks in one update: a task keeps the part its micro-batches give it
    (the sampler's), and inside it every item (sentence, token) weighs the same."""
    tasks = {"sentiment": tiny_tasks()["sentiment"], **NER}
    _, _, drawn = one_update(make_recipe, tmp_path, "mixed", tasks, batch_size=3, grad_accum=8, seed=2)
    by_task = {}
    for task, batch, _, share in drawn:
        items = int((batch["labels"] != -100).sum()) if task == "ner" else len(batch["labels"])
        by_task.setdefault(task, []).append((items, float(share)))
    assert set(by_task) == {"sentiment", "ner"}  # the seed draws both tasks in the update, NER twice or more
    assert len({items for items, _ in by_task["ner"]}) > 1, by_task
    for task, pairs in by_task.items():
        assert sum(share for _, share in pairs) == pytest.approx(len(pairs))
        assert [share for _, share in pairs] == pytest.approx([items * len(pairs) / sum(i for i, _ in pairs)
                                                               for items, _ in pairs])
    assert all(share == 1.0 for _, share in by_task["sentiment"])  # equal rows: exactly the micro-batch's own mean
