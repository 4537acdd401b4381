"""Property-based tests (hypothesis) of mtnlp's central pure functions: invariants over generated inputs.

- extractive QA: an answer's training target decodes (as predict decodes) back to the answer; an answer short
  enough is in some window; the windows cover every context token;
- tagging: one prediction per input word, gold labels round-trip through alignment and per-word decoding;
- batching: an epoch's batches hold every example once, within the token budget, the same for a seed; a resume
  (also with another cut) goes on exactly;
- task sampling: the strategies' probabilities are their definitions, the draws follow them;
- loss weighting (DWA, uncertainty) and gradient methods (PCGrad, MGDA, CAGrad): their papers' invariants;
- metrics: the bundled modules against sklearn / scipy / seqeval.

Deterministic (derandomize) and fast: every test has a small max_examples.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import minilm_path, train_byte_level_bpe

# MTNLP_PROPS_SCALE=25: 25 times the examples, random (not derandomized): a longer search for a bug, by hand
SCALE = int(os.environ.get("MTNLP_PROPS_SCALE", "1"))
PROPS = settings(max_examples=40 * SCALE, deadline=None, derandomize=SCALE == 1, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large, HealthCheck.filter_too_much])
FEW = settings(PROPS, max_examples=15 * SCALE)


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


CORPUS = ["The founder was José Nũñez of Bangkok.", "สวัสดีครับ", "東京は日本の首都です。", "I ❤️ emoji 🎉 and flags 🇫🇷!",
          "Ann Lee flew to Paris, then (briefly) to Zürich; 1620-1631.", "naïve café résumé"] * 20


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A byte-level BPE tokenizer (RoBERTa's kind) trained here: words carry their leading space."""
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast.from_pretrained(train_byte_level_bpe(tmp_path_factory.mktemp("bpe-props"), CORPUS, 400))


@pytest.fixture(scope="module", params=["minilm", "bpe"])
def any_tokenizer(request):
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- text

PIECES = ["the", "Town", "founded", "Osric", "Fenn", "1620", "José", "Nũñez", "naïve", "Zürich", "東京", "日本の首都",
          "สวัสดี", "❤️", "🎉", "🇫🇷", "e\u0301", "(briefly)", "Paris,", "end.", "a-b", "x", "I", "Ωμέγα", "Привет",
          "don't", "3.14", "—", "!!", "#tag", "ﬁ"]
word = st.one_of(st.sampled_from(PIECES),
                 st.text(st.characters(categories=("L", "N", "P", "S"), exclude_characters="\u2028\u2029"),
                         min_size=1, max_size=8).filter(lambda w: not any(c.isspace() for c in w)))
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\t"])
EXOTIC = ["👨\u200d👩\u200d👧", "👍🏽", "1\ufe0f\u20e3", "है", "।", "Bronte\u0308", "\u200bword", "soft\u00adhyphen", "مرحبا",
          "\u200eleft", "한국어", "\u1100\u1161\u11a8", "Nu\u0303n\u0303ez", "\ufeffbom", "x\u0301\u0302", "(Zürich)",
          "«quoted»", "e.g.", "U.S.A.", "ＡＢＣ", "½", "x²", "🇯🇵🇫🇷", "\u200d", "a\u200db"]
