"""Bundled metric scripts load offline through ``load_metric`` and give correct values."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import evaluate
import pytest
import torch
from scipy.stats import pearsonr as sp_pearsonr
from scipy.stats import spearmanr as sp_spearmanr
from seqeval.metrics import f1_score as seq_f1
from sklearn.metrics import f1_score

import mtnlp.metrics as mm


@pytest.fixture(scope="module", autouse=True)
def offline_fresh_hf_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("hf_home")
    mp.setenv("HF_HOME", str(home))
    mp.setenv("HF_MODULES_CACHE", str(home / "modules"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    # evaluate reads these at import time, so patch the already-imported config too
    mp.setattr(evaluate.config, "HF_MODULES_CACHE", home / "modules")
    mp.setattr(evaluate.config, "HF_METRICS_CACHE", str(home / "metrics"))
    mp.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    mp.setattr(mm, "_CACHE", {})
    yield
    mp.undo()
    # evaluate imported the metric scripts as the package evaluate_modules from this folder: a later test of the same
    # process loading a metric must import it from the real cache, not find the package here (ModuleNotFoundError)
    for name in [n for n in sys.modules if n.split(".")[0] == "evaluate_modules"]:
        del sys.modules[name]
    while str(home / "modules") in sys.path:
        sys.path.remove(str(home / "modules"))


def test_every_metric_file_loads_once():
    for name in mm.METRIC_FILES:
        assert (mm._DIR / f"{name}.py").is_file()
        m = mm.load_metric(name)
        assert m is mm.load_metric(name)
    with pytest.raises(ValueError):
        mm.load_metric("nope")


def test_accuracy():
    res = mm.load_metric("accuracy").compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])
    assert res == {"accuracy": pytest.approx(0.75)}


def test_f1_macro_default_and_kwarg():
    preds, refs = [0, 1, 2, 2], [0, 1, 1, 2]  # macro 7/9, micro 3/4
    m = mm.load_metric("f1")
    assert m.compute(predictions=preds, references=refs)["f1"] == pytest.approx(7 / 9) == pytest.approx(
        f1_score(refs, preds, average="macro"))
    assert m.compute(predictions=preds, references=refs, average="micro")["f1"] == pytest.approx(
        f1_score(refs, preds, average="micro"))


def test_correlations():
    preds, refs = [0.1, 0.4, 0.35, 0.8, 0.5], [0.0, 0.5, 0.3, 1.0, 0.2]
    p = mm.load_metric("correlation", "pearsonr").compute(predictions=preds, references=refs)["pearsonr"]
    s = mm.load_metric("correlation", "spearmanr").compute(predictions=preds, references=refs)["spearmanr"]
    assert p == pytest.approx(sp_pearsonr(refs, preds)[0], abs=1e-5)
    assert s == pytest.approx(sp_spearmanr(refs, preds)[0], abs=1e-5)


def test_correlations_keep_double_precision():
    # float32 would turn 1e6 + 0.1 .. 0.3 into nearly equal values (pearson 0.98) and the second set into one
    # value (spearman 0.0 for "constant input")
    assert mm.load_metric("correlation", "pearsonr").compute(predictions=[1e6 + 0.1, 1e6 + 0.2, 1e6 + 0.3],
                                              references=[1, 2, 3])["pearsonr"] == pytest.approx(1.0)
    assert mm.load_metric("correlation", "spearmanr").compute(predictions=[1.00000001, 1.00000002, 1.00000003],
                                               references=[1, 2, 3])["spearmanr"] == pytest.approx(1.0)


def test_multilabel_f1_of_a_single_label_is_that_labels_f1():
    # sklearn reads one 0/1 column as two classes: micro_f1 became accuracy (0.75), macro_f1 0.733
    refs, preds = [[1], [1], [0], [0]], [[1], [0], [0], [0]]
    for name in ("micro_f1", "macro_f1"):
        assert mm.compute(name, preds, refs) == pytest.approx(f1_score([1, 1, 0, 0], [1, 0, 0, 0]))  # 2/3
    assert mm.compute("micro_f1", [[0]] * 4, refs) == 0.0  # never predicted: 0, not the share of no-label rows


def test_the_correlation_module_refuses_a_config_that_names_no_correlation():
    for config in (None, "kendalltau"):
        with pytest.raises(ValueError, match=r"^correlation: config '(default|kendalltau)': give pearsonr or spearmanr$"):
            mm.load_metric("correlation", config).compute(predictions=[1.0, 2.0], references=[1.0, 3.0])


@pytest.mark.parametrize("name", ["pearsonr", "spearmanr"])
def test_constant_references_give_zero_without_scipys_warning(name):
    """A task whose validation target is constant: scipy's ConstantInputWarning at every evaluation."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mm.load_metric("correlation", name).compute(predictions=[0.1, 0.2, 0.3], references=[0.5] * 3)[name] == 0.0


