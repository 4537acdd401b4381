"""Multi-task methods: loss weighting, PCGrad and CAGrad, LoRA adapters, task-specific top layers."""

import json
import math
import re
import types

import numpy as np
import pytest
import torch
from conftest import tiny_tasks
from test_hub import hub_session, shared_hub  # noqa: F401  (fixtures: one loopback hub and CLI session per module)

from mtnlp.errors import UserError
from mtnlp.export import export_head
from mtnlp.modeling import MultiTaskModel
from mtnlp.gradients import GRADIENT_METHODS, MGDA, CAGrad, PCGrad, build_gradient_method, project_conflicting
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.weighting import build_weighting, dwa_weights

TASKS = {"a": {"type": "classification", "labels": ["x", "y"]}, "b": {"type": "tagging", "labels": ["O", "B-P", "I-P"]}}
LORA = {"type": "lora", "r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value", "dense"]}
TOP = {"type": "task_layers", "layers": 1}


# ------------------------------------------------------------------ PCGrad maths


def test_pcgrad_projects_two_conflicting_gradients_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1·g2 = -1 < 0
    combined, conflicts = project_conflicting(g, np.random.default_rng(0))
    # g1' = g1 - (-1/2) g2 = [0.5, 0.5];  g2' = g2 - (-1/1) g1 = [0, 1]
    assert torch.allclose(combined, torch.tensor([0.5, 1.5]))
    assert conflicts == 1.0


def test_pcgrad_counts_conflicts_among_the_tasks_with_a_gradient():
    """A task with loss_weight 0 (no gradient) made the fraction three times smaller than CAGrad's."""
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])
    assert project_conflicting(g, np.random.default_rng(0))[1] == 1.0 == CAGrad().combine(g, None)[1]


def test_pcgrad_leaves_agreeing_gradients_alone():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    combined, conflicts = project_conflicting(g, np.random.default_rng(0))
    assert torch.equal(combined, g.sum(0)) and conflicts == 0.0


def test_pcgrad_projected_gradient_no_longer_conflicts_with_the_other():
    torch.manual_seed(0)
    for _ in range(20):
        g = torch.randn(2, 50, dtype=torch.float64)
        combined, _ = project_conflicting(g, np.random.default_rng(0))
        if g[0] @ g[1] < 0:
            g0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]
            g1 = g[1] - (g[1] @ g[0]) / (g[0] @ g[0]) * g[0]
            assert abs(float(g0 @ g[1])) < 1e-9 and abs(float(g1 @ g[0])) < 1e-9
            assert torch.allclose(combined, g0 + g1)
        else:
            assert torch.allclose(combined, g.sum(0))


# ------------------------------------------------------------------ CAGrad maths


def simplex_grid() -> torch.Tensor:
    """Weights (a, b, 1 - a - b) of three tasks on a 201 x 201 grid of the simplex."""
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201) if a + b <= 1 + 1e-12]
    return torch.tensor(grid, dtype=torch.float64)


def conflicting_gradients(seed: int):
    """(scale, gradients of three tasks, two of them in conflict) at scales 1e-4, 1 and 1e3."""
    gen = torch.Generator().manual_seed(seed)
    for scale in (1e-4, 1.0, 1e3):
        g = torch.randn(3, 30, generator=gen, dtype=torch.float64) * scale
        g[1] = -0.8 * g[0] + 0.3 * g[1]
        yield scale, g


def _cagrad(grads, c):
    """CAGrad's update at the paper's scale (mtnlp scales it by K / (1 + c²))."""
    update, conflicts = CAGrad(cagrad_c=c).combine(grads, np.random.default_rng(0))
    return update * (1 + c * c) / grads.shape[0], conflicts


def test_cagrad_of_two_orthogonal_gradients_by_hand():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # symmetric: w = (1/2, 1/2), g_w = g0 = (1/2, 1/2); d = g0 + c·|g0|/|g_w|·g_w = (1 + c) g0
    update, conflicts = CAGrad(cagrad_c=0.5).combine(g, np.random.default_rng(0))
    assert torch.allclose(update, 1.5 * torch.tensor([0.5, 0.5]) * 2 / 1.25, atol=1e-6) and conflicts == 0.0


def test_cagrad_with_c_0_is_the_sum_of_the_task_gradients():
    g = torch.randn(3, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    update, _ = CAGrad(cagrad_c=0.0).combine(g, np.random.default_rng(0))
    assert torch.allclose(update, g.sum(0))


def test_cagrad_finds_the_best_worst_task_improvement_within_its_ball():
    """The update d maximises min_i g_i·d subject to |d - g0| <= c|g0|. By duality that maximum equals
    min over the simplex of F(w) = g_w·g0 + c|g0||g_w|: checked against F on a fine grid of weights."""
    weights = simplex_grid()
    for scale, g in conflicting_gradients(seed=1):
        for c in (0.2, 0.5, 0.9):
            d, _ = _cagrad(g, c)
            g0 = g.mean(0)
            assert (d - g0).norm() <= c * g0.norm() * (1 + 1e-6)
            gw = weights @ g
            dual = (gw @ g0 + c * g0.norm() * gw.norm(dim=1)).min()
            worst = (g @ d).min()
            assert worst >= dual - 1e-3 * abs(float(dual)) - 1e-12, (scale, c, float(worst), float(dual))
            assert worst >= (g @ g0).min() - 1e-9 * scale ** 2  # never worse for the worst-off task than the average


def test_cagrad_solves_its_dual_to_where_the_duality_gap_closes():
    """At the weights w the solver returns, d(w) = g0 + c|g0|/|g_w|·g_w is feasible, so min_i g_i·d(w) <= the
    optimum <= F(w): their gap bounds how far the update is from CAGrad's. SLSQP at ftol 1e-10 stopped at
    gaps of 8e-5 (relative) with c = 0.9 (mathcheck walk)."""
    from mtnlp.gradients import cagrad_weights

    rng = np.random.default_rng(123)
    for k, size in [(2, 5), (3, 7), (4, 10), (3, 50)]:
        for _ in range(5):
            g = rng.normal(size=(k, size)) * rng.uniform(0.1, 10, size=(k, 1))
            for c in (0.5, 0.9):
                w = cagrad_weights(g @ g.T, c)
                g0, gw = g.mean(0), w @ g
                dual = gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw)
                worst = (g @ (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw)).min()
                assert dual - worst <= 1e-6 * abs(dual), (k, size, c, dual, worst)