hard_word = st.one_of(word, st.sampled_from(EXOTIC),
                      st.text(st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc", "Co", "Cn", "Cf")), min_size=1, max_size=4))
HARD_SEPARATORS = st.sampled_from([" ", " ", "\u00a0", "\u3000", "\r\n", "\u2009", " \u200b "])


@st.composite
def qa_example(draw, max_words: int = 60, words_=word, separators=SEPARATORS):
    """A context of words and separators, and an answer of whole words inside it: (context, start, text)."""
    words = draw(st.lists(words_, min_size=1, max_size=max_words))
    seps = draw(st.lists(separators, min_size=len(words), max_size=len(words)))
    starts, context = [], ""
    for w, sep in zip(words, seps):
        starts.append(len(context))
        context += w + sep
    first = draw(st.integers(0, len(words) - 1))
    last = draw(st.integers(first, min(len(words) - 1, first + 4)))
    text = context[starts[first]:starts[last] + len(words[last])]
    from mtnlp.tasks.extractive_qa import shown_part

    assume(shown_part(text) is not None)
    return context, starts[first], text


def qa_rows(tokenizer, context, start, text, max_length, stride):
    from mtnlp.tasks.extractive_qa import ExtractiveQA, shown_part

    a, b = shown_part(text)  # as reading the example strips it
    batch = {"id": ["q"], "question": ["Who founded the town?"], "context": [context], "answers": [[text[a:b]]],
             "answer_starts": [[start + a]]}
    return ExtractiveQA().encode(batch, tokenizer, max_length, None, {"doc_stride": stride}), text[a:b]


def qa_settings():
    return st.tuples(st.sampled_from([32, 40, 64, 128]), st.integers(1, 40))


@PROPS
@given(example=st.one_of(qa_example(), qa_example(words_=hard_word, separators=HARD_SEPARATORS)), sizes=qa_settings())
def test_qa_target_decodes_back_to_the_answer(any_tokenizer, example, sizes):
    """Every window that targets the answer gives back its text when predict decodes gold logits (a start and an
    end logit at the target tokens): the target span widened to whole words is the answer."""
    import torch

    from mtnlp.tasks.extractive_qa import ExtractiveQA

    max_length, stride = sizes
    context, start, text = example
    out, answer = qa_rows(any_tokenizer, context, start, text, max_length, stride)
    holding = [k for k, label in enumerate(out["labels"]) if label != [0, 0]]
    width = max(len(ids) for ids in out["input_ids"])
    logits = torch.full((len(out["labels"]), width, 2), -20.0)
    for k in holding:
        s, e = out["labels"][k]
        assert 0 < s <= e < len(out["input_ids"][k])
        logits[k, s, 0] = logits[k, e, 1] = 20.0
    predictions = ExtractiveQA().predictions(logits, None, {"max_answer_length": 10_000}, out)
    for k in holding:
        assert predictions[k]["text"] == answer, (k, out["labels"][k])


@PROPS
@given(example=qa_example(), sizes=qa_settings())
def test_qa_windows_cover_the_context_and_hold_a_short_answer(any_tokenizer, example, sizes):
    """The windows' context tokens are the whole context's, in order (consecutive windows overlap), and an answer
    of at most doc_stride tokens lies whole in at least one window."""
    from mtnlp.tasks.extractive_qa import stride_limit

    max_length, stride = sizes
    context, start, text = example
    out, answer = qa_rows(any_tokenizer, context, start, text, max_length, stride)
    enc = any_tokenizer("Who founded the town?", context, return_offsets_mapping=True)
    whole = [tuple(o) for o, s in zip(enc["offset_mapping"], enc.sequence_ids()) if s == 1]
    from mtnlp.tasks.extractive_qa import windows

    windowed, _ = windows(any_tokenizer, ["Who founded the town?"], [context], max_length, stride)
    position, end = -1, 0  # each window's context tokens are a run of the whole context's, after the last's start
    for i in range(len(windowed["input_ids"])):
        part = [tuple(o) for o, s in zip(windowed["offset_mapping"][i], windowed.sequence_ids(i)) if s == 1]
        assert part, i
        position = next((p for p in range(position + 1, len(whole)) if whole[p:p + len(part)] == part), None)
        assert position is not None and position <= end, (i, part)  # no token skipped
        end = position + len(part)
    assert end == len(whole)
    special = any_tokenizer.num_special_tokens_to_add(pair=True)
    used = min(stride, stride_limit(max_length), max(0, (max_length - special) // 2 - 1))
    a = start + text.index(answer)
    tokens = [k for k, (s, e) in enumerate(whole) if s < a + len(answer) and e > a]
    if 0 < len(tokens) <= used:
        assert any(label != [0, 0] for label in out["labels"]), (len(tokens), used)


# ---------------------------------------------------------------- tagging

tag_word = st.one_of(st.sampled_from(PIECES + ["\u200b", "\u0301", "\u00ad"]), word)
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@PROPS
@given(words=st.lists(tag_word, min_size=1, max_size=40), tags=st.data(), max_length=st.sampled_from([8, 16, 64, 128]),
       side=st.sampled_from(["right", "left"]))
def test_tagging_predicts_one_entry_per_word_and_gold_labels_round_trip(any_tokenizer, words, tags, max_length, side):
    """Gold labels through align_labels, as one-hot logits, through predictions: one entry per input word, the
    gold label for each word with a token, -1 for each word cut off (at the end, or at the start for a tokenizer
    that truncates on the left), None for a word without a token."""
    import torch

    from mtnlp.tasks.tagging import IGNORE, Tagging

    gold = tags.draw(st.lists(st.sampled_from(TAGS), min_size=len(words), max_size=len(words)))
    ids = {t: i for i, t in enumerate(TAGS)}
    before, any_tokenizer.truncation_side = any_tokenizer.truncation_side, side
    try:
        enc = Tagging().encode({"tokens": [words], "tags": [gold]}, any_tokenizer, max_length, ids)
    finally:
        any_tokenizer.truncation_side = before
    labels = torch.tensor(enc["labels"])
    assert labels.shape[1] <= max_length
    logits = torch.nn.functional.one_hot(labels.clamp(min=0), len(TAGS)).float()
    truncated = [len(any_tokenizer(words, is_split_into_words=True)["input_ids"]) > max_length]
    rows = {"word_index": enc["word_index"], "tags": [gold], "truncated": truncated, "cut_start": enc["cut_start"]}
    [predicted] = Tagging().predictions(logits, labels, {}, rows)
    assert len(predicted) == len(words)
    token_words = {w for w in enc.word_ids(0) if w is not None}
    first = min(token_words) if token_words else len(words)
    last = max(token_words) if token_words else -1
    for k, p in enumerate(predicted):
        if k in token_words:
            assert p == ids[gold[k]]
        elif truncated[0] and (k > last if side == "right" else k < first):
            assert p == -1
        else:
            assert p is None and not any_tokenizer.tokenize(words[k]), (k, words[k])
    assert (labels != IGNORE).sum() == len(token_words)


@PROPS
@given(tags=st.lists(st.sampled_from(TAGS + ["B-ORG", "I-ORG", "E-PER", "S-LOC", "U-ORG", "L-ORG"]), max_size=20))
def test_iob_spans_are_seqevals_entities(tags):
    """The pipeline's spans of word tags are seqeval's entities (conlleval's rules), types and word extents."""
    from seqeval.metrics.sequence_labeling import get_entities

    from mtnlp.tasks.tagging import as_iobes, iob_spans

    words = [(f"w{k}", (3 * k, 3 * k + 2)) for k in range(len(tags))]
    text = " ".join(w for w, _ in words)
    spans = iob_spans(tags, [1.0] * len(tags), words, text)
    expected = [(kind, 3 * s, 3 * e + 2) for kind, s, e in get_entities([as_iobes(t) for t in tags])]
    assert [(s["type"], s["start"], s["end"]) for s in spans] == expected


# ---------------------------------------------------------------- batching

lengths = st.lists(st.integers(1, 64), min_size=1, max_size=120)


@st.composite
def cuts(draw):
    max_tokens = draw(st.one_of(st.none(), st.integers(1, 512)))
    return {"batch_size": draw(st.integers(1, 16)), "max_tokens": max_tokens,
            "group_by_length": draw(st.booleans()), "seed": draw(st.integers(0, 5))}


def batches_of(lengths, cut, **kwargs):
    from mtnlp.batches import TaskBatches

    return TaskBatches(lengths, cut["batch_size"], cut["seed"], cut["group_by_length"],
                       max_tokens=cut["max_tokens"], **kwargs)


@PROPS
@given(lengths=lengths, cut=cuts(), epoch=st.integers(0, 3))
def test_an_epochs_batches_hold_every_example_once_within_the_budget(lengths, cut, epoch):
    it = batches_of(lengths, cut)
    batches = it.epoch_batches(epoch)
    taken = np.concatenate(batches)
    assert sorted(taken.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) >= 1
        if cut["max_tokens"]:
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= cut["max_tokens"]
        else:
            assert len(b) <= cut["batch_size"]
    assert all((x == y).all() for x, y in zip(batches, batches_of(lengths, cut).epoch_batches(epoch)))


@PROPS
@given(lengths=lengths, cut=cuts(), world_size=st.integers(2, 4))
def test_ranks_take_disjoint_equal_shares_of_an_epoch(lengths, cut, world_size):
    its = [batches_of(lengths, cut, rank=r, world_size=world_size) for r in range(world_size)]
    usable = its[0]._batches
    assume(len(usable) >= world_size)
    rounds = len(usable) // world_size
    taken = [np.concatenate([next(it) for _ in range(rounds)]).tolist() for it in its]
    every = sum(taken, [])
    assert len(every) == len(set(every)) == sum(len(b) for b in usable)


@PROPS
@given(lengths=lengths, cut=cuts(), steps=st.integers(0, 60), more=st.integers(1, 40))
def test_a_resume_from_any_step_goes_on_with_the_same_batches(lengths, cut, steps, more):
    it = batches_of(lengths, cut)
    for _ in range(steps):
        next(it)
    state = it.state_dict()
    resumed = batches_of(lengths, cut)
    resumed.load_state_dict(state)
    assert [next(it) for _ in range(more)] == [next(resumed) for _ in range(more)]


@PROPS
@given(lengths=lengths, cut=cuts(), other=cuts(), steps=st.integers(0, 20))
def test_a_resume_with_another_cut_finishes_the_epoch_with_the_examples_it_had_not_had(lengths, cut, other, steps):
    """Mid-epoch, a run resumed with another batch size, budget, grouping or seed takes exactly the examples its
    epoch has not had, then starts the next epoch whole."""
    it = batches_of(lengths, cut)
    assume(steps < len(it._batches))
    first = [next(it) for _ in range(steps)]
    resumed = batches_of(lengths, other)
    resumed.load_state_dict(it.state_dict())
    rest = []
    while resumed.epoch == 0:
        batch = next(resumed)
        if resumed.epoch == 0:
            rest.append(batch)
        else:
            rest_next = batch
    everything = sum(first, []) + sum(rest, [])
    assert sorted(everything) == list(range(len(lengths)))
    assert rest_next == batches_of(lengths, other).epoch_batches(1)[0].tolist()


# ---------------------------------------------------------------- task sampling

sizes = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 10**7), min_size=1, max_size=6)


@PROPS
@given(sizes=sizes, temperature=st.floats(0.05, 50), draw=st.integers(0, 1000), steps=st.integers(1, 1000))
def test_strategies_give_their_definitions_distributions(sizes, temperature, draw, steps):
    from mtnlp.sampling import TaskSampler

    n = np.array(list(sizes.values()), dtype=np.float64)
    progress = min(draw / max(steps - 1, 1), 1.0)
    expected = {"proportional": n / n.sum(), "uniform": np.full(len(n), 1 / len(n)),
                "temperature": n ** (1 / temperature) / (n ** (1 / temperature)).sum(),
                "annealed": n ** (1 - 0.8 * progress) / (n ** (1 - 0.8 * progress)).sum(),
                "round_robin": np.full(len(n), 1 / len(n))}
    for strategy, p in expected.items():
        got = TaskSampler(sizes, strategy, steps=steps, temperature=temperature).probabilities(draw)
        assert np.isfinite(got).all() and (got >= 0).all() and math.isclose(got.sum(), 1.0, rel_tol=1e-9)
        if np.isfinite(p).all():
            np.testing.assert_allclose(got, p, rtol=1e-6, atol=1e-12)


@FEW
@given(sizes=st.dictionaries(st.sampled_from("abcde"), st.integers(1, 1000), min_size=2, max_size=5),
       strategy=st.sampled_from(["proportional", "uniform", "temperature"]), seed=st.integers(0, 100))
def test_draws_follow_the_probabilities(sizes, strategy, seed):
    """4,000 draws: each task's count within 5 standard deviations of its expectation."""
    from mtnlp.sampling import TaskSampler

    sampler = TaskSampler(sizes, strategy, seed=seed)
    p = sampler.probabilities()
    draws = 4000
    counts = {name: 0 for name in sizes}
    for _ in range(draws):
        counts[next(sampler)] += 1
    for name, q in zip(sampler.names, p):
        assert abs(counts[name] - draws * q) <= 5 * math.sqrt(draws * q * (1 - q)) + 1, (name, counts, p)


@PROPS
@given(sizes=sizes, strategy=st.sampled_from(["proportional", "temperature", "annealed", "round_robin"]),
       seed=st.integers(0, 9), per_step=st.integers(1, 4), steps=st.integers(0, 30))
def test_a_resumed_sampler_draws_the_same_tasks(sizes, strategy, seed, per_step, steps):
    from mtnlp.sampling import TaskSampler

    sampler = TaskSampler(sizes, strategy, seed=seed, steps=40, per_step=per_step)
    for _ in range(steps * per_step):  # a checkpoint is written between steps
        next(sampler)
    resumed = TaskSampler(sizes, strategy, seed=seed, steps=40, per_step=per_step)
    resumed.load_state_dict(sampler.state_dict())
    assert [next(sampler) for _ in range(20)] == [next(resumed) for _ in range(20)]


# ---------------------------------------------------------------- loss weighting

losses = st.floats(1e-4, 1e4)


@PROPS
@given(before=st.dictionaries(st.sampled_from("abcdef"), st.one_of(st.none(), losses), min_size=1, max_size=6),
       data=st.data(), temperature=st.floats(0.1, 10))
def test_dwa_weights_are_positive_and_sum_to_the_task_count(before, data, temperature):
    from mtnlp.weighting import dwa_weights

    last = {n: data.draw(st.one_of(st.none(), losses)) for n in before}
    w = dwa_weights(before, last, temperature)
    assert list(w) == list(last)
    assert all(math.isfinite(v) and v >= 0 for v in w.values())  # (0: exp underflows for a ratio ~700 above another's)
    assert math.isclose(sum(w.values()), len(w), rel_tol=1e-9)
    ratios = {n: last[n] / before[n] if last[n] is not None and before[n] else 1.0 for n in last}
    for a in w:  # a task whose loss fell less (a larger ratio) weighs more
        for b in w:
            if ratios[a] > ratios[b]:
                assert w[a] >= w[b]
    same = dwa_weights(before, dict(before), temperature)  # no change: every weight 1
    assert all(math.isclose(v, 1.0, rel_tol=1e-9) for v in same.values())


@PROPS
@given(loss=st.floats(1e-3, 1e3), static=st.floats(0.01, 10), s=st.floats(-5, 5))
def test_uncertainty_weighting_is_smallest_at_the_log_of_the_loss(loss, static, s):
    """Kendall et al.: d/ds w (exp(-s) L + s) / 2 = 0 at s = log L, the minimum; the logged weight is
    w exp(-s) / 2, the loss's factor."""
    import torch

    from mtnlp.weighting import UncertaintyWeighting

    u = UncertaintyWeighting({"a": static})
    u.load_state_dict_json({"log_vars": [math.log(loss)]})
    value = u("a", torch.tensor(loss, dtype=torch.float32))
    value.backward()
    assert abs(u.log_vars["a"].grad.item()) <= 1e-4 * static
    u.load_state_dict_json({"log_vars": [s]})
    assert u("a", torch.tensor(loss)).item() >= value.item() - 1e-4 * (1 + abs(value.item()))
    assert math.isclose(u.weights()["a"], static * math.exp(-s) / 2, rel_tol=1e-5)


# ---------------------------------------------------------------- gradient methods

def gradients(k_min=2, k_max=5, p_max=8, spread=3):
    """K task gradients of P values, each scaled by 10^-spread to 10^spread (norms over orders of magnitude)."""
    return st.integers(k_min, k_max).flatmap(lambda k: st.integers(1, p_max).flatmap(
        lambda p: st.lists(st.tuples(st.lists(st.floats(-10, 10).map(lambda x: round(x, 3)), min_size=p, max_size=p),
                                     st.sampled_from([0, 0, 0, -spread, -1, 1, spread])).map(
            lambda row: [x * 10.0 ** row[1] for x in row[0]]), min_size=k, max_size=k)))


def pcgrad_reference(g: np.ndarray, rng) -> np.ndarray:
    """Yu et al.'s Algorithm 1 on the vectors themselves."""
    k = len(g)
    out = []
    for i in range(k):
        gi = g[i].copy()
        for j in rng.permutation(k):
            if j == i or g[j] @ g[j] == 0:
                continue
            dot = gi @ g[j]
            if dot < 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return np.sum(out, axis=0)


@PROPS
@given(grads=gradients(), seed=st.integers(0, 100))
def test_pcgrad_is_the_papers_projection(grads, seed):
    import torch

    from mtnlp.gradients import project_conflicting

    g = np.array(grads, dtype=np.float64)
    update, conflicts = project_conflicting(torch.tensor(g), np.random.default_rng(seed))
    expected = pcgrad_reference(g, np.random.default_rng(seed))
    np.testing.assert_allclose(update.numpy(), expected, rtol=1e-6, atol=1e-6 * (1 + np.abs(g).max()) ** 2)
    assert 0.0 <= conflicts <= 1.0
    gram = g @ g.T
    if (gram[~np.eye(len(g), dtype=bool)] >= 0).all():  # no conflict: the plain sum
        np.testing.assert_allclose(update.numpy(), g.sum(0), rtol=1e-9, atol=1e-9)
        assert conflicts == 0.0


@PROPS
@given(grads=gradients(k_max=2), seed=st.integers(0, 100))
def test_pcgrad_of_two_tasks_leaves_no_conflict(grads, seed):
    """Two tasks: each projected gradient has a non-negative dot product with the other's original gradient."""
    import torch

    from mtnlp.gradients import project_conflicting

    g = np.array(grads, dtype=np.float64)
    assume((np.linalg.norm(g, axis=1) > 1e-3).all())
    update = project_conflicting(torch.tensor(g), np.random.default_rng(seed))[0].numpy()
    for i, j in ((0, 1), (1, 0)):
        gi = g[i] - min(g[i] @ g[j], 0) / (g[j] @ g[j]) * g[j]
        assert gi @ g[j] >= -1e-9 * (g[i] @ g[i] + g[j] @ g[j] + 1)
    assert update @ g[0] >= -1e-6 and update @ g[1] >= -1e-6 or np.allclose(g[0], -g[1])


@PROPS
@given(grads=gradients(k_min=1, k_max=5))
def test_mgda_weights_give_the_smallest_norm_point_of_the_hull(grads):
    """Sener & Koltun: d = Σ w_i g_i with w on the simplex; g_i·d >= |d|² for every task (no task's loss rises),
    and |d| no more than any vertex's or random simplex point's."""
    from mtnlp.gradients import min_norm_weights

    g = np.array(grads, dtype=np.float64)
    assume((np.linalg.norm(g, axis=1) > 1e-2).all())
    gram = g @ g.T
    w = min_norm_weights(gram)
    assert (w >= -1e-12).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-9)
    d = w @ g
    scale = np.abs(gram).max()
    assert (g @ d >= d @ d - 1e-6 * scale).all()
    rng = np.random.default_rng(0)
    for other in list(np.eye(len(g))) + list(rng.dirichlet(np.ones(len(g)), 50)):
        assert d @ d <= (other @ g) @ (other @ g) + 1e-7 * scale


@PROPS
@given(grads=gradients(k_min=1, k_max=4, spread=3), c=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_cagrad_weights_minimise_its_dual(grads, c):
    """Liu et al.: w on the simplex minimises F(w) = g_w·g0 + c|g0||g_w| (no random simplex point does better);
    c = 0 is the average gradient, K times: the sum."""
    import torch

    from mtnlp.gradients import CAGrad, cagrad_weights

    g = np.array(grads, dtype=np.float64)
    assume((np.linalg.norm(g, axis=1) > 1e-2).all())
    gram = g @ g.T
    k = len(g)
    w = cagrad_weights(gram, c)
    assert (w >= 0).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-9)
    g0 = g.mean(0)

    def dual(v):
        return (v @ g) @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(v @ g)

    scale = np.abs(gram).max()
    rng = np.random.default_rng(0)
    for other in list(np.eye(k)) + list(rng.dirichlet(np.ones(k), 50)) if c > 0 else []:  # (c = 0: w is unused)
        assert dual(w) <= dual(other) + 1e-5 * scale
    update, conflicts = CAGrad(cagrad_c=c).combine(torch.tensor(g), None)
    d = update.numpy() * (1 + c ** 2) / k  # the paper's d: in the ball of radius c|g0| around g0, and no task's
    # improvement g_i·d below the smallest at g0 (which is in the ball): d maximises the smallest
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6) + 1e-9 * scale
    assert (g @ d).min() >= (g @ g0).min() - 1e-5 * scale
    if c == 0:
        np.testing.assert_allclose(update.numpy(), g.sum(0), rtol=1e-9, atol=1e-9)
    assert np.isfinite(update.numpy()).all() and 0 <= conflicts <= 1