@pytest.mark.parametrize("name", ["pearsonr", "spearmanr"])
def test_constant_input_correlation_is_zero(name):
    res = mm.load_metric("correlation", name).compute(predictions=[0.5, 0.5, 0.5], references=[0.1, 0.2, 0.3])
    assert res[name] == 0.0 and not math.isnan(res[name])


@pytest.mark.parametrize("name", ["pearsonr", "spearmanr"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_prediction_makes_a_correlation_nan(name, bad):
    res = mm.load_metric("correlation", name).compute(predictions=[0.1, bad, 0.3], references=[0.1, 0.2, 0.3])
    assert math.isnan(res[name])


def test_mse():
    res = mm.load_metric("mse").compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 3.0, 2.0])
    assert res["mse"] == pytest.approx((0 + 1 + 4) / 3)


def test_seqeval_basic():
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "O"]]
    res = mm.load_metric("seqeval").compute(predictions=preds, references=refs)
    # gold: PER, LOC, ORG ; predicted: PER (correct), ORG (wrong span)
    assert res["overall_precision"] == pytest.approx(1 / 2)
    assert res["overall_recall"] == pytest.approx(1 / 3)
    assert res["overall_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert res["overall_accuracy"] == pytest.approx(5 / 7)
    assert res["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1}
    assert res["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}
    assert res["ORG"]["f1"] == 0.0 and res["ORG"]["number"] == 1
    # an entity type per key, besides the overall figures: no averages of seqeval's report (a "macro avg" would
    # become a per_label row of metrics.json and the model card)
    assert set(res) == {"PER", "LOC", "ORG", "overall_precision", "overall_recall", "overall_f1", "overall_accuracy"}


def test_seqeval_reads_entities_by_conlleval_rules():
    """An I- tag that starts an entity counts as one (conlleval, seqeval's default mode), as mtnlp predict
    gives it; whether it does must not depend on the other sentences of the split."""
    refs = [["B-PER", "I-PER", "O"]]
    preds = [["I-PER", "I-PER", "O"]]
    res = mm.load_metric("seqeval").compute(predictions=preds, references=refs)
    assert res["overall_f1"] == 1.0 == seq_f1(refs, preds)
    more = mm.load_metric("seqeval").compute(predictions=preds * 9 + [["O", "I-LOC"]],
                                             references=refs * 9 + [["O", "I-LOC"]])
    assert more["overall_f1"] == 1.0


def test_iobes_tags_are_scored_and_decoded_alike():
    """IOBES (BIOES) tags: seqeval's entities and predict's spans are the same, for well- and ill-formed
    sequences alike (random ones of two types)."""
    import random

    from seqeval.metrics.sequence_labeling import get_entities

    from mtnlp.tasks import task_type
    from mtnlp.tasks.tagging import iob_spans

    labels = ["B-LOC", "B-PER", "E-LOC", "E-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    gold = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], ["B-PER", "E-PER", "O"]]
    predicted = [[labels.index(t) for t in ["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"]],
                 [labels.index(t) for t in ["B-PER", "O", "O"]]]
    scores = task_type("tagging").score(gold, predicted, ["seqeval"], labels)
    assert scores["precision"] == 2 / 3 and scores["recall"] == 2 / 3  # B-PER alone is an entity, not PER's
    rng = random.Random(0)
    for _ in range(500):
        tags = [rng.choice(labels) for _ in range(rng.randint(1, 8))]
        words = [(f"w{i}", (3 * i, 3 * i + 2)) for i in range(len(tags))]
        text = " ".join(w for w, _ in words)
        spans = iob_spans(tags, [1.0] * len(tags), words, text)
        assert [(s["type"], s["start"] // 3, (s["end"] - 2) // 3) for s in spans] == get_entities(tags), tags


def test_bilou_tags_are_iobes_in_scoring_and_spans():
    """spaCy's BILOU tags (L- last, U- unit): scored and decoded as IOBES. seqeval alone knows no U-/L-, and
    the span decoder dropped every U- entity and the L- word of the others, while evaluate said F1 1.0."""
    import random

    from seqeval.metrics.sequence_labeling import get_entities

    from mtnlp.tasks import task_type
    from mtnlp.tasks.tagging import as_iobes, iob_spans

    labels = ["B-PROD", "I-PROD", "L-PROD", "O", "U-PROD", "U-VER"]
    assert task_type("tagging").default_metrics(labels) == ["seqeval"]
    gold = [["U-VER", "O", "B-PROD", "I-PROD", "L-PROD"], ["B-PROD", "L-PROD", "O", "U-PROD"]]
    predicted = [[labels.index(t) for t in ["U-VER", "O", "B-PROD", "L-PROD", "O"]],
                 [labels.index(t) for t in ["B-PROD", "L-PROD", "O", "U-VER"]]]
    scores = task_type("tagging").score(gold, predicted, ["seqeval"], labels)
    # gold: VER, PROD (3 words), PROD (2), PROD (1); predicted: VER, PROD (2, cut short), PROD (2), VER: 2 right
    assert (scores["precision"], scores["recall"]) == (2 / 4, 2 / 4), scores
    # two one-word entities are not one of two words (seqeval alone reads both as one: F1 1.0)
    scores = task_type("tagging").score([["U-PROD", "U-PROD"]], [[labels.index("B-PROD"), labels.index("L-PROD")]],
                                        ["seqeval"], labels)
    assert scores["recall"] == 0.0
    text = "v5.3 for Smart Hub Mini"
    words = [(w, (text.index(w), text.index(w) + len(w))) for w in text.split()]
    spans = iob_spans(gold[0], [1.0] * 5, words, text)
    assert [(s["type"], s["text"]) for s in spans] == [("VER", "v5.3"), ("PROD", "Smart Hub Mini")]
    rng = random.Random(0)
    for _ in range(300):  # well- and ill-formed sequences: the spans are seqeval's entities of the IOBES names
        tags = [rng.choice(labels) for _ in range(rng.randint(1, 8))]
        words = [(f"w{i}", (3 * i, 3 * i + 2)) for i in range(len(tags))]
        spans = iob_spans(tags, [1.0] * len(tags), words, " ".join(w for w, _ in words))
        assert [(s["type"], s["start"] // 3, (s["end"] - 2) // 3) for s in spans] == \
            get_entities([as_iobes(t) for t in tags]), tags


def test_a_split_without_entities_scores_zero_without_numpys_warnings():
    """seqeval's averages over no entity type warned "Mean of empty slice" and "invalid value", naming nothing."""
    import warnings

    from mtnlp.tasks import task_type

    labels = ["B-PER", "I-PER", "O"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = task_type("tagging").score([["O", "O"], ["O"]], [[2, 2], [2]], ["seqeval"], labels)
        assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        assert task_type("tagging").score([["O", "O"]], [[0, 1]], ["seqeval"], labels)["precision"] == 0.0


def test_tags_whose_entity_prefixes_are_lower_case_are_named_so_when_seqeval_is_asked_for():
    from mtnlp.tasks import task_type

    kind = task_type("tagging")
    assert kind.default_metrics(["b-per", "i-per", "o"]) == ["token_accuracy"]
    assert kind.metrics_problem(["seqeval"], ["b-per", "i-per", "o"]).endswith(
        "have no B-/I- prefixes: use token_accuracy (their prefixes are upper case: 'b-per' as 'B-per'; "
        "data.label_names can rename them)")
    assert kind.metrics_problem(["seqeval"], ["ADJ", "NOUN"]).endswith("have no B-/I- prefixes: use token_accuracy")


def test_iob1_gold_tags_are_scored_by_conlleval_rules():
    """CoNLL-2003 as first shipped is IOB1: entities start with I-, B- only splits two of one type.
    Strict IOB2 would drop those entities from gold and prediction alike (F1 1.0 here)."""
    from mtnlp.tasks import task_type

    labels = ["B-ORG", "I-LOC", "I-ORG", "I-PER", "O"]
    gold = [["I-PER", "I-PER", "O", "I-LOC", "O", "I-ORG", "B-ORG"]]
    predicted = [[labels.index(t) for t in ["O", "O", "O", "O", "O", "I-ORG", "B-ORG"]]]
    scores = task_type("tagging").score(gold, predicted, ["seqeval"], labels)
    # gold: PER, LOC, ORG, ORG; predicted: the two ORGs
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5 and scores["f1"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(seq_f1(gold, [[labels[i] for i in predicted[0]]]))


def test_loads_offline_from_fresh_hf_home_in_new_process(tmp_path):
    """Env set before evaluate is imported: every metric loads from an empty HF_HOME."""
    home = tmp_path / "fresh_home"
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_EVALUATE_OFFLINE="1")
    env.pop("HF_MODULES_CACHE", None)
    code = (
        "import json, mtnlp.metrics as mm\n"
        "out = {n: type(mm.load_metric(n)).__name__ for n in sorted(mm.METRIC_FILES)}\n"
        "out['acc'] = mm.load_metric('accuracy').compute(predictions=[1, 0], references=[1, 1])\n"
        "print(json.dumps(out))\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["acc"] == {"accuracy": 0.5}
    assert set(out) == set(mm.METRIC_FILES) | {"acc"}
    assert (home / "modules" / "evaluate_modules").is_dir()


# ---------------------------------------------------------------- behaviour no other test pinned (mutation testing)

def test_squad_scores_against_the_best_of_several_gold_answers_and_normalises():
    from mtnlp.metrics import compute

    assert compute("squad_exact_match", ["Denver Broncos"], [["Broncos", "Denver Broncos"]]) == 1.0
    assert compute("squad_exact_match", ["the Broncos!"], [["Broncos"]]) == 1.0
    assert compute("squad_f1", ["Broncos"], [["Denver Broncos", "Broncos"]]) == 1.0


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_squad_f1_is_the_harmonic_mean_of_token_precision_and_recall():
    from mtnlp.metrics import compute

    # 2 of the prediction's 3 tokens are in the gold answer, which it holds whole: P 2/3, R 1, F1 0.8
    assert compute("squad_f1", ["Denver Broncos team"], [["Denver Broncos"]]) == pytest.approx(0.8)


def test_multilabel_f1_of_two_labels_scores_both_and_a_label_never_seen_counts_0():
    from mtnlp.metrics import compute

    predictions, references = [[1, 0], [1, 1]], [[1, 0], [0, 1]]  # label 0: TP 1, FP 1; label 1: TP 1
    assert compute("micro_f1", predictions, references) == pytest.approx(0.8)  # TP 2, FP 1 (label 0 alone: 2/3)
    assert compute("macro_f1", predictions, references) == pytest.approx((2 / 3 + 1) / 2)
    assert compute("macro_f1", [[1, 0], [0, 0]], [[1, 0], [0, 1]]) == pytest.approx(0.5)  # micro would be 2/3
    # README: a label neither gold nor predicted in the split counts as F1 0 in macro_f1 (zero_division=0)
    assert compute("macro_f1", [[1, 0, 0]], [[1, 0, 0]]) == pytest.approx(1 / 3)
    assert compute("exact_match", [[1, 0], [0, 1]], [[1, 0], [1, 1]]) == 0.5  # whole rows


def test_squad_v2_no_answer_and_the_official_normalisation():
    from mtnlp.metrics import compute

    for name in ("squad_f1", "squad_exact_match"):
        assert compute(name, [""], [[]]) == 1.0  # unanswerable, and the model abstains
        assert compute(name, ["Paris"], [[]]) == 0.0
        assert compute(name, [""], [["the", "Paris"]]) == 0.0  # a gold answer that normalises to nothing is dropped
        assert compute(name, ["a dog", "An apple", "Denver"], [["dog"], ["apple"], ["denver"]]) == 1.0  # a, an; case


def test_mse_is_lower_is_better_in_model_selection():
    from mtnlp.evaluation import main_metric, selection_score

    assert main_metric(["mse"]) == ("mse", False)
    assert selection_score({"a": {"mse": 0.25}, "b": {"accuracy": 0.75}}, {"a": ["mse"], "b": ["accuracy"]}) == 0.25


def test_the_majority_baseline_is_the_training_splits():
    from datasets import Dataset
    from mtnlp.data import TaskData
    from mtnlp.evaluation import majority_baseline

    data = TaskData("s", "classification", ["a", "b"], {"train": Dataset.from_dict({"labels": [0, 0, 1]}),
                                                         "test": Dataset.from_dict({"labels": [1, 1]})})
    assert majority_baseline(data, "test", ["accuracy"]) == {"accuracy": 0.0}


def test_perfect_bilou_predictions_of_adjacent_one_word_entities_score_1():
    """Predictions were scored as raw BILOU while the gold was mapped to IOBES: two adjacent U-LOC words, read by
    seqeval as one entity, made a perfect model score F1 0.33."""
    from mtnlp.tasks import task_type

    labels = ["B-PER", "L-PER", "O", "U-LOC"]
    gold = [["U-LOC", "U-LOC", "O", "B-PER", "L-PER", "B-PER", "L-PER"]]  # two one-word places, two persons
    perfect = [[labels.index(t) for t in gold[0]]]
    scores = task_type("tagging").score(gold, perfect, ["seqeval"], labels)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0), scores


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_squad_f1_of_an_answer_sharing_no_token_with_the_gold_is_0():
    """An answer with no token in common with any gold answer scored as F1 1.0, a perfect answer."""
    from mtnlp.metrics import compute

    assert compute("squad_f1", ["Paris"], [["London"]]) == 0.0
    assert compute("squad_f1", ["Paris", "London"], [["London"], ["London"]]) == 0.5


def test_squad_exact_match_collapses_whitespace_inside_an_answer():
    """Runs of whitespace inside an answer (also where an article was removed) are one space, as in the official
    script: without it "Denver  Broncos" and "Denver the Broncos" missed the gold "Denver Broncos"."""
    from mtnlp.metrics import compute

    assert compute("squad_exact_match", ["Denver  Broncos", "Denver the Broncos"],
                   [["Denver Broncos"], ["Denver Broncos"]]) == 1.0


def test_token_accuracy_scores_each_word_of_a_tagging_task():
    """token_accuracy (tags without B-/I-) scored with the multi-label accuracy's config failed on word ids."""
    from mtnlp.tasks import task_type

    labels = ["NOUN", "PUNCT", "VERB"]
    gold = [["NOUN", "VERB", "PUNCT"], ["NOUN", "NOUN"]]
    predicted = [[0, 0, 1], [0, -1]]  # one wrong word, one cut off by max_length (wrong: no O tag)
    assert task_type("tagging").score(gold, predicted, ["token_accuracy"], labels) == {"token_accuracy": 3 / 5}


class _FirstTokenModel(torch.nn.Module):
    """Stands in for a model in evaluation: each example's logits are a one-hot of its first token id (token 7:
    a NaN in the second output)."""

    def __init__(self, outputs, tasks=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.outputs, self.config = outputs, SimpleNamespace(tasks=tasks or {})

    def forward(self, input_ids, task, **inputs):
        first = input_ids[:, 0]
        logits = torch.nn.functional.one_hot(first % 7, self.outputs[task] if isinstance(self.outputs, dict)
                                             else self.outputs).float()
        logits[first == 7, 1] = math.nan
        return SimpleNamespace(logits=logits)


def _rows(first_tokens, lengths, labels=None):
    from datasets import Dataset

    ids = [[first] + [9] * (n - 1) for first, n in zip(first_tokens, lengths)]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths], "length": lengths,
                              "labels": list(first_tokens) if labels is None else labels})


def test_what_a_task_type_learns_from_validation_sees_it_in_dataset_order_and_updates_the_config(monkeypatch):
    """fit_to_validation gives the task type the validation logits in dataset order (they were reordered by
    the order they ran in, not put back), updates the model's task config with what it learnt, and passes
    over a task without a validation split."""
    from mtnlp.data import TaskData
    from mtnlp.evaluation import fit_to_validation
    from mtnlp.tasks import task_type

    kind, seen = type(task_type("classification")), []
    monkeypatch.setattr(kind, "fits_validation", lambda self, spec: True)
    monkeypatch.setattr(kind, "fit", lambda self, logits, references, spec, name="": seen.append(
        (logits.argmax(-1).tolist(), references)) or {"learnt": name})
    tasks = {"a": TaskData("a", "classification", list("wxyz"), {"validation": _rows([1, 2, 3, 0, 2], [2, 5, 1, 4, 3])}),
             "b": TaskData("b", "classification", list("wxyz"), {"train": _rows([1], [1])})}
    model = _FirstTokenModel(4, {"a": {"type": "classification"}, "b": {"type": "classification"}})
    assert fit_to_validation(model, tasks, {"a": {}, "b": {}}, 2, 0) == {"a": {"learnt": "a"}}
    assert seen == [([1, 2, 3, 0, 2], [1, 2, 3, 0, 2])]
    assert model.config.tasks == {"a": {"type": "classification", "learnt": "a"}, "b": {"type": "classification"}}


def test_evaluate_split_scores_every_metric_and_reports_the_heads_thresholds_per_label():
    """evaluate_split scored a task by its main metric alone (metrics.json lost the others), and per_label gave a
    multi-label head's labels the default threshold 0.5 instead of the thresholds it predicted with."""
    from mtnlp.data import TaskData
    from mtnlp.evaluation import evaluate_split

    tasks = {"c": TaskData("c", "classification", list("wxyz"), {"test": _rows([1, 2, 0, 1], [2, 1, 3, 1],
                                                                                [1, 2, 0, 2])}),
             "m": TaskData("m", "multilabel", ["a", "b"], {"test": _rows([1, 0, 1], [1, 2, 3], [[1, 0], [1, 1], [0, 0]])})}
    heads = {"c": {"type": "classification", "labels": list("wxyz")},
             "m": {"type": "multilabel", "labels": ["a", "b"], "thresholds": [0.2, 0.9]}}  # predicts [1, 0] always
    by_label = {}
    results = evaluate_split(_FirstTokenModel({"c": 4, "m": 2}, heads), SimpleNamespace(pad_token_id=0), tasks,
                             {"c": ["accuracy", "f1"], "m": ["micro_f1", "exact_match"]}, "test", 2, by_label=by_label)
    assert results["c"] == {"accuracy": 0.75, "f1": pytest.approx(f1_score([1, 2, 0, 2], [1, 2, 0, 1], average="macro"))}
    assert results["m"] == {"micro_f1": pytest.approx(2 / 3), "exact_match": pytest.approx(1 / 3)}
    assert {label: f["threshold"] for label, f in by_label["m"].items()} == {"a": 0.2, "b": 0.9}


def test_an_example_with_any_non_finite_logit_is_counted_in_the_warning():
    """predict warned only of examples whose logits were all NaN (or only of two or more such examples): one
    example's NaN logit (a diverged head, an fp16 overflow) still named a label without a word."""
    from mtnlp.evaluation import predict
    from mtnlp.tasks import task_type

    with pytest.warns(UserWarning, match=r"^t: 1 of 3 examples got NaN or infinite logits"):
        predict(_FirstTokenModel(3), _rows([1, 7, 2], [1, 2, 3]), "t", task_type("classification"), {}, 2, 0)


def test_nothing_to_score_is_no_perfect_accuracy():
    """An empty scoring set (e.g. every word of a split cut off) scored accuracy 1.0, the best a model can get."""
    assert mm.compute("accuracy", [], []) == 0.0


def test_the_evaluation_note_of_a_cut_tagging_split_says_how_the_cut_words_are_scored():
    """Not "get no tag" (what predict does): evaluation scores them as O, or as wrong without an O tag."""
    import datasets

    from mtnlp.tasks import task_type

    split = datasets.Dataset.from_dict({"truncated": [True, False, True]})
    assert task_type("tagging").truncation_note(split, 32) == (
        "2 of 3 examples are longer than max_length=32 tokens and were truncated; the words it cuts off are scored as "
        "O (as wrong where the tags have no O)")
