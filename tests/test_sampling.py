"""TaskSampler (which task trains at each step) and TaskBatches (which examples form each batch)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import set_up_run
from scipy.stats import chisquare

from mtnlp.batches import TaskBatches
from mtnlp.sampling import STRATEGIES, TaskSampler

SIZES = {"big": 6000, "mid": 1500, "small": 250, "tiny": 40}
N = np.array(list(SIZES.values()), dtype=float)
DRAWS = 20_000


def counts(sequence, names=tuple(SIZES)) -> np.ndarray:
    sequence = list(sequence)
    return np.array([sum(1 for t in sequence if t == n) for n in names], dtype=float)


# ---------------------------------------------------------------- TaskSampler: probabilities


def test_probability_formulas():
    assert TaskSampler(SIZES, "proportional").probabilities() == pytest.approx(N / N.sum())
    assert TaskSampler(SIZES, "uniform").probabilities() == pytest.approx(np.full(4, 0.25))
    for t in (1.0, 2.0, 3.0, 5.0):
        weights = N ** (1 / t)
        assert TaskSampler(SIZES, "temperature", temperature=t).probabilities() == pytest.approx(weights / weights.sum())
    # T=1 is proportional; a larger T flattens towards uniform
    assert TaskSampler(SIZES, "temperature", temperature=1.0).probabilities() == pytest.approx(N / N.sum())
    p2 = TaskSampler(SIZES, "temperature", temperature=2.0).probabilities()
    p5 = TaskSampler(SIZES, "temperature", temperature=5.0).probabilities()
    assert p5[-1] > p2[-1] > (N / N.sum())[-1]


def test_a_small_temperature_picks_the_largest_task():
    # n ** (1/T) overflows for T = 0.004: the probabilities were NaN and every draw the first task
    sampler = TaskSampler({"first": 45, "largest": 48, "one": 1}, "temperature", temperature=0.004)
    p = sampler.probabilities()
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0) and p[1] > 0.99
    assert [next(sampler) for _ in range(20)] == ["largest"] * 20


def test_annealed_probabilities_go_from_alpha_1_to_0_2():
    total = 1001
    s = TaskSampler(SIZES, "annealed", steps=total)

    def expected(alpha):
        return N**alpha / (N**alpha).sum()

    assert s.probabilities(0) == pytest.approx(expected(1.0))  # proportional at the start
    assert s.probabilities(500) == pytest.approx(expected(0.6))  # halfway
    assert s.probabilities(total - 1) == pytest.approx(expected(0.2))  # the last draw
    assert s.probabilities(5 * total) == pytest.approx(expected(0.2))  # and stays there
    for draw in (1, 123, 777):
        assert s.probabilities(draw) == pytest.approx(expected(1 - 0.8 * draw / (total - 1)))
    smallest = [s.probabilities(d)[-1] for d in range(0, total, 100)]
    assert smallest == sorted(smallest) and smallest[0] < smallest[-1]
    # probabilities() without an argument follows the draw counter
    for _ in range(500):
        next(s)
    assert s.probabilities() == pytest.approx(expected(0.6))


def test_annealed_progress_counts_optimizer_steps_not_draws():
    """With grad_accum 2 a step draws twice: both draws of a step share its alpha, and the last step ends at 0.2."""
    steps = 11
    s = TaskSampler(SIZES, "annealed", steps=steps, per_step=2)

    def expected(alpha):
        return N**alpha / (N**alpha).sum()

    for draw in range(2 * steps):
        assert s.probabilities(draw) == pytest.approx(expected(1 - 0.8 * (draw // 2) / (steps - 1)))
    assert s.probabilities(2 * steps - 1) == pytest.approx(expected(0.2))


@pytest.mark.parametrize("state", [{"draw": 4, "per_step": 1},  # grad_accum 1 -> 2
                                   {"draw": 12, "per_step": 3},  # pcgrad over 3 tasks -> gradient sum
                                   {"draw": 8, "per_step": 2}])  # the same: the draws are kept
def test_resume_with_other_draws_per_step_continues_at_the_same_step(state):
    """A checkpoint after step 4 of 8, resumed with 2 draws per step: the schedule is halfway through, and
    the draws are those of a run with 2 draws per step from its start (not a jump to the schedule's end)."""
    resumed = TaskSampler(SIZES, "annealed", seed=3, steps=8, per_step=2)
    resumed.load_state_dict(state)
    assert resumed.draw == 8
    straight = TaskSampler(SIZES, "annealed", seed=3, steps=8, per_step=2)
    drawn = list(itertools.islice(straight, 16))
    assert resumed.probabilities() == pytest.approx(straight.probabilities(8))
    assert list(itertools.islice(resumed, 8)) == drawn[8:]


def test_pcgrad_checkpoint_resumed_by_the_task_sampler():
    from mtnlp.sampling import EveryTask

    order = EveryTask(["big", "mid", "small"], repeat=1)
    list(itertools.islice(order, 12))  # 4 updates
    sampler = TaskSampler({"big": 6000, "mid": 1500, "small": 250}, "annealed", steps=8)
    sampler.load_state_dict(order.state_dict())
    assert sampler.draw == 4


def test_benchmark_sampler_counts_are_the_task_samplers():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "benchlib.py"
    spec = importlib.util.spec_from_file_location("bench_benchlib", path)
    benchlib = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchlib)
    got = benchlib.sampler_counts(SIZES, 300, seed=4, temperature=3.0)
    drawn = counts(itertools.islice(TaskSampler(SIZES, "temperature", seed=4, steps=300, temperature=3.0), 300))
    assert list(got.values()) == drawn.tolist() and sum(got.values()) == 300