# ---------------------------------------------------------------- metrics

labels_ = st.lists(st.integers(0, 4), min_size=1, max_size=40)


@PROPS
@given(pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40))
def test_accuracy_and_f1_are_sklearns(pairs):
    from sklearn.metrics import accuracy_score, f1_score

    from mtnlp.metrics import compute

    predicted, gold = [p for p, _ in pairs], [g for _, g in pairs]
    assert math.isclose(compute("accuracy", predicted, gold), accuracy_score(gold, predicted))
    assert math.isclose(compute("f1", predicted, gold), f1_score(gold, predicted, average="macro", zero_division=0))


@PROPS
@given(rows=st.integers(1, 12).flatmap(lambda n: st.integers(1, 4).flatmap(lambda k: st.tuples(
    st.lists(st.lists(st.integers(0, 1), min_size=k, max_size=k), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 1), min_size=k, max_size=k), min_size=n, max_size=n)))))
def test_multilabel_metrics_are_sklearns(rows):
    from sklearn.metrics import accuracy_score, f1_score

    from mtnlp.metrics import compute

    predicted, gold = rows
    yp, yg = np.array(predicted), np.array(gold)
    if yg.shape[1] == 1:  # one label: binary F1 of it (f1.py)
        micro = macro = f1_score(yg[:, 0], yp[:, 0], average="binary", zero_division=0)
    else:
        micro = f1_score(yg, yp, average="micro", zero_division=0)
        macro = f1_score(yg, yp, average="macro", zero_division=0)
    assert math.isclose(compute("micro_f1", predicted, gold), micro)
    assert math.isclose(compute("macro_f1", predicted, gold), macro)
    assert math.isclose(compute("exact_match", predicted, gold), accuracy_score(yg, yp))


