"""An update's loss: each task's loss averaged over all its items in the update (rows; labelled tokens for
tagging), so that grad_accum micro-batches give the update one larger batch gives (train.draw_update)."""

import json

import pytest
import torch
from conftest import DATA, set_up_run, tiny_tasks

from mtnlp.recipe import load_recipe
from mtnlp.train import draw_update, forward_backward

NER = {"ner": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ner_sample.conll")}}}
POS = {"pos": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ud_sample.conllu"), "tag_column": "upos"}}}


def one_update(make_recipe, tmp_path, name, tasks, mtl=None, **training):
    """One update's gradients (dropout off) and the losses it logged, of a fresh run; and its drawn batches."""
    with set_up_run(make_recipe(tasks=tasks, training={"steps": 1, **training}, mtl=mtl or {},
                                sampling={"strategy": "uniform", "group_by_length": False}, output_dir=str(tmp_path / name),
                                name=f"{name}.yaml")) as run:
        run.model.eval()
        draw_update(run)
        drawn = list(run.drawn)
        run.gradient.accumulate(run, forward_backward)
        grads = {n: p.grad.clone() for n, p in run.unwrapped.named_parameters() if p.grad is not None}
        return grads, run.log.flush(list(run.tasks)), drawn


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


def concatenated(batches: list[dict]) -> dict:
    """Micro-batches as one batch: each tensor padded to the widest (labels with -100, the rest with 0: the
    MiniLM tokenizer's pad id), then stacked."""
    width = max(b["input_ids"].shape[1] for b in batches)
    pad = lambda key, t: t if t.dim() == 1 else torch.nn.functional.pad(t, (0, width - t.shape[1]),
                                                                         value=-100 if key == "labels" else 0)
    return {key: torch.cat([pad(key, b[key]) for b in batches]) for key in batches[0]}


def test_a_mixed_update_is_each_task_pooled_over_its_items_times_its_part_of_the_micro_batches(make_recipe, tmp_path):
    """Micro-batches of two tasks in one update (`sum`): the update is, for each task, its loss over all its
    micro-batches' items as one batch, times its share of the micro-batches (the sampler's part for it)."""
    tasks = {"sentiment": {**tiny_tasks()["sentiment"], "dropout": 0.0}, **NER}
    with set_up_run(make_recipe(tasks=tasks, training={"steps": 1, "batch_size": 3, "grad_accum": 8, "seed": 2},
                                sampling={"strategy": "uniform", "group_by_length": False})) as run:
        run.model.eval()
        draw_update(run)
        drawn = [(task, batch) for task, batch, _, _ in run.drawn]
        run.gradient.accumulate(run, forward_backward)
        got = {n: p.grad.clone() for n, p in run.unwrapped.named_parameters() if p.grad is not None}
        by_task = {task: [batch for drew, batch in drawn if drew == task] for task, _ in drawn}
        ner_tokens = [int((b["labels"] != -100).sum()) for b in by_task.get("ner", [])]
        assert len(by_task) == 2 and len(set(ner_tokens)) > 1  # NER's micro-batches differ in size (the seed's draw)
        run.unwrapped.zero_grad(set_to_none=True)
        for task, batches in by_task.items():
            (run.unwrapped(**concatenated(batches), task=task).loss * len(batches) / len(drawn)).backward()
        expected = {n: p.grad for n, p in run.unwrapped.named_parameters() if p.grad is not None}
        assert_same_gradients(got, expected)


def test_a_gradient_method_of_ones_own_takes_the_micro_batches_it_says(make_recipe, monkeypatch, tmp_path):
    """draw_update draws `micro_batches()` of them first; a method that trains on another number is told so."""
    from mtnlp import gradients
    from mtnlp.recipes.multitask import train
    from mtnlp.sampling import EveryTask

    class OneOfEach(gradients.GradientMethod):  # one micro-batch of every task per update, whatever grad_accum
        def task_order(self, sampler, tasks, grad_accum):
            return EveryTask(tasks, 1)

        def micro_batches(self, grad_accum, tasks):
            return len(tasks)

        def accumulate(self, run, micro_step):
            return [micro_step(run, sync=i == len(run.tasks) - 1) for i in range(len(run.tasks))][-1]

    class Short(OneOfEach):
        def micro_batches(self, grad_accum, tasks):
            return len(tasks) + 1

    monkeypatch.setitem(gradients.GRADIENT_METHODS, "one_of_each", OneOfEach)
    monkeypatch.setitem(gradients.GRADIENT_METHODS, "short", Short)
    train(load_recipe(make_recipe(training={"steps": 2, "grad_accum": 2}, mtl={"gradient": "one_of_each"})))
    last = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["batches"] == dict.fromkeys(tiny_tasks(), 2)  # one of each task per update
    with pytest.raises(RuntimeError, match=r"^Short.accumulate took fewer micro-batches than its micro_batches\(\) "
                                           r"gives \(1 left\)"):
        train(load_recipe(make_recipe(training={"steps": 2}, mtl={"gradient": "short"}, overwrite_output_dir=True)))


def test_a_micro_batch_without_labelled_items_adds_nothing_and_no_nan(make_recipe, tmp_path):
    """A tagging batch whose words all encode to nothing (a zero-width space, a soft hyphen) has no labelled
    token: its loss is 0 and its share 0, not 0/0, which would make every encoder weight NaN at the next step."""
    with set_up_run(make_recipe(tasks=NER, training={"steps": 1, "batch_size": 4},
                                sampling={"strategy": "uniform", "group_by_length": False})) as run:
        run.model.eval()
        task, batch, positions = next(run.batches)
        run.batches = iter([(task, {**batch, "labels": torch.full_like(batch["labels"], -100)}, positions)])
        draw_update(run)
        assert [float(share) for *_, share in run.drawn] == [0.0]
        run.gradient.accumulate(run, forward_backward)
        grads = [p.grad for p in run.unwrapped.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_dwa_sees_the_update_loss_the_log_records(make_recipe, tmp_path):
    """DWA's window means are of each task's pooled update loss (as logged), not of each micro-batch's own mean:
    with unequal tagging micro-batches the two differ."""
    with set_up_run(make_recipe(tasks=NER, training={"steps": 1, "batch_size": 4, "grad_accum": 4},
                                mtl={"weighting": "dwa"}, sampling={"strategy": "uniform", "group_by_length": False},
                                output_dir=str(tmp_path / "dwa"), name="dwa.yaml")) as run:
        run.model.eval()
        draw_update(run)
        shares = [float(share) for *_, share in run.drawn]
        run.gradient.accumulate(run, forward_backward)
        seen = float(run.weighting.sums["ner"]) / run.weighting.counts["ner"]
        assert run.weighting.counts["ner"] == 4 and max(shares) - min(shares) > 0.05
        assert seen == pytest.approx(run.log.flush(["ner"])["ner"], rel=1e-5)