def test_cagrad_with_norms_far_apart_is_never_worse_for_the_worst_off_task_than_the_average():
    """Norms 1000, 0.01 and 1.7 (props walk): the solver's weight of the small task was too coarse, and d lowered
    the worst task's improvement to -18.9 where the average gradient's is -2.34 (the paper's d never goes below
    it: g0 lies in its ball)."""
    g = torch.tensor([[0, 0, 0, 0, -1000], [0.004, 0, 0, 0.006, 0.007], [-1, 0, 0, -1, -1]], dtype=torch.float64)
    d, _ = _cagrad(g, 0.9)
    g0 = g.mean(0)
    assert (g @ d).min() >= (g @ g0).min() - 1e-9 and (d - g0).norm() <= 0.9 * g0.norm() * (1 + 1e-9)


def test_cagrad_of_zero_gradients_is_zero():
    update, conflicts = CAGrad().combine(torch.zeros(3, 5), np.random.default_rng(0))
    assert torch.equal(update, torch.zeros(5)) and conflicts == 0.0


def test_cagrad_leaves_out_a_task_without_gradient_whatever_the_task_order():
    """A task with loss_weight 0 has a zero gradient: the worst-off task whatever the update, it made the dual put all
    its weight there and the solver's rounding choose a direction that depended on the order of the tasks."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    z = torch.zeros(2)
    alone, _ = CAGrad(cagrad_c=0.5).combine(torch.stack([a, b]), np.random.default_rng(0))
    assert not torch.allclose(alone, (a + b) * 2 / 1.25)  # conflict-averse: not the scaled sum
    for order in ([z, a, b], [a, z, b], [b, a, z]):
        update, conflicts = CAGrad(cagrad_c=0.5).combine(torch.stack(order), np.random.default_rng(0))
        assert torch.allclose(update, alone, atol=1e-5) and conflicts == 1.0, order  # a and b conflict: 1 pair of 1
    # opposite gradients: no update improves both; the average (0), not a direction the solver's rounding picks
    update, _ = CAGrad(cagrad_c=0.5).combine(torch.stack([a, -a]), np.random.default_rng(0))
    assert torch.allclose(update, torch.zeros(2), atol=1e-6)


def test_conflict_counts_carried_over_from_another_gradient_method_are_not_logged_as_ours():
    from mtnlp.gradients import PCGrad

    pcgrad = PCGrad()
    pcgrad.conflicts = [0.25, 0.75]
    cagrad = CAGrad()
    cagrad.load_state_dict_json(json.loads(json.dumps(pcgrad.state_dict_json())))
    assert cagrad.log_record() == {}
    again = PCGrad()
    again.load_state_dict_json({"conflicts": [0.5]})  # a checkpoint from before the state named its method
    assert again.log_record() == {"pcgrad_conflicts": 0.5}
    older = CAGrad()
    older.load_state_dict_json({"conflicts": [0.5]})  # the same checkpoint resumed with mtl.gradient: cagrad
    assert older.log_record() == {}


def test_cagrad_and_mgda_log_each_tasks_coefficient_averaged_since_the_last_record():
    """Their solved coefficients are what they do to the tasks, and were logged nowhere ("weights" is the loss
    weighting's, 1.0); a resume goes on with the updates since the last record, as with the conflicts."""
    for method in (CAGrad(), MGDA()):
        solved = []
        for step, grads in enumerate(({"a": [1.0, 0.0, 0.0], "b": [0.0, 2.0, 0.0], "c": [0.0, 0.0, 0.0]},
                                      {"a": [1.0, 0.0, 0.0], "b": [-1.0, 0.1, 0.0], "c": [0.0, 1.0, 0.0]})):
            method.accumulate(*_fake_run(grads, step)[:2])
            solved.append(list(method.solved[-1]))
        assert solved[0][2] == 0.0 and all(sum(c) > 0 for c in solved)  # task c had no gradient: left out
        resumed = type(method)()
        resumed.tasks = ["a", "b", "c"]  # (its accumulate sets them from the run)
        resumed.load_state_dict_json(json.loads(json.dumps(method.state_dict_json())))
        record = method.log_record()
        assert record["coefficients"] == pytest.approx({t: (x + y) / 2 for t, x, y in zip("abc", *solved)})
        assert resumed.log_record() == record and method.log_record() == {}
    unnamed = MGDA()  # combine called without accumulate (which names the tasks), or a checkpoint of other tasks
    unnamed.combine(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), np.random.default_rng(0))
    assert "coefficients" not in unnamed.log_record()
    unnamed.tasks = ["a", "b", "c"]
    unnamed.load_state_dict_json({"log_key": unnamed.log_key, "conflicts": [0.0], "coefficients": [[0.5, 0.5]]})
    assert "coefficients" not in unnamed.log_record()


def test_cagrad_counts_the_conflicting_task_pairs():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])  # pairs (0,1) conflict; (0,2) and (1,2) do not
    _, conflicts = CAGrad().combine(g, np.random.default_rng(0))
    assert conflicts == pytest.approx(1 / 3)


# ------------------------------------------------------------------ MGDA maths


def _mgda(grads):
    update, conflicts = MGDA().combine(grads, np.random.default_rng(0))
    return update / max(int((grads.norm(dim=1) > 0).sum()), 1), conflicts  # the min-norm point (mtnlp scales by K)