@pytest.mark.parametrize("strategy", ["proportional", "uniform", "temperature"])
def test_empirical_frequencies_match_probabilities(strategy):
    s = TaskSampler(SIZES, strategy, seed=3, temperature=2.0)
    p = s.probabilities()
    observed = counts(itertools.islice(s, DRAWS))
    assert observed.sum() == DRAWS
    assert chisquare(observed, p * DRAWS).pvalue > 0.001
    # and the test has power: the observed frequencies do not fit a different strategy
    other = TaskSampler(SIZES, "uniform" if strategy != "uniform" else "proportional").probabilities()
    assert chisquare(observed, other * DRAWS).pvalue < 1e-12


def test_empirical_frequencies_annealed():
    s = TaskSampler(SIZES, "annealed", seed=5, steps=DRAWS)
    expected = sum(s.probabilities(d) for d in range(DRAWS))
    observed = counts(itertools.islice(s, DRAWS))
    assert chisquare(observed, expected * DRAWS / expected.sum()).pvalue > 0.001
    # early draws are closer to proportional than late ones
    s2 = TaskSampler(SIZES, "annealed", seed=5, steps=DRAWS)
    seq = list(itertools.islice(s2, DRAWS))
    assert seq[: DRAWS // 4].count("big") > seq[-DRAWS // 4:].count("big") * 1.3


def test_round_robin_cycles_exactly():
    s = TaskSampler(SIZES, "round_robin", seed=9)
    seq = list(itertools.islice(s, 4 * 25 + 2))
    assert seq == (list(SIZES) * 26)[:102]
    assert s.probabilities() == pytest.approx(np.full(4, 0.25))


def test_round_robin_turns_per_micro_batch_under_grad_accum():
    """README: each micro-batch is one task's: with grad_accum 2 the tasks alternate inside an update (not one
    task per update), and a resume goes on from the checkpoint's step."""
    s = TaskSampler(SIZES, "round_robin", per_step=2)
    assert list(itertools.islice(s, 10)) == (list(SIZES) * 3)[:10]
    resumed = TaskSampler(SIZES, "round_robin", per_step=2)
    resumed.load_state_dict({"draw": 6, "per_step": 2})
    assert list(itertools.islice(resumed, 4)) == (list(SIZES) * 3)[6:10]


# ---------------------------------------------------------------- TaskSampler: determinism and resume


@pytest.mark.parametrize("strategy", ["proportional", "uniform", "temperature", "annealed"])
def test_same_seed_same_sequence_different_seed_different(strategy):
    def run(seed):
        return list(itertools.islice(TaskSampler(SIZES, strategy, seed=seed, steps=500), 500))

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_the_task_sequence_of_a_seed_is_pinned():
    """A checkpoint's sampler is only a draw counter: after an upgrade (mtnlp's, numpy's), a resumed run continues
    with the tasks the seed gave before only if the seed's stream is the same. Recorded at mtnlp 2026-12-07."""
    sampler = TaskSampler({"a": 10, "b": 20, "c": 5}, "temperature", seed=3, steps=20)
    assert list(itertools.islice(sampler, 12)) == ["a", "a", "a", "a", "c", "a", "b", "b", "b", "c", "b", "b"]


def test_a_draw_above_the_last_cumulative_probability_takes_the_last_task(monkeypatch):
    """Normalised weights can sum to just under 1 (seven equal ones give 0.9999999999999998): a draw above that
    takes the last task, not an IndexError."""
    import mtnlp.sampling

    sizes = dict.fromkeys("abcdefg", 1)
    assert np.cumsum(TaskSampler(sizes, "uniform").probabilities())[-1] < np.nextafter(1.0, 0.0)
    top = type("TopDraw", (), {"random": lambda self: np.nextafter(1.0, 0.0)})()
    monkeypatch.setattr(mtnlp.sampling.np.random, "default_rng", lambda seed: top)
    assert next(TaskSampler(sizes, "uniform")) == "g"


@pytest.mark.parametrize("strategy", ["proportional", "temperature", "annealed", "round_robin"])
def test_sampler_state_dict_resume(strategy):
    full = TaskSampler(SIZES, strategy, seed=7, steps=400)
    reference = list(itertools.islice(full, 400))

    first = TaskSampler(SIZES, strategy, seed=7, steps=400)
    head = list(itertools.islice(first, 137))
    state = first.state_dict()
    assert state == {"draw": 137, "per_step": 1}

    resumed = TaskSampler(SIZES, strategy, seed=7, steps=400)
    resumed.load_state_dict(state)
    assert head + list(itertools.islice(resumed, 263)) == reference


def test_unknown_strategy_is_refused_when_the_sampler_is_built():
    with pytest.raises(ValueError, match=r"^unknown sampling strategy 'nope' \(expected one of: proportional, uniform, "):
        TaskSampler(SIZES, "nope")
    # from Python, what a recipe refuses: no tasks, a task of no examples, a temperature of 0 (not numpy's errors)
    for sizes in ({}, {"a": 0, "b": 3}):
        with pytest.raises(ValueError, match=r"^sizes: expected each task's number of training examples"):
            TaskSampler(sizes)
    with pytest.raises(ValueError, match=r"^temperature: expected a number above 0, got 0$"):
        TaskSampler(SIZES, "temperature", temperature=0)


def test_a_strategy_added_by_a_script_is_one_function_and_takes_its_recipe_options(make_recipe, monkeypatch):
    """What a copied recipe script can do before load_recipe: no edit of mtnlp (an option of its own is a
    SamplingSpec field: here it reuses `temperature`)."""
    from mtnlp import sampling
    from mtnlp.recipe import load_recipe
    from mtnlp.train import training_batches

    def largest_first(sizes, progress, temperature=2.0, **options):  # the largest task, then all alike
        return sizes ** (temperature * (1 - progress))

    monkeypatch.setitem(sampling.STRATEGIES, "largest_first", largest_first)
    recipe = load_recipe(make_recipe(), ["sampling.strategy=largest_first", "sampling.temperature=3"])
    assert recipe.sampling.strategy == "largest_first"
    sampler = TaskSampler(SIZES, "largest_first", steps=11, temperature=3.0)
    assert sampler.probabilities(0) == pytest.approx(N**3 / (N**3).sum())
    assert sampler.probabilities(10) == pytest.approx(np.full(4, 0.25))
    from types import SimpleNamespace

    from datasets import Dataset

    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 5, "length": [3] * 5})
    tasks = {n: SimpleNamespace(stream=None, train_size=lambda: 5, splits={"train": rows}) for n in recipe.tasks}
    built, _, _ = training_batches(recipe, tasks, SimpleNamespace(process_index=0, num_processes=1))
    assert built.strategy == "largest_first" and built.options == {"temperature": 3.0}  # the recipe's options reach it