floats_ = st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 2))


@PROPS
@given(pairs=st.lists(st.tuples(floats_, floats_), min_size=1, max_size=30))
def test_regression_metrics_are_scipys(pairs):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_squared_error

    from mtnlp.metrics import compute

    predicted, gold = [p for p, _ in pairs], [g for _, g in pairs]
    assert math.isclose(compute("mse", predicted, gold), mean_squared_error(gold, predicted), rel_tol=1e-9, abs_tol=1e-9)
    if len(set(predicted)) > 1 and len(set(gold)) > 1:
        assert math.isclose(compute("pearsonr", predicted, gold), pearsonr(gold, predicted)[0], abs_tol=1e-9)
        assert math.isclose(compute("spearmanr", predicted, gold), spearmanr(gold, predicted)[0], abs_tol=1e-9)
    else:
        assert compute("pearsonr", predicted, gold) == compute("spearmanr", predicted, gold) == 0.0


iob = st.lists(st.sampled_from(TAGS + ["B-ORG", "I-ORG"]), min_size=1, max_size=12)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")  # seqeval's, no entity
@PROPS
@given(pairs=st.lists(iob.flatmap(lambda g: st.tuples(st.just(g), st.lists(
    st.sampled_from(TAGS + ["B-ORG", "I-ORG"]), min_size=len(g), max_size=len(g)))), min_size=1, max_size=8))