def test_mgda_by_hand():
    d, conflicts = _mgda(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # symmetric: the midpoint
    assert torch.allclose(d, torch.tensor([0.5, 0.5]), atol=1e-6) and conflicts == 0.0
    # on the segment w g1 + (1 - w) g2 the norm is smallest at w = g2·(g2 - g1) / |g1 - g2|² = 1.75 / 3.25
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    d, conflicts = _mgda(torch.stack([g1, g2]))
    w = 1.75 / 3.25
    assert torch.allclose(d, w * g1 + (1 - w) * g2, atol=1e-6) and conflicts == 1.0
    # one gradient in the others' cone: the smallest one is the answer (an end of the hull)
    d, _ = _mgda(torch.tensor([[1.0, 0.0], [3.0, 0.5]]))
    assert torch.allclose(d, torch.tensor([1.0, 0.0]), atol=1e-6)
    equal = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    assert torch.allclose(MGDA().combine(equal, np.random.default_rng(0))[0], equal.sum(0), atol=1e-5)


def test_mgda_finds_the_smallest_norm_in_the_hull_and_no_task_loses():
    """The update is the min-norm point of the hull (checked against a fine grid of weights), and by its
    optimality conditions g_i·d >= |d|² for every task: a descent direction for all of them."""
    weights = simplex_grid()
    for scale, g in conflicting_gradients(seed=2):
        d, _ = _mgda(g)
        assert d.norm() <= (weights @ g).norm(dim=1).min() * (1 + 1e-6)
        assert ((g @ d) >= (d @ d) * (1 - 1e-4)).all(), (scale, g @ d, d @ d)


def min_norm_by_active_sets(g: torch.Tensor) -> torch.Tensor:
    """The smallest-norm point of the hull of g's rows, by trying every set of rows it may combine."""
    import itertools

    gram, best = (g @ g.T).numpy(), None
    for size in range(1, len(g) + 1):
        for rows in map(list, itertools.combinations(range(len(g)), size)):
            kkt = np.block([[gram[np.ix_(rows, rows)], np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
            w = np.linalg.lstsq(kkt, np.r_[np.zeros(size), 1.0], rcond=None)[0][:size]
            if (w >= -1e-12).all():
                d = torch.as_tensor(w) @ g[rows]
                best = d if best is None or d.norm() < best.norm() else best
    return best


def test_mgda_is_exact_when_the_task_gradients_differ_in_scale():
    """A solver with absolute tolerances (SLSQP, the first version) stopped early when the norms spread over
    1e4: an update 6x too long, which made a task's loss rise in one case of six. Checked against every
    active set, and beyond (norms over 1e6 and 1e8) by the optimality condition g_i·d >= |d|², which holds
    only at the smallest-norm point of the hull."""
    for spread, k in ((4, 5), (6, 5), (8, 8)):
        for seed in range(10):
            gen = torch.Generator().manual_seed(seed)
            scales = torch.logspace(-spread / 2, spread / 2, k, dtype=torch.float64)[torch.randperm(k, generator=gen)]
            g = torch.randn(k, 200, generator=gen, dtype=torch.float64) * scales[:, None]
            d, _ = _mgda(g)
            assert ((g @ d) >= (d @ d) * (1 - 1e-6)).all(), (spread, seed)
            if spread == 4:
                exact = min_norm_by_active_sets(g)
                assert d.norm() <= exact.norm() * (1 + 1e-6), (seed, float(d.norm()), float(exact.norm()))


def test_mgda_of_opposite_or_zero_gradients_is_zero_and_a_task_without_gradient_is_left_out():
    a, b, z = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0]), torch.zeros(2)
    assert torch.allclose(MGDA().combine(torch.stack([a, -a]), np.random.default_rng(0))[0], torch.zeros(2), atol=1e-6)
    assert torch.equal(MGDA().combine(torch.zeros(3, 4), np.random.default_rng(0))[0], torch.zeros(4))
    alone, _ = MGDA().combine(torch.stack([a, b]), np.random.default_rng(0))
    for order in ([z, a, b], [a, z, b], [b, a, z]):  # a zero gradient is the hull's smallest point: not the update
        update, conflicts = MGDA().combine(torch.stack(order), np.random.default_rng(0))
        assert torch.allclose(update, alone, atol=1e-6) and conflicts == 1.0, order


# ------------------------------------------------------------------ loss weighting maths


def test_static_weighting_multiplies_by_the_task_weight():
    w = build_weighting("static", {"a": 2.0, "b": 0.5})
    assert float(w("a", torch.tensor(3.0))) == 6.0 and w.weights() == {"a": 2.0, "b": 0.5}


def test_uncertainty_loss_and_gradient():
    w = build_weighting("uncertainty", {"a": 1.0, "b": 1.0})
    w.load_state_dict_json({"log_vars": [0.0, math.log(2.0)]})
    loss = w("b", torch.tensor(3.0))
    assert math.isclose(loss.item(), 0.5 * (3.0 / 2.0 + math.log(2.0)), rel_tol=1e-6)
    loss.backward()
    # d/ds 0.5 (exp(-s) L + s) = 0.5 (1 - exp(-s) L) = 0.5 (1 - 1.5) at s = log 2
    assert w.log_vars["a"].grad is None and math.isclose(w.log_vars["b"].grad.item(), -0.25, rel_tol=1e-6)
    assert math.isclose(w.weights()["b"], 0.25, rel_tol=1e-6)


def test_uncertainty_log_variance_converges_to_log_of_the_loss():
    w = build_weighting("uncertainty", {"a": 1.0})
    optimizer = torch.optim.SGD(w.parameters(), lr=0.5)
    for _ in range(300):
        optimizer.zero_grad()
        w("a", torch.tensor(4.0)).backward()
        optimizer.step()
    assert math.isclose(float(w.log_vars["a"]), math.log(4.0), abs_tol=1e-3)


def test_uncertainty_state_round_trips_through_json():
    w = build_weighting("uncertainty", {"a": 1.0, "b": 1.0})
    with torch.no_grad():
        w.log_vars["a"].fill_(0.1234567), w.log_vars["b"].fill_(-2.5)
    other = build_weighting("uncertainty", {"a": 1.0, "b": 1.0})
    other.load_state_dict_json(json.loads(json.dumps(w.state_dict_json())))
    assert all(torch.equal(other.log_vars[n], w.log_vars[n]) for n in "ab")


def test_uncertainty_log_variance_of_a_task_not_drawn_stays_put():
    """AdamW moves a parameter with a zero gradient by its momentum; one without a gradient it skips.
    A step that trains only task a must leave b's log-variance where it is, as it leaves b's head."""
    w = build_weighting("uncertainty", {"a": 1.0, "b": 1.0})
    optimizer = torch.optim.AdamW(w.parameters(), lr=0.1, weight_decay=0.0)
    for task in ("a", "b", "a", "a"):
        before = w.state_dict_json()["log_vars"]
        optimizer.zero_grad(set_to_none=True)
        w(task, torch.tensor(4.0)).backward()
        optimizer.step()
        after = w.state_dict_json()["log_vars"]
        other = 1 if task == "a" else 0
        assert after[other] == before[other] and after[1 - other] != before[1 - other]


def test_dwa_weights_by_hand():
    weights = dwa_weights({"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 1.0}, temperature=2.0)
    ea, eb = math.exp(0.25), math.exp(0.5)
    assert math.isclose(weights["a"], 2 * ea / (ea + eb)) and math.isclose(weights["b"], 2 * eb / (ea + eb))
    assert math.isclose(sum(weights.values()), 2.0)


def test_dwa_updates_once_per_window_and_keeps_unseen_tasks_at_ratio_one():
    w = build_weighting("dwa", {"a": 1.0, "b": 1.0, "c": 1.0}, dwa_temperature=1.0, dwa_window=2)
    schedule = [{"a": 2.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}]
    for step, losses in enumerate(schedule, 1):
        for task, loss in losses.items():
            w.observe(task, torch.tensor(loss))
        w.end_step(step, lambda x: x)
        if step < 4:
            assert w.weights() == {"a": 1.0, "b": 1.0, "c": 1.0}
    expected = dwa_weights({"a": 2.0, "b": 1.0, "c": None}, {"a": 1.0, "b": 1.0, "c": None}, 1.0)
    assert w.weights() == pytest.approx(expected)
    assert w.weights()["a"] < w.weights()["b"] == pytest.approx(w.weights()["c"])  # a improved fastest
    restored = build_weighting("dwa", {"a": 1.0, "b": 1.0, "c": 1.0}, dwa_temperature=1.0, dwa_window=2)
    restored.load_state_dict_json(json.loads(json.dumps(w.state_dict_json())))
    assert restored.weights() == w.weights()


def test_dwa_keeps_ratio_one_for_a_task_missing_from_the_last_window_only():
    """A task drawn in the window before but not in the last one has no ratio: 1, as for b whose loss stayed,
    not 0 (a weight cut exactly when sampling starved it)."""
    w = build_weighting("dwa", {"a": 1.0, "b": 1.0, "c": 1.0}, dwa_temperature=1.0, dwa_window=1)
    for step, losses in enumerate([{"a": 2.0, "b": 1.0, "c": 4.0}, {"a": 1.0, "b": 1.0}], 1):
        for task, loss in losses.items():
            w.observe(task, torch.tensor(loss))
        w.end_step(step, lambda x: x)
    assert w.weights() == pytest.approx(dwa_weights({"a": 2.0, "b": 1.0, "c": 4.0}, {"a": 1.0, "b": 1.0, "c": None}, 1.0))
    assert w.weights()["a"] < w.weights()["b"] == pytest.approx(w.weights()["c"])


# ------------------------------------------------------------------ soft sharing in the model


def _inputs(tiny_encoder):
    from transformers import AutoTokenizer

    return dict(AutoTokenizer.from_pretrained(tiny_encoder)(["hello world", "a longer sentence is here"],
                                                            padding=True, return_tensors="pt"))


def _perturb(model, pattern):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if pattern in name:
                p.add_(torch.randn_like(p) * 0.2)


@pytest.mark.parametrize("sharing", [LORA, TOP], ids=["lora", "task_layers"])
def test_fresh_soft_sharing_starts_from_the_pretrained_encoder(tiny_encoder, sharing):
    inputs = _inputs(tiny_encoder)
    hard = MultiTaskModel.from_encoder(tiny_encoder, TASKS).eval()
    soft = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=sharing).eval()
    for task in TASKS:
        assert torch.allclose(hard.encode(**inputs), soft.encode(**inputs, task=task), atol=1e-6)


def test_lora_adapters_leave_the_shared_encoder_trainable(tiny_encoder):
    """peft freezes the base weights it injects into; freezing is mtl.freeze_encoder's choice, so a default
    LoRA run trains the shared encoder with the adapters (and gradient methods have a shared gradient)."""
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=LORA)
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == []
    assert any("lora_" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("sharing,pattern", [(LORA, "lora_B.a"), (TOP, "task_layers.a."),
                                             ({**LORA, "targets": ["query", "word_embeddings"]}, "lora_embedding_A.a")],
                         ids=["lora", "task_layers", "lora_on_an_embedding"])  # (peft starts an Embedding's A at 0)
def test_soft_sharing_keeps_tasks_apart_and_survives_save_load_export(tiny_encoder, tmp_path, sharing, pattern):
    inputs = _inputs(tiny_encoder)
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=sharing).eval()
    before_b = model.encode(**inputs, task="b")
    _perturb(model, pattern)  # change only task a's adapter / layers
    assert not torch.allclose(model.encode(**inputs, task="a"), before_b, atol=1e-4)
    assert torch.allclose(model.encode(**inputs, task="b"), before_b, atol=1e-6)
    heads = model.forward_heads(**inputs)
    for task in TASKS:
        assert torch.allclose(heads[task], model(**inputs, task=task).logits, atol=1e-6)

    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.sharing == sharing
    for task in TASKS:
        assert torch.allclose(loaded(**inputs, task=task).logits, model(**inputs, task=task).logits, atol=1e-6)
        exported = export_head(model, task)  # a plain Bert*Classification: adapter merged / layers in place
        assert type(exported).__name__.startswith("Bert")
        assert torch.allclose(exported(**inputs).logits, model(**inputs, task=task).logits, atol=1e-5)


def test_lora_gradients_reach_only_the_active_tasks_adapter(tiny_encoder):
    inputs = _inputs(tiny_encoder)
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=LORA)
    _perturb(model, "lora_B")  # B = 0 would give A no gradient
    model(**inputs, task="a", labels=torch.tensor([0, 1])).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".a." in n)
    assert all(g is None for n, g in grads.items() if ".b." in n)
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # no adapter frozen