# ---------------------------------------------------------------- TaskBatches


def lengths(n=1003, seed=0) -> list[int]:
    return np.random.default_rng(seed).integers(5, 120, size=n).tolist()


def epoch(tb: TaskBatches) -> list[list[int]]:
    """The rest of the current epoch of `tb` (which must be at an epoch start)."""
    start, out = tb.epoch, []
    while True:
        batch = next(tb)
        if tb.epoch != start:
            return out, batch
        out.append(batch)


@pytest.mark.parametrize("group", [False, True])
def test_every_index_once_per_epoch(group):
    lens = lengths()
    tb = TaskBatches(lens, batch_size=16, seed=1, group_by_length=group)
    e0, first_of_e1 = epoch(tb)
    flat = [i for b in e0 for i in b]
    assert sorted(flat) == list(range(len(lens)))
    assert len(e0) == -(-len(lens) // 16)
    assert sum(len(b) < 16 for b in e0) == 1  # one short batch: 1003 = 62*16 + 11
    e1, _ = epoch(tb)
    e1 = [first_of_e1] + e1
    assert sorted(i for b in e1 for i in b) == list(range(len(lens)))
    assert e0 != e1  # a new order each epoch
    assert [i for b in e0 for i in b] != [i for b in e1 for i in b]


def test_same_seed_same_batches():
    lens = lengths()
    a = list(itertools.islice(TaskBatches(lens, 16, seed=4, group_by_length=True), 150))
    b = list(itertools.islice(TaskBatches(lens, 16, seed=4, group_by_length=True), 150))
    c = list(itertools.islice(TaskBatches(lens, 16, seed=5, group_by_length=True), 150))
    assert a == b and a != c


def padding(batches, lens) -> int:
    return sum(max(lens[i] for i in b) * len(b) - sum(lens[i] for i in b) for b in batches)


def test_group_by_length_reduces_padding():
    lens = lengths()
    plain, _ = epoch(TaskBatches(lens, 16, seed=2, group_by_length=False))
    grouped, _ = epoch(TaskBatches(lens, 16, seed=2, group_by_length=True))
    assert sorted(i for b in grouped for i in b) == list(range(len(lens)))
    assert padding(grouped, lens) * 10 < padding(plain, lens)
    # grouped batches are not simply in length order: the batch order is shuffled
    maxima = [max(lens[i] for i in b) for b in grouped]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


@pytest.mark.parametrize("group", [False, True])
def test_two_ranks_get_disjoint_batches_of_equal_count(group):
    lens = lengths()
    ranks = [TaskBatches(lens, 16, seed=3, group_by_length=group, rank=r, world_size=2) for r in (0, 1)]
    epochs = [epoch(tb)[0] for tb in ranks]
    assert len(epochs[0]) == len(epochs[1]) > 0
    seen = [{i for b in e for i in b} for e in epochs]
    assert not seen[0] & seen[1]
    # together they cover the epoch, less at most the one batch dropped to keep the counts equal
    single, _ = epoch(TaskBatches(lens, 16, seed=3, group_by_length=group))
    assert len(epochs[0]) + len(epochs[1]) == len(single) - len(single) % 2
    assert len(seen[0] | seen[1]) >= len(lens) - 16
    # each rank takes every second batch of the single-process order
    assert epochs[0] == single[0: 2 * len(epochs[0]): 2] and epochs[1] == single[1: 2 * len(epochs[1]): 2]
    # a following epoch keeps the equal count
    assert len(epoch(ranks[0])[0]) == len(epoch(ranks[1])[0])


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("stop", [5, 62, 63, 64, 150])  # mid-epoch, at the epoch boundary, into epoch 2/3
def test_batches_state_dict_resume(group, stop):
    lens = lengths()
    reference = list(itertools.islice(TaskBatches(lens, 16, seed=8, group_by_length=group), stop + 40))
    tb = TaskBatches(lens, 16, seed=8, group_by_length=group)
    head = list(itertools.islice(tb, stop))
    resumed = TaskBatches(lens, 16, seed=8, group_by_length=group)
    resumed.load_state_dict(tb.state_dict())
    assert head + list(itertools.islice(resumed, 40)) == reference


def test_batches_resume_two_ranks():
    lens = lengths()
    for rank in (0, 1):
        reference = list(itertools.islice(TaskBatches(lens, 8, 6, True, rank, 2), 100))
        tb = TaskBatches(lens, 8, 6, True, rank, 2)
        head = list(itertools.islice(tb, 70))
        resumed = TaskBatches(lens, 8, 6, True, rank, 2)
        resumed.load_state_dict(tb.state_dict())
        assert head + list(itertools.islice(resumed, 30)) == reference


def test_an_epoch_of_fewer_batches_than_ranks_resumes_every_rank_from_rank_0s_state():
    # 3 examples, batches of 2: 2 batches for 3 processes. A checkpoint keeps rank 0's (epoch, position); rank 2
    # used to move on to the next epoch alone, and so came back one epoch behind its uninterrupted self
    lens = [5, 6, 7]
    for stop in (1, 2, 5):
        for rank in range(3):
            reference = list(itertools.islice(TaskBatches(lens, 2, 1, False, rank, 3), stop + 6))
            tb, rank0 = TaskBatches(lens, 2, 1, False, rank, 3), TaskBatches(lens, 2, 1, False, 0, 3)
            head = list(itertools.islice(tb, stop))
            list(itertools.islice(rank0, stop))
            assert tb.state_dict() == rank0.state_dict()
            resumed = TaskBatches(lens, 2, 1, False, rank, 3)
            resumed.load_state_dict(rank0.state_dict())
            assert head + list(itertools.islice(resumed, 6)) == reference, (stop, rank)
    epoch = [next(b) for b in (TaskBatches(lens, 2, 1, False, r, 3) for r in range(3))]
    assert sorted(map(tuple, epoch[:2])) != [tuple(epoch[2])] * 2 and epoch[2] == epoch[0]  # rank 2 repeats batch 0


@pytest.mark.parametrize("group", [False, True])
def test_token_budget_batches_stay_under_budget_and_cover_every_index(group):
    lengths = np.random.default_rng(3).integers(3, 120, size=997)
    batches = TaskBatches(lengths.tolist(), 32, seed=5, group_by_length=group, max_tokens=512)
    epoch = batches.epoch_batches(0)
    assert sorted(i for b in epoch for i in b) == list(range(997))
    assert all(len(b) * lengths[b].max() <= 512 for b in epoch)
    # greedy: adding the next example of the epoch order to a batch would have broken the budget
    order = np.concatenate(epoch) if not group else None
    if order is not None:
        for b, nxt in zip(epoch, epoch[1:]):
            assert (len(b) + 1) * max(lengths[b].max(), lengths[nxt[0]]) > 512
    if group:  # similar lengths: many more rows per batch than without grouping
        ungrouped = TaskBatches(lengths.tolist(), 32, seed=5, max_tokens=512).epoch_batches(0)
        assert len(epoch) < 0.8 * len(ungrouped)
        # sorted within windows of 50 batches (of the mean rows a budget holds), not of 50 rows: 12 % padding
        padded = sum(len(b) * lengths[b].max() for b in epoch)
        assert 1 - lengths.sum() / padded < 0.05


def test_token_budget_smaller_than_max_length_is_a_recipe_error(make_recipe):
    from mtnlp.errors import UserError
    from mtnlp.recipe import load_recipe

    with pytest.raises(UserError, match="training.batch_tokens: must be at least model.max_length"):
        load_recipe(make_recipe(training={"batch_tokens": 32}))


def test_token_budget_trains(make_recipe, tmp_path):
    import json

    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    train(load_recipe(make_recipe(training={"steps": 3, "batch_tokens": 256})))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_step"] == 3


def test_every_task_gives_repeat_batches_of_each_task_in_turn_and_resumes():
    from mtnlp.sampling import EveryTask

    order = EveryTask(["a", "b", "c"], repeat=2)
    assert list(itertools.islice(order, 6)) == ["a", "a", "b", "b", "c", "c"]  # one update's micro-batches
    resumed = EveryTask(["a", "b", "c"], repeat=2)
    resumed.load_state_dict(order.state_dict())  # a checkpoint comes between updates
    assert list(itertools.islice(resumed, 4)) == list(itertools.islice(order, 4)) == ["a", "a", "b", "b"]
    # a state from within a cycle (another task order before: mtl.gradient sum, another grad_accum)
    # starts the next update's cycle
    resumed.load_state_dict({"draw": 7})
    assert list(itertools.islice(resumed, 2)) == ["a", "a"] and resumed.draw == 14


@pytest.mark.parametrize("before,after", [(1, 2), (2, 1), (2, 3), (3, 2)])
def test_resumed_with_another_number_of_processes_the_epoch_goes_on_where_it_was(before, after):
    """Each batch of the epoch is taken once: the state counts rounds of the writer's process count (with 1 -> 2
    the position was read as rounds of 2, skipping a part of the epoch; 2 -> 1 took a part again). A round the
    new count cuts in two is taken again, not skipped."""
    lens = lengths()
    order, _ = epoch(TaskBatches(lens, 16, seed=4))  # the single-process order every count takes from
    writers = [TaskBatches(lens, 16, seed=4, rank=r, world_size=before) for r in range(before)]
    taken = [batch for _ in range(7) for w in writers for batch in [next(w)]]
    readers = [TaskBatches(lens, 16, seed=4, rank=r, world_size=after) for r in range(after)]
    for reader in readers:
        reader.load_state_dict(writers[0].state_dict(), written_by=before)
    rest = []
    while readers[0].epoch == 0:
        rest += [batch for reader in readers for batch in [next(reader)]]
    rest = rest[:-after]  # the first round of the next epoch
    again = 7 * before - 7 * before // after * after  # batches of a round cut in two
    assert taken + rest[again:] == order[:len(taken) + len(rest) - again]
    assert rest[:again] == taken[len(taken) - again:]
    assert len(taken) + len(rest) - again >= len(order) - after  # to the epoch's end (less the uneven last round)


CUTS = {"batch_size": (16, {"batch_size": 32}), "smaller": (16, {"batch_size": 7}),
        "grouping": (16, {"group_by_length": True}), "tokens": (16, {"max_tokens": 900}), "seed": (16, {"seed": 9})}


@pytest.mark.parametrize("change", CUTS)
@pytest.mark.parametrize("world", [1, 2])
def test_resumed_with_another_cut_the_epoch_goes_on_with_the_examples_it_has_not_had(change, world):
    """Batch size 16 -> 32 after 10 batches of 1,003 examples used to skip 160 examples of the epoch (it went on at
    batch 10 of the new cut); 16 -> 7 took 90 again. Now every example comes once per epoch, the next epochs are
    the new cut's own, and resuming from within the rest of the epoch goes on exactly."""
    lens = lengths()
    size, new = CUTS[change]
    settings = {"batch_size": size, "seed": 4, **new}
    writers = [TaskBatches(lens, 16, seed=4, rank=r, world_size=world) for r in range(world)]
    head = [next(w) for _ in range(5) for w in writers]  # 5 rounds
    readers = [TaskBatches(lens, rank=r, world_size=world, **settings) for r in range(world)]
    for reader in readers:
        reader.load_state_dict(writers[0].state_dict(), written_by=world)
    rest, stop = [], None
    while readers[0].epoch == 0:
        if len(rest) == 4 * world:  # a resume from within the rest of the epoch, with the same settings
            stop = [TaskBatches(lens, rank=r, world_size=world, **settings) for r in range(world)]
            for copy in stop:
                copy.load_state_dict(json.loads(json.dumps(readers[0].state_dict())), written_by=world)
            taken = [next(r) for _ in range(3) for r in readers]
            assert [next(c) for _ in range(3) for c in stop] == taken
            rest += taken
        rest += [next(reader) for reader in readers]
    rest, next_epoch = rest[:-world], rest[-world:]
    epoch0 = [i for batch in head + rest for i in batch]
    assert len(epoch0) == len(set(epoch0)) > len(lens) - 2 * 40  # none twice (a last uneven round is left out)
    if world == 1:
        assert sorted(epoch0) == list(range(len(lens)))  # none skipped
    fresh = [TaskBatches(lens, rank=r, world_size=world, **settings) for r in range(world)]
    for b in fresh:
        b.epoch, b.position, b._batches = 1, 0, b.epoch_batches(1)
    assert next_epoch == [next(b) for b in fresh]  # epoch 1 is the new cut's, as in a run that began with it


def test_a_second_change_in_one_epoch_keeps_what_both_earlier_cuts_took():
    lens = lengths()
    first = TaskBatches(lens, 16, seed=4)
    head = list(itertools.islice(first, 6))
    second = TaskBatches(lens, 32, seed=4, group_by_length=True)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as a checkpoint keeps it
    middle = list(itertools.islice(second, 5))
    third = TaskBatches(lens, 10, seed=4, max_tokens=700)
    third.load_state_dict(json.loads(json.dumps(second.state_dict())))
    rest, _ = epoch(third)
    seen = [i for batch in head + middle + rest for i in batch]
    assert sorted(seen) == list(range(len(lens)))


def test_a_state_of_another_training_set_size_starts_its_epoch_again():
    first = TaskBatches(lengths(), 16, seed=4)
    list(itertools.islice(first, 150))  # into epoch 2
    grown = TaskBatches(lengths(1100), 16, seed=4)
    grown.load_state_dict(first.state_dict())
    assert (grown.epoch, grown.position, grown.before) == (2, 0, None)
    rest, _ = epoch(grown)
    assert sorted(i for batch in rest for i in batch) == list(range(1100))


@pytest.mark.parametrize("strategy", [name for name, weigh in STRATEGIES.items() if weigh is not None])
def test_every_registered_strategy_gives_a_probability_to_every_task(strategy):
    """Over every registered strategy (one a script adds too, if it runs this), from the first step to the last."""
    sizes = {"tiny": 1, "mid": 300, "large": 100_000}
    sampler = TaskSampler(sizes, strategy, steps=100)
    for draw in (0, 50, 99, 200):
        p = sampler.probabilities(draw)
        assert p.shape == (3,) and np.isfinite(p).all() and (p >= 0).all() and p.sum() == pytest.approx(1.0)
    state = sampler.state_dict()
    resumed = TaskSampler(sizes, strategy, steps=100)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert [next(resumed) for _ in range(20)] == [next(sampler) for _ in range(20)]


@pytest.mark.parametrize("weights, why", [(lambda s, p, **o: np.zeros_like(s), "all 0"),
                                          (lambda s, p, **o: s - 500, "negative"),
                                          (lambda s, p, **o: s * np.nan, "nan"),
                                          (lambda s, p, **o: s[:1], "one task's")])
def test_a_strategy_whose_weights_draw_nothing_sensible_is_refused(monkeypatch, weights, why):
    """Zeros drew the first task for the whole run, negative weights the last (with no word)."""
    from mtnlp import sampling
    from mtnlp.errors import UserError

    monkeypatch.setitem(sampling.STRATEGIES, "broken", weights)
    sampler = TaskSampler({"a": 100, "b": 400, "c": 1600}, "broken", steps=10)
    with pytest.raises(UserError, match=r"^sampling.strategy broken: gave weights .* for tasks \['a', 'b', 'c'\] at "
                                        r"draw 0; expected one finite weight >= 0 per task, not all 0$"):
        next(sampler)


def test_batch_size_is_no_part_of_a_token_budgets_cut():
    """With batch_tokens, batch_size makes no batch: a resume that changed only it took the rest-of-epoch path, whose
    batches (grouped by length) differ from an uninterrupted run's."""
    lens = lengths()
    reference = list(itertools.islice(TaskBatches(lens, 16, 3, True, max_tokens=900), 60))
    first = TaskBatches(lens, 16, 3, True, max_tokens=900)
    head = list(itertools.islice(first, 20))
    resumed = TaskBatches(lens, 64, 3, True, max_tokens=900)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.before is None and head + list(itertools.islice(resumed, 40)) == reference


def test_a_token_budget_checkpoint_written_with_its_batch_size_resumes_exactly():
    """A cut written before batch_size left a token budget's cut (it held 16) read as another cut: 18 of 60 batches
    differed from an uninterrupted run."""
    lens = lengths()
    reference = list(itertools.islice(TaskBatches(lens, 16, 3, True, max_tokens=900), 60))
    first = TaskBatches(lens, 16, 3, True, max_tokens=900)
    head = list(itertools.islice(first, 20))
    state = {**first.state_dict(), "cut": {**first.cut, "batch_size": 16}}
    resumed = TaskBatches(lens, 16, 3, True, max_tokens=900)
    resumed.load_state_dict(state)
    assert resumed.before is None and head + list(itertools.islice(resumed, 40)) == reference


# ---------------------------------------------------------------- behaviour no other test pinned (mutation testing)

def test_group_by_length_batches_come_in_a_shuffled_order():
    from mtnlp.batches import TaskBatches

    lengths = np.random.default_rng(0).integers(5, 200, size=2000).tolist()
    b = TaskBatches(lengths, batch_size=4, seed=0, group_by_length=True)
    longest = [max(lengths[i] for i in next(b)) for _ in range(50)]
    assert longest != sorted(longest, reverse=True)


def test_a_plan_resumed_on_fewer_processes_scales_each_tasks_position():
    from mtnlp.batches import TaskBatches
    from mtnlp.loader import BatchPlan
    from mtnlp.sampling import TaskSampler

    batches = {"a": TaskBatches([10] * 100, batch_size=2, seed=0)}
    plan = BatchPlan(TaskSampler({"a": 100}, "uniform"), batches)
    cut = batches["a"].state_dict()["cut"]
    plan.load_state_dict({"sampler": {"draw": 3, "per_step": 1}, "batches": {"a": {"epoch": 0, "position": 3, "cut": cut}},
                          "ranks": 2})
    assert batches["a"].position == 6  # 3 rounds of 2 processes' batches


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_a_batch_of_exactly_max_tokens_is_one_batch():
    from mtnlp.batches import token_batches

    # README: a batch is filled until its padded size would exceed max_tokens
    assert [b.tolist() for b in token_batches(np.arange(3), np.array([4, 4, 4]), 8)] == [[0, 1], [2]]


def test_a_runs_annealed_sampler_anneals_over_the_runs_optimizer_steps(make_recipe):
    """setup gives the sampler training.steps and the draws per step: alpha goes from 1 to 0.2 over the whole run
    (with steps=1 it would sit at 0.2 from the second step on)."""
    with set_up_run(make_recipe(training={"steps": 10, "grad_accum": 2}, sampling={"strategy": "annealed"})) as run:
        sampler = run.plan.tasks
        sizes = sampler.sizes.astype(float)
        at = lambda alpha: sizes ** alpha / (sizes ** alpha).sum()
        assert sampler.probabilities(0) == pytest.approx(at(1.0))
        assert sampler.probabilities(2 * 5) == pytest.approx(at(1 - 0.8 * 5 / 9))  # step 6 of 10
        assert sampler.probabilities(2 * 10 - 1) == pytest.approx(at(0.2))