def test_seqeval_is_seqevals(pairs):
    from seqeval.metrics import f1_score, precision_score, recall_score

    from mtnlp.metrics import load_metric

    gold, predicted = [g for g, _ in pairs], [p for _, p in pairs]
    r = load_metric("seqeval").compute(predictions=predicted, references=gold)
    assert math.isclose(r["overall_f1"], f1_score(gold, predicted, zero_division=0), abs_tol=1e-12)
    assert math.isclose(r["overall_precision"], precision_score(gold, predicted, zero_division=0), abs_tol=1e-12)
    assert math.isclose(r["overall_recall"], recall_score(gold, predicted, zero_division=0), abs_tol=1e-12)


answer_text = st.lists(st.sampled_from(list("abc ABC.,!'") + ["the", " a ", "an"]), max_size=8).map("".join)


@PROPS
@given(prediction=answer_text, golds=st.lists(answer_text, max_size=3))
def test_squad_scores_are_bounded_and_exact_for_a_gold_answer(prediction, golds):
    """0 <= EM <= F1 <= 1 (EM 1 gives F1 1); a gold answer as the prediction scores 1 on both."""
    from mtnlp.metrics import compute

    em, f1 = compute("squad_exact_match", [prediction], [golds]), compute("squad_f1", [prediction], [golds])
    assert 0 <= em <= 1 and 0 <= f1 <= 1 and (em < 1 or f1 == 1)
    from mtnlp.metrics.squad import normalize_answer

    shown = [g for g in golds if normalize_answer(g)]
    for gold in shown or golds:  # (a gold answer of nothing but punctuation and articles counts only alone)
        assert compute("squad_exact_match", [gold], [golds]) == 1.0 == compute("squad_f1", [gold], [golds])