def test_task_layers_copy_the_pretrained_top_layers(tiny_encoder):
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_encoder).state_dict()
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS, sharing=TOP)
    assert len(model.encoder.encoder.layer) == 1
    for task in TASKS:
        key = "attention.self.query.weight"
        assert torch.equal(model.task_layers[task][0].state_dict()[key], pretrained[f"encoder.layer.1.{key}"])
    assert sum(p.numel() for p in model.shared_parameters()) < sum(p.numel() for p in model.encoder.parameters()) + 1


# ------------------------------------------------------------------ training with each method


def _logs(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mtl", [
    {"weighting": "uncertainty", "weighting_lr": 0.05},
    {"weighting": "dwa", "dwa_window": 2},
    {"gradient": "pcgrad", "weighting": "uncertainty"},
    {"sharing": "lora", "freeze_encoder": True, "lora_r": 2},
    {"sharing": "task_layers", "task_layers": 1, "gradient": "cagrad", "cagrad_c": 0.3},
], ids=["uncertainty", "dwa", "pcgrad+uncertainty", "lora-frozen", "task_layers+cagrad"])
def test_each_method_trains_under_bf16(make_recipe, tmp_path, tiny_encoder, mtl, capsys):
    from transformers import AutoModel

    recipe = load_recipe(make_recipe(training={"steps": 8, "mixed_precision": "bf16"}, mtl=mtl))
    result = train(recipe)
    run = tmp_path / "run"
    logs = _logs(run)
    assert len(logs) == 8 and all(set(r["weights"]) == set(tiny_tasks()) for r in logs)
    if mtl.get("weighting") == "uncertainty":  # learned weights move away from 1/2 and are logged
        assert any(abs(w - 0.5) > 1e-3 for w in logs[-1]["weights"].values())
    if mtl.get("weighting") == "dwa":
        assert any(abs(w - 1.0) > 1e-6 for w in logs[-1]["weights"].values())
    if "gradient" in mtl:  # every update trains every task
        key = GRADIENT_METHODS[mtl["gradient"]].log_key
        assert all(set(r["loss"]) == set(tiny_tasks()) and 0 <= r[key] <= 1 for r in logs)
    model = result.last_model
    if mtl.get("freeze_encoder"):
        pretrained = AutoModel.from_pretrained(tiny_encoder).state_dict()
        plain = {k: v for k, v in model.encoder.state_dict().items() if "lora_" not in k}
        assert torch.equal(plain["embeddings.word_embeddings.weight"], pretrained["embeddings.word_embeddings.weight"])
        trainable, total = (sum(p.numel() for p in model.parameters() if p.requires_grad or everything)
                            for everything in (False, True))
        assert trainable < 0.2 * total  # and the run said what trains:
        assert f"parameters: {trainable:,} of {total:,} train ({trainable / total:.1%})\n" in capsys.readouterr().out
    # the kept model reloads and predicts through the pipeline
    from mtnlp.pipeline import MultiTaskPipeline

    predictions = MultiTaskPipeline.from_pretrained(str(run / "model"))(["a fine film", "EU rejects German call"])
    assert set(predictions[0]) == set(tiny_tasks())
    assert json.loads((run / "metrics.json").read_text())["tasks"].keys() == tiny_tasks().keys()


@pytest.mark.parametrize("mtl", [{"weighting": "uncertainty", "gradient": "pcgrad"}, {"weighting": "dwa", "dwa_window": 2},
                                 {"gradient": "cagrad"}], ids=["uncertainty+pcgrad", "dwa", "cagrad"])
def test_resume_is_exact_with_learned_weights(make_recipe, tmp_path, mtl):
    def params(model):
        return {k: v.clone() for k, v in model.state_dict().items()}

    straight = train(load_recipe(make_recipe(training={"steps": 6, "save_every": 3}, mtl=mtl)))
    expected, expected_logs = params(straight.last_model), _logs(tmp_path / "run")
    resumed = train(load_recipe(make_recipe(training={"steps": 6, "save_every": 3,
                                                      "resume_from": str(tmp_path / "run/checkpoints/step-000003")},
                                            mtl=mtl)))
    got = params(resumed.last_model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _logs(tmp_path / "run")[-1]["weights"] == expected_logs[-1]["weights"]


LORA_2 = {"sharing": "lora", "lora_r": 2}


@pytest.mark.parametrize("started, changed", [({}, {"weighting": "uncertainty"}), ({}, LORA_2),
                                              (LORA_2, {**LORA_2, "freeze_encoder": True})],
                         ids=["weighting", "sharing", "freeze_encoder"])
def test_resuming_with_other_methods_is_a_user_error(make_recipe, tmp_path, started, changed):
    train(load_recipe(make_recipe(training={"steps": 3, "save_every": 3}, mtl=started)))
    folder = tmp_path / "run/checkpoints/step-000003"
    with pytest.raises(UserError, match=f"^{folder}: written by a run with other tasks or methods "
                                        r"\(mtl.sharing, mtl.freeze_encoder, mtl.weighting, heads\)"):
        train(load_recipe(make_recipe(training={"steps": 6, "resume_from": str(folder)}, mtl=changed)))


def test_transfer_from_a_lora_model_merges_the_task_adapter(make_recipe, tmp_path, tiny_encoder, capsys):
    tasks = tiny_tasks()
    first = train(load_recipe(make_recipe(training={"steps": 4}, mtl={"sharing": "lora", "lora_r": 2})))
    source = first.model
    target = make_recipe(tasks={"ner": tasks["ner"]}, training={"steps": 1, "lr": 1e-12},
                         model={"encoder": tiny_encoder, "init_from": str(tmp_path / "run"), "max_length": 64},
                         output_dir=str(tmp_path / "ft"), name="ft.yaml")
    second = train(load_recipe(target))
    merged = source.encoder_state("ner")
    got = second.last_model.encoder.state_dict()
    assert all(torch.allclose(merged[k], got[k], atol=1e-6) for k in got)
    # config.json and the card say whose encoder it is
    assert second.last_model.config.mtnlp["init_from"]["encoder_of"] == "ner"
    assert "after multi-task training on sentiment, score, ner (the encoder of task ner)." \
        in (tmp_path / "ft" / "model" / "README.md").read_text()
    # a kept head of another task than the encoder's was trained on its own adapter: the run says so
    capsys.readouterr()
    fourth = train(load_recipe(target, ["model.init_encoder_of=sentiment", f"output_dir={tmp_path / 'ft4'}"]))
    assert "  head ner: kept (trained on ner's adapter; the encoder is sentiment's)\n" in capsys.readouterr().out
    assert fourth.last_model.config.mtnlp["init_from"]["encoder_of"] == "sentiment"
    # a task the source does not have: which task's adapter makes the encoder is the recipe's to say
    other = make_recipe(tasks={"entities": tasks["ner"]}, training={"steps": 1, "lr": 1e-12},
                        model={"encoder": tiny_encoder, "init_from": str(tmp_path / "run"), "max_length": 64},
                        output_dir=str(tmp_path / "ft2"), name="other.yaml")
    with pytest.raises(UserError, match=rf"^{other}:\d+: model.init_from: the source has per-task adapters "
                                        r"\(mtl.sharing: lora\) and none of its tasks \(sentiment, score, ner\) is a "
                                        r"task here: name the one whose encoder to start from in model.init_encoder_of$"):
        train(load_recipe(other))
    with pytest.raises(UserError, match=rf"^{other} \(command-line override\): model.init_encoder_of: the source "
                                        r"has no task 'nope' \(it has: sentiment, score, ner\)$"):
        train(load_recipe(other, ["model.init_encoder_of=nope"]))
    capsys.readouterr()
    third = train(load_recipe(other, ["model.init_encoder_of=sentiment"]))
    assert f"init_from {tmp_path / 'run' / 'model'}: the encoder of task sentiment (its adapter merged), and" \
        in capsys.readouterr().out
    merged = source.encoder_state("sentiment")
    got = third.last_model.encoder.state_dict()
    assert all(torch.allclose(merged[k], got[k], atol=1e-6) for k in got)
    with pytest.raises(UserError, match=r"model.init_encoder_of: applies to a transfer: set model.init_from too"):
        load_recipe(make_recipe(), ["model.init_encoder_of=ner"])


@pytest.mark.parametrize("mtl,key", [
    ({"sharing": "hard", "freeze_encoder": True}, "mtl.freeze_encoder"),
    ({"sharing": "task_layers", "task_layers": 3}, "mtl.task_layers"),
    ({"sharing": "lora", "lora_targets": ["no_such_module"]}, "mtl.lora_targets"),
    ({"weighting": "magic"}, "mtl.weighting"),
    ({"lora_dropout": 1.5}, "mtl.lora_dropout"),
    ({"gradient": "pcgrad", "sharing": "lora", "freeze_encoder": True}, "mtl.gradient"),
    ({"gradient": "cagrad", "sharing": "task_layers", "freeze_encoder": True}, "mtl.gradient"),
    ({"gradient": "magic"}, "mtl.gradient"),
    ({"gradient": "cagrad", "cagrad_c": 1.0}, "mtl.cagrad_c"),
    ({"gradient": "cagrad", "one task": True}, "mtl.gradient: cagrad needs at least two tasks"),
])
def test_bad_method_settings_are_one_line_errors(make_recipe, mtl, key, capsys):
    from mtnlp.cli import main  # `mtnlp train`, in this process: the error needs torch, so a new one costs seconds

    one_task = mtl.pop("one task", False)
    recipe = make_recipe(mtl=mtl, tasks=dict(list(tiny_tasks().items())[:1]) if one_task else None)
    assert main(["train", str(recipe)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error:") and key in lines[-1] and not any("Traceback" in line for line in lines)
    assert re.match(rf"error: {re.escape(str(recipe))}:\d+: ", lines[-1]), lines[-1]  # the file and the key's line


@pytest.mark.parametrize("sharing", [LORA, TOP], ids=["lora", "task_layers"])
def test_soft_shared_model_pushes_loads_and_exports_from_the_hub(tiny_encoder, tmp_path, sharing, hub_session):
    from test_hub import TASKS as HUB_TASKS
    from test_hub import TEXTS, close, mtnlp, predictions
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from mtnlp.hub import write_card

    model = MultiTaskModel.from_encoder(tiny_encoder, HUB_TASKS, sharing=sharing)
    _perturb(model, "lora_B" if sharing is LORA else "task_layers.ner.")
    model.config.mtnlp = {"base_model": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 32}
    folder = tmp_path / "run" / "model"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(folder)
    write_card(folder, tmp_path / "run")
    hub, session = hub_session()
    repo = "org/soft-lora" if sharing is LORA else "org/soft-task-layers"  # (one hub cache for both)
    assert mtnlp(hub, tmp_path, "push", str(folder), repo).returncode == 0
    remote = predictions(session("predict", repo, *TEXTS))
    assert close(remote, predictions(session("predict", str(folder), *TEXTS)))
    proc = session("export", repo, "--task", "ner", str(tmp_path / "ner"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner").eval()
    inputs = _inputs(tiny_encoder)
    assert torch.allclose(exported(**inputs).logits, model.eval()(**inputs, task="ner").logits, atol=1e-5)


def test_a_weighting_added_by_a_script_is_one_class_the_recipe_accepts(make_recipe, monkeypatch):
    """What a copied recipe script can do before load_recipe, without editing mtnlp."""
    from mtnlp import weighting
    from mtnlp.recipe import load_recipe

    class Halved(weighting.StaticWeighting):
        def __call__(self, task, loss):
            return 0.5 * self.static[task] * loss

    monkeypatch.setitem(weighting.WEIGHTINGS, "halved", Halved)
    recipe = load_recipe(make_recipe(), ["mtl.weighting=halved"])
    built = build_weighting(recipe.mtl.weighting, {"a": 2.0}, **recipe.mtl.model_dump())
    assert float(built("a", torch.tensor(3.0))) == 3.0 and built.parameters() == []
    with pytest.raises(ValueError, match=rf"^unknown weighting 'nope' \(expected one of: {', '.join(weighting.WEIGHTINGS)}\)$"):
        build_weighting("nope", {"a": 1.0})
    with pytest.raises(UserError, match=r"mtl.weighting: unknown value 'nope' \(expected one of: static, uncertainty, "):
        load_recipe(make_recipe(), ["mtl.weighting=nope"])


def stepped_with_one_log_variance_vector():
    """A head and an AdamW that stepped it twice with 3 log-variances in one (K,) vector (as before they were one
    parameter per task)."""
    head = torch.nn.Linear(2, 2)
    vector = torch.nn.Parameter(torch.zeros(3))
    before = torch.optim.AdamW([{"params": list(head.parameters())}, {"params": [vector], "lr": 0.1}])
    for _ in range(2):
        before.zero_grad()
        (head(torch.ones(1, 2)).sum() + (vector * torch.tensor([1.0, -2.0, 3.0])).sum()).backward()
        before.step()
    return head, before


def test_a_checkpoint_of_one_log_variance_vector_resumes_with_one_parameter_per_task():
    """Uncertainty weighting kept its log-variances in one (K,) parameter until they became one per task: the
    optimizer state of such a checkpoint is split, not refused as another run's."""
    from mtnlp.checkpoint import log_variances_per_task

    head, before = stepped_with_one_log_variance_vector()
    old = before.state_dict()
    w = build_weighting("uncertainty", {"a": 1.0, "b": 1.0, "c": 1.0})
    after = torch.optim.AdamW([{"params": list(head.parameters())}, {"params": w.parameters(), "lr": 0.1}])
    after.load_state_dict(log_variances_per_task(old, after))
    for j, p in enumerate(w.parameters()):
        state = after.state[p]
        assert state["exp_avg"] == old["state"][2]["exp_avg"][j] and state["exp_avg_sq"] == old["state"][2]["exp_avg_sq"][j]
        assert state["step"] == old["state"][2]["step"]
    assert after.state[head.weight]["exp_avg"].equal(old["state"][0]["exp_avg"])
    unchanged = after.state_dict()  # a checkpoint of one parameter per task: as it is
    assert log_variances_per_task(unchanged, after) is unchanged


@pytest.mark.parametrize("name", list(__import__("mtnlp.weighting", fromlist=["WEIGHTINGS"]).WEIGHTINGS))
def test_every_registered_weighting_resumes_from_its_json_state(name):
    """A checkpoint keeps a weighting as JSON: every registered one (one a script adds too, if it runs this)
    must continue with the weights it had."""
    from mtnlp.recipe import MTLSpec
    from mtnlp.weighting import build_weighting

    options = MTLSpec(dwa_window=2).model_dump()
    losses = {"a": [2.0, 1.5, 1.2, 1.0, 0.9, 0.8], "b": [1.0, 1.0, 0.9, 0.95, 0.9, 0.85]}
    first = build_weighting(name, {"a": 1.0, "b": 0.5}, **options)
    for step in range(6):
        for task, values in losses.items():
            loss = torch.tensor(values[step])
            first(task, loss)
            first.observe(task, loss)
        first.end_step(step + 1, lambda t: t)
    resumed = build_weighting(name, {"a": 1.0, "b": 0.5}, **options)
    resumed.load_state_dict_json(json.loads(json.dumps(first.state_dict_json())))
    for p, q in zip(first.parameters(), resumed.parameters()):  # learned weights: the model state (safetensors)
        q.data.copy_(p.data)
    assert resumed.weights() == pytest.approx(first.weights())
    assert float(resumed("a", torch.tensor(2.0))) == pytest.approx(float(first("a", torch.tensor(2.0))))
    assert all(math.isfinite(w) and w >= 0 for w in first.weights().values())


def test_a_gradient_method_added_by_a_script_is_one_class_the_recipe_accepts(make_recipe, monkeypatch):
    """What a copied recipe script can do before load_recipe, without editing mtnlp: combine every task's
    gradients its own way (here: their mean) and train with it."""
    from mtnlp import gradients

    class Mean(gradients.EveryTaskGradients):
        log_key = "mean_conflicts"

        def combine(self, grads, rng):
            return grads.mean(0), gradients.pair_conflicts((grads @ grads.T).double().cpu().numpy())

    monkeypatch.setitem(gradients.GRADIENT_METHODS, "mean", Mean)
    result = train(load_recipe(make_recipe(training={"steps": 2, "log_every": 1}), ["mtl.gradient=mean"]))
    logs = _logs(result.run_dir)
    assert all(set(r["loss"]) == set(tiny_tasks()) and 0 <= r["mean_conflicts"] <= 1 for r in logs)
    with pytest.raises(ValueError, match=rf"^unknown gradient method 'nope' \(expected one of: "
                                         rf"{', '.join(gradients.GRADIENT_METHODS)}\)$"):
        build_gradient_method("nope", 0)


@pytest.mark.parametrize("name", list(GRADIENT_METHODS))
def test_every_registered_gradient_method_resumes_from_its_json_state(name):
    """A checkpoint keeps a gradient method as JSON: every registered one must give the same log record after it."""
    from mtnlp.recipe import MTLSpec

    first = build_gradient_method(name, 7, **MTLSpec().model_dump())
    grads = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    if first.every_task:
        for step in range(3):
            update, conflicts = first.combine(grads * (step + 1), np.random.default_rng(step))
            assert update.shape == (8,) and torch.isfinite(update).all() and 0 <= conflicts <= 1
            first.conflicts.append(conflicts)
    resumed = build_gradient_method(name, 7, **MTLSpec().model_dump())
    resumed.load_state_dict_json(json.loads(json.dumps(first.state_dict_json())))
    assert resumed.log_record() == first.log_record()
    assert resumed.log_record() == {} == first.log_record()  # a record covers the updates since the last one


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "mgda"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_gradients_an_fp16_overflow_left_not_finite_are_combined_to_nothing_and_not_counted(name, bad):
    """The loss scaler skips such a step: the method must not fail on it (MGDA's solver raised on an inf Gram
    matrix, CAGrad's warned three times), and its conflicts are not the update's."""
    import warnings

    method = build_gradient_method(name, seed=0)
    grads = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    grads[1, 7] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        update, conflicts = method.combine(grads, np.random.default_rng(0))
    assert conflicts is None and not torch.isfinite(update).all()  # GradScaler sees it, and skips the step
    update, conflicts = method.combine(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)),
                                       np.random.default_rng(0))
    assert conflicts is not None and torch.isfinite(update).all()


def test_every_tasks_gradients_are_averaged_across_processes_in_their_own_buffer(monkeypatch):
    """PCGrad, CAGrad and MGDA average the K x P task gradients over the ranks in place: Accelerate's reduce copied
    the buffer first (1.75 GB for BERT-base and 4 tasks). Two ranks with other gradients: their mean, in place."""
    import types

    from mtnlp.gradients import reduce_mean_in_place

    other = torch.full((2, 3), 3.0)  # the other rank's
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor: tensor.add_(other))
    grads = torch.ones(2, 3)
    assert reduce_mean_in_place(types.SimpleNamespace(num_processes=2), grads) is grads
    assert torch.equal(grads, torch.full((2, 3), 2.0))
    alone = torch.ones(2, 3)
    assert torch.equal(reduce_mean_in_place(types.SimpleNamespace(num_processes=1), alone), torch.ones(2, 3))


def test_a_lora_task_named_like_an_adapter_key_exports(tiny_encoder):
    """`...query.lora_A.lora_x.weight` holds '.lora_' twice: export and transfer of every task raised IndexError."""
    inputs = _inputs(tiny_encoder)
    tasks = {"lora_x": TASKS["a"], "b": TASKS["b"]}
    model = MultiTaskModel.from_encoder(tiny_encoder, tasks, sharing={**LORA, "targets": ["query", "word_embeddings"]})
    _perturb(model, "lora_")
    model.eval()
    for task in tasks:
        assert torch.allclose(export_head(model, task)(**inputs).logits, model(**inputs, task=task).logits, atol=1e-5)


# ---------------------------------------------------------------- behaviour no other test pinned (mutation testing)

def test_uncertainty_and_dwa_multiply_by_loss_weight():
    for name in ("uncertainty", "dwa"):
        w = build_weighting(name, {"a": 2.0, "b": 0.5}, dwa_window=2)
        one = build_weighting(name, {"a": 1.0, "b": 1.0}, dwa_window=2)
        assert float(w("a", torch.tensor(3.0))) == pytest.approx(2.0 * float(one("a", torch.tensor(3.0))))
        assert w.weights()["b"] == pytest.approx(0.5 * one.weights()["b"])


def test_dwa_keeps_updating_after_the_second_window():
    w = build_weighting("dwa", {"a": 1.0, "b": 1.0}, dwa_temperature=1.0, dwa_window=1)
    losses = [(1.0, 1.0), (1.0, 1.0), (0.5, 1.0), (0.5, 0.25)]
    for step, (a, b) in enumerate(losses, 1):
        w.observe("a", torch.tensor(a)); w.observe("b", torch.tensor(b))
        w.end_step(step, lambda x: x)
    assert w.weights() == pytest.approx(dwa_weights({"a": 0.5, "b": 1.0}, {"a": 0.5, "b": 0.25}, 1.0))


def test_dwa_ratio_uses_mean_loss_when_a_task_is_drawn_unevenly():
    w = build_weighting("dwa", {"a": 1.0, "b": 1.0}, dwa_temperature=1.0, dwa_window=2)
    # window 1: a drawn 3 times (mean 1), b once (mean 1); window 2: a once (mean 1), b three times (mean 1)
    draws = [["a", "a"], ["a", "b"], ["a", "b"], ["b", "b"]]
    for step, tasks in enumerate(draws, 1):
        for t in tasks:
            w.observe(t, torch.tensor(1.0))
        w.end_step(step, lambda x: x)
    assert w.weights() == pytest.approx({"a": 1.0, "b": 1.0})  # equal mean losses: ratio 1 each


def test_pcgrad_projects_the_already_projected_gradient_with_three_tasks():
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]], dtype=torch.float64)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(3) for _ in range(3)]
        combined, _ = project_conflicting(g, np.random.default_rng(seed))
        expected = torch.zeros(3, dtype=torch.float64)
        for i in range(3):
            gi = g[i].clone()
            for j in orders[i]:
                if j != i and gi @ g[j] < 0:
                    gi = gi - (gi @ g[j]) / (g[j] @ g[j]) * g[j]
            expected += gi
        assert torch.allclose(combined, expected), seed