ascii_word = st.text(st.sampled_from("abcXYZ019.,;:!?()'\"-$%&/"), min_size=1, max_size=8)


@PROPS
@given(words=st.lists(ascii_word, min_size=1, max_size=40), seps=st.data(), pick=st.data(), sizes=qa_settings())
def test_qa_an_answer_inside_punctuation_decodes_back(minilm, words, seps, pick, sizes):
    """An answer of BERT's words (runs of letters and digits, a punctuation character each) that is not whitespace
    separated, "Paris" of "(Paris),", decodes back from its target."""
    import re

    import torch

    from mtnlp.tasks.extractive_qa import ExtractiveQA

    context = "".join(w + seps.draw(SEPARATORS) for w in words)
    spans = [m.span() for m in re.finditer(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", context)]
    first = pick.draw(st.integers(0, len(spans) - 1))
    last = pick.draw(st.integers(first, min(len(spans) - 1, first + 5)))
    start, text = spans[first][0], context[spans[first][0]:spans[last][1]]
    max_length, stride = sizes
    out, answer = qa_rows(minilm, context, start, text, max_length, stride)
    assert answer == text
    holding = [k for k, label in enumerate(out["labels"]) if label != [0, 0]]
    width = max(len(ids) for ids in out["input_ids"])
    logits = torch.full((len(out["labels"]), width, 2), -20.0)
    for k in holding:
        s, e = out["labels"][k]
        logits[k, s, 0] = logits[k, e, 1] = 20.0
    predictions = ExtractiveQA().predictions(logits, None, {"max_answer_length": 10_000}, out)
    for k in holding:
        assert predictions[k]["text"] == answer, (k, out["labels"][k])


# ---------------------------------------------------------------- the pipeline's words, QA spans, streams

any_text = st.one_of(st.text(max_size=60),
                     st.lists(st.one_of(hard_word, SEPARATORS, HARD_SEPARATORS,
                                        st.sampled_from(["U.S.", "don't", "Merkel's", "1,000", "3.5", "http://x.org/a.",
                                                         "a@b.com", "Baden-Wuerttemberg", "S&P", "'90s", "...",
                                                         "US$", "Ph.D.", "Dr.", "v5.3"])), max_size=20).map("".join))


@PROPS
@given(text=any_text)
def test_split_words_are_in_order_and_hold_every_shown_character(text):
    """The pipeline's words: each is the text at its offsets, they do not overlap and come in order, none holds a
    space, and every character that shows is in one (none lost)."""
    from mtnlp.pipeline import split_words
    from mtnlp.tasks.base import SHOWN

    words = split_words(text)
    end = 0
    covered = set()
    for w, (a, b) in words:
        assert text[a:b] == w and a >= end and a < b and SHOWN.search(w)
        assert not any(c in " \t\n\r" for c in w), w
        covered.update(range(a, b))
        end = b
    lost = [i for i, c in enumerate(text) if SHOWN.match(c) and i not in covered]
    assert not lost, [text[i] for i in lost]


@PROPS
@given(n=st.integers(1, 30), data=st.data(), topk=st.integers(1, 6), max_answer=st.integers(1, 8),
       null=st.booleans())
def test_window_spans_are_distinct_best_first_and_within_max_answer_length(n, data, topk, max_answer, null):
    from mtnlp.tasks.extractive_qa import window_spans

    offsets = [None] + [data.draw(st.one_of(st.none(), st.just((3 * k, 3 * k + 2)))) for k in range(1, n)]
    logits = np.array(data.draw(st.lists(st.tuples(st.floats(-8, 8), st.floats(-8, 8)), min_size=n, max_size=n)))
    spans, no_answer = window_spans(logits, offsets, max_answer, null, topk)
    allowed = [k for k, o in enumerate(offsets) if o is not None]
    if not allowed:
        assert spans == [] and no_answer is None
        return
    assert (no_answer is not None) == null and len(spans) <= topk
    assert [s for s, _, _ in spans] == sorted((s for s, _, _ in spans), reverse=True)
    assert len({(a, b) for _, a, b in spans}) == len(spans)
    tokens = {o[0]: k for k, o in enumerate(offsets) if o is not None}
    ends = {o[1]: k for k, o in enumerate(offsets) if o is not None}
    for score, a, b in spans:
        s, e = tokens[a], ends[b]
        assert s <= e < s + max_answer and score > 0
    if spans and topk == 1:  # the best span: no allowed (start, end) pair scores higher
        x = logits.astype(np.float64)
        mask = np.array([o is not None or k == 0 for k, o in enumerate(offsets)])
        p = [np.where(mask, np.exp(x[:, i] - x[mask, i].max()), 0) for i in (0, 1)]
        p = [q / q.sum() for q in p]
        best = max(p[0][s] * p[1][e] for s in allowed for e in allowed if s <= e < s + max_answer)
        assert math.isclose(spans[0][0], best, rel_tol=1e-9)


@PROPS
@given(n=st.integers(1, 60), batch_size=st.integers(1, 8), other=st.integers(1, 8), world_size=st.integers(1, 3),
       steps=st.integers(0, 12), seed=st.integers(0, 3))
def test_a_stream_resumed_with_another_batch_size_takes_each_example_once(n, batch_size, other, world_size, steps,
                                                                           seed):
    """Every rank of a stream, then each resumed with another batch size: each example of the epoch is taken at
    most once, and all but fewer than a round of them are."""
    from mtnlp.batches import StreamBatches

    def examples_of(seed, epoch):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        return iter([(epoch, int(i)) for i in order])

    assume(n >= world_size)
    ranks = [StreamBatches(examples_of, list, batch_size, seed, rank=r, world_size=world_size) for r in range(world_size)]
    taken = []
    for _ in range(steps):
        for it in ranks:
            taken += next(it)
    state = ranks[0].state_dict()
    if state["epoch"] > 0:
        return
    resumed = [StreamBatches(examples_of, list, other, seed, rank=r, world_size=world_size) for r in range(world_size)]
    for it in resumed:
        it.load_state_dict(state, written_by=world_size)
    while all(it.epoch == 0 for it in resumed):
        batches = [next(it) for it in resumed]
        taken += [x for b in batches for x in b if x[0] == 0]
        if any(it.epoch > 0 for it in resumed):
            break
    epoch0 = [i for e, i in taken if e == 0]
    assert len(epoch0) == len(set(epoch0))
    assert n - len(epoch0) < world_size * max(batch_size, other)


@PROPS
@given(lengths=lengths, cut=cuts(), before=st.integers(1, 4), after=st.integers(1, 4), rounds=st.integers(0, 10))
def test_a_resume_on_another_number_of_processes_loses_no_batch(lengths, cut, before, after, rounds):
    """A run of `before` processes, resumed mid-epoch on `after`: every batch the new epoch order gives them is
    taken (fewer than a round of them a second time), and the next epoch starts whole."""
    first = [batches_of(lengths, cut, rank=r, world_size=before) for r in range(before)]
    assume(rounds * before < len(first[0]._batches))
    taken = [next(it) for _ in range(rounds) for it in first]
    resumed = [batches_of(lengths, cut, rank=r, world_size=after) for r in range(after)]
    for it in resumed:
        it.load_state_dict(first[0].state_dict(), written_by=before)
    order = [b.tolist() for b in resumed[0]._batches]
    while True:
        batches = [next(it) for it in resumed]
        if resumed[0].epoch > 0:
            break
        taken += batches
    every = [tuple(b) for b in order]
    assert set(every) <= {tuple(b) for b in taken}
    assert len(taken) - len(set(map(tuple, taken))) < after


@PROPS
@given(example=qa_example(words_=hard_word, separators=HARD_SEPARATORS), sizes=qa_settings())
def test_qa_answer_words_are_whole_graphemes_that_show_at_their_edges(any_tokenizer, example, sizes):
    """The words a predicted answer is widened to: start and end at grapheme boundaries, show something at both
    edges (no space or invisible character), and two words are the same span or do not overlap."""
    import regex

    from mtnlp.tasks.base import SHOWN
    from mtnlp.tasks.extractive_qa import window_words, windows

    context = example[0]
    max_length, stride = sizes
    enc, _ = windows(any_tokenizer, ["Who founded the town?"], [context], max_length, stride)
    _, words = window_words(enc, [context])
    boundaries = {m.start() for m in regex.finditer(r"\X", context)} | {len(context)}
    spans = {tuple(span) for row in words for span in row if span is not None}
    for a, b in spans:
        assert a < b and a in boundaries and b in boundaries, (a, b, context[a:b])
        first, last = regex.match(r"\X", context[a:b]).group(), regex.findall(r"\X", context[a:b])[-1]
        assert SHOWN.search(first) and SHOWN.search(last), context[a:b]
    ordered = sorted(spans)
    for (a, b), (c, d) in zip(ordered, ordered[1:]):
        assert b <= c, ((a, b, context[a:b]), (c, d, context[c:d]))


# ---------------------------------------------------------------- truncation

some_text = st.lists(st.one_of(hard_word, SEPARATORS), min_size=1, max_size=120).map("".join)
long_text = st.tuples(some_text, st.sampled_from([1, 1, 2, 30])).map(lambda t: t[0] * t[1])  # (x 30: past
# bounded()'s first cut; not for pairs, which the tokenizer's own truncation, the reference, takes quadratic time for)


@PROPS
@given(texts=st.lists(long_text, min_size=1, max_size=3), data=st.data(), max_length=st.sampled_from([8, 16, 32]),
       pair=st.booleans())
def test_truncating_a_long_text_first_gives_the_tokenizers_own_truncation(any_tokenizer, texts, data, max_length,
                                                                          pair):
    """truncating() cuts a long text a little past max_length tokens before the tokenizer truncates it: the
    model inputs, and whether a text overflows, are what truncating the whole text gives."""
    from mtnlp.tasks.base import truncating

    if pair:
        texts = [text[:2000] for text in texts]
    pairs = [data.draw(some_text) for _ in texts] if pair else None
    ours = truncating(any_tokenizer, texts, pairs, max_length=max_length)
    whole = any_tokenizer(texts, pairs, truncation=True, max_length=max_length)
    assert ours["input_ids"] == whole["input_ids"]
    assert [len(e.overflowing) > 0 for e in ours.encodings] == [len(e.overflowing) > 0 for e in whole.encodings]


@PROPS
@given(words=st.lists(st.tuples(st.lists(hard_word, min_size=1, max_size=80), st.sampled_from([1, 1, 30])).map(
    lambda t: t[0] * t[1]), min_size=1, max_size=3),
       max_length=st.sampled_from([8, 16, 32]))
def test_truncating_long_word_lists_first_gives_the_tokenizers_own_truncation(any_tokenizer, words, max_length):
    from mtnlp.tasks.base import truncating

    ours = truncating(any_tokenizer, words, None, max_length=max_length, words=True)
    whole = any_tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    assert ours["input_ids"] == whole["input_ids"]
    assert [ours.word_ids(i) for i in range(len(words))] == [whole.word_ids(i) for i in range(len(words))]
    assert [len(e.overflowing) > 0 for e in ours.encodings] == [len(e.overflowing) > 0 for e in whole.encodings]


@PROPS
@given(examples=st.lists(st.tuples(qa_example(max_words=40), st.booleans()), min_size=1, max_size=4),
       sizes=qa_settings())
def test_qa_gold_logits_score_one_over_questions_with_and_without_answers(any_tokenizer, examples, sizes):
    """Several questions in one batch, some unanswerable (allow_unanswerable): gold logits (the answer's tokens in
    a window holding it, the first token elsewhere) score exact match 1 through predictions, references and score."""
    import torch

    from mtnlp.tasks.extractive_qa import ExtractiveQA, shown_part

    max_length, stride = sizes
    batch = {"id": [], "question": [], "context": [], "answers": [], "answer_starts": []}
    for k, ((context, start, text), answered) in enumerate(examples):
        a, b = shown_part(text)
        batch["id"].append(str(k))
        batch["question"].append("Who founded the town?")
        batch["context"].append(context)
        batch["answers"].append([text[a:b]] if answered else [])
        batch["answer_starts"].append([start + a] if answered else [])
    qa = ExtractiveQA()
    out = qa.encode(batch, any_tokenizer, max_length, None, {"doc_stride": stride})
    held = {e for e, label in zip(out["example"], out["labels"]) if label != [0, 0]}
    assume(all(str(k) in held for k, (_, answered) in enumerate(examples) if answered))  # (an answer in no window)
    logits = torch.full((len(out["labels"]), max(len(ids) for ids in out["input_ids"]), 2), -20.0)
    for k, (s, e) in enumerate(out["labels"]):
        logits[k, s, 0] = logits[k, e, 1] = 20.0
    spec = {"max_answer_length": 10_000, "allow_unanswerable": True}
    predictions = qa.predictions(logits, None, spec, out)
    references = [{"window": w, "answers": a} for w, a in zip(out["window"], out["answers"])]
    assert qa.score(references, predictions, ["squad_exact_match"], []) == {"squad_exact_match": 1.0}


@FEW
@given(rows=st.integers(1, 30).flatmap(lambda n: st.integers(1, 4).flatmap(lambda k: st.tuples(
    st.lists(st.lists(st.floats(-6, 6, width=32), min_size=k, max_size=k), min_size=n, max_size=n),
    st.lists(st.lists(st.integers(0, 1), min_size=k, max_size=k), min_size=n, max_size=n)))))
def test_tuned_thresholds_are_each_labels_best_of_the_grid(rows):
    """Multilabel tune_thresholds: each label's threshold has the highest validation F1 (sklearn's, binary) of the
    grid, the one nearest 0.5 among equals."""
    import torch
    from sklearn.metrics import f1_score

    from mtnlp.tasks.multilabel import Multilabel

    logits, gold = torch.tensor(rows[0]), np.array(rows[1])
    grid = [i / 20 for i in range(1, 20)]
    tuned = Multilabel().tune(logits, rows[1], grid)
    exact = logits.double().numpy()  # above a threshold: where the sigmoid crosses it exactly, at logit(g)
    for k, t in enumerate(tuned):
        scores = {g: f1_score(gold[:, k], exact[:, k] > np.log(g / (1 - g)), zero_division=0) for g in grid}
        top = max(scores.values())
        assert math.isclose(scores[t], top, abs_tol=1e-12)
        assert abs(t - 0.5) == min(abs(g - 0.5) for g in grid if math.isclose(scores[g], top, abs_tol=1e-12))