def test_pcgrad_order_is_random_per_update():
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]], dtype=torch.float64)
    results = {tuple(project_conflicting(g, np.random.default_rng(s))[0].tolist()) for s in range(20)}
    assert len(results) > 1


def _fake_run(task_grads, step=0):
    """(run, micro_step, the shared parameter) for a gradient method's accumulate: each micro-step adds its task's
    gradient to the one shared parameter."""
    shared = torch.nn.Parameter(torch.zeros(3))
    model = types.SimpleNamespace(shared_parameters=lambda: [shared], parameters=lambda: [shared])
    run = types.SimpleNamespace(unwrapped=model, accelerator=types.SimpleNamespace(num_processes=1),
                                tasks=list(task_grads), progress=types.SimpleNamespace(step=step),
                                recipe=types.SimpleNamespace(training=types.SimpleNamespace(grad_accum=1)))
    order = iter(task_grads)

    def micro_step(run, sync):
        task = next(order)
        g = torch.tensor(task_grads[task])
        shared.grad = g.clone() if shared.grad is None else shared.grad + g
        return task
    return run, micro_step, shared


def test_every_task_accumulate_keeps_each_tasks_gradient_apart():
    grads = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0]}  # orthogonal: PCGrad leaves them alone, update = sum
    run, micro_step, shared = _fake_run(grads)

    class Record(PCGrad):
        def combine(self, per_task, rng):
            self.seen = per_task.clone()
            return super().combine(per_task, rng)
    method = Record(seed=0)
    method.accumulate(run, micro_step)
    assert torch.equal(method.seen, torch.tensor([grads["a"], grads["b"]]))


def test_pcgrad_draws_a_new_order_each_update():
    g = [[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]]
    results = set()
    for step in range(10):
        run, micro_step, shared = _fake_run(dict(zip("abc", g)), step=step)
        PCGrad(seed=0).accumulate(run, micro_step)
        results.add(tuple(shared.grad.tolist()))
    assert len(results) > 1


def test_conflicts_logged_are_the_mean_since_the_last_record():
    method = PCGrad()
    method.conflicts = [0.25, 0.75]
    assert method.log_record() == {"pcgrad_conflicts": 0.5}


# ---------------------------------------------------------------- pinned by mutation testing (mutation9 survivors)

def test_every_task_methods_average_the_head_gradients_across_processes(monkeypatch):
    """PCGrad, CAGrad and MGDA skip DDP's sync in every backward pass: without their own mean of the head (and
    adapter) gradients, each rank stepped its heads on its own gradient and the ranks' heads drifted apart."""
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor: tensor.mul_(2))  # the other rank: same shared
    other = torch.tensor([3.0, 1.0])  # the other rank's head gradient
    for method in (PCGrad(), CAGrad(), MGDA()):
        run, micro_step, shared = _fake_run({"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0]})
        head = torch.nn.Parameter(torch.zeros(2))
        head.grad = torch.tensor([1.0, 5.0])  # this rank's, from its task's micro-batch
        run.unwrapped.parameters = lambda: [shared, head]
        ops = []
        run.accelerator = types.SimpleNamespace(num_processes=2,
                                                reduce=lambda tensor, op: ops.append(op) or (tensor + other) / 2)
        method.accumulate(run, micro_step)
        assert ops == ["mean"] and torch.equal(head.grad, torch.tensor([2.0, 3.0])), type(method).__name__


def test_an_update_whose_gradients_overflowed_is_left_out_of_the_logged_conflicts():
    """Under fp16, GradScaler skips an update whose gradients overflowed: it entered the logged conflict fraction
    as 0, diluting it with steps that never happened (one conflict, then one overflow, logged 0.5)."""
    for method in (PCGrad(), CAGrad(), MGDA()):
        run, micro_step, _ = _fake_run({"a": [1.0, 0.0, 0.0], "b": [-1.0, 1.0, 0.0]})  # a·b = -1: the pair conflicts
        method.accumulate(run, micro_step)
        run, micro_step, _ = _fake_run({"a": [math.inf, 0.0, 0.0], "b": [0.0, 1.0, 0.0]}, step=1)  # an fp16 overflow
        method.accumulate(run, micro_step)
        record = method.log_record()
        assert record.pop(method.log_key) == 1.0
        assert record == ({} if isinstance(method, PCGrad) else {"coefficients": pytest.approx(
            dict(zip("ab", type(method)().coefficients(np.array([[1.0, -1.0], [-1.0, 2.0]])))))})  # the first update's


def test_plain_accumulation_syncs_ddp_on_the_last_micro_batch_only():
    """Summed all-reduced the gradients after every micro-batch: the same update, at grad_accum times the
    communication of one all-reduce per update."""
    from mtnlp.gradients import Summed

    run = types.SimpleNamespace(recipe=types.SimpleNamespace(training=types.SimpleNamespace(grad_accum=3)))
    syncs = []
    assert Summed().accumulate(run, lambda run, sync: syncs.append(sync) or f"t{len(syncs)}") == "t3"
    assert syncs == [False, False, True]


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_log_variances_split_from_one_checkpointed_vector_each_count_their_own_steps():
    """Split from one checkpointed (K,) vector, the K log-variances shared one `step` tensor, which AdamW counts in
    place: every later step counted K times, and Adam's bias correction went wrong."""
    from mtnlp.checkpoint import log_variances_per_task

    head, before = stepped_with_one_log_variance_vector()
    w = build_weighting("uncertainty", {"a": 1.0, "b": 1.0, "c": 1.0})
    after = torch.optim.AdamW([{"params": list(head.parameters())}, {"params": w.parameters(), "lr": 0.1}])
    after.load_state_dict(log_variances_per_task(before.state_dict(), after))
    after.zero_grad()
    (head(torch.ones(1, 2)).sum() + sum(w.parameters())).backward()
    after.step()
    assert [float(after.state[p]["step"]) for p in w.parameters()] == [3.0, 3.0, 3.0]
