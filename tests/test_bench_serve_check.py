"""bench/serve_load.py's answer check must catch swapped answers. Fake predictions only: no model, no server."""

import copy
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "serve_load.py"


@pytest.fixture(scope="module")
def serve_load():
    spec = importlib.util.spec_from_file_location("bench_serve_load", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# config.json `tasks` entries: the demo's heads, and a model with a text-pair regression head
HEADS = {"sentiment": {"type": "classification", "labels": ["negative", "positive"], "text_pair": False},
         "question": {"type": "classification", "labels": ["DESC", "ENTY"], "text_pair": False},
         "pos": {"type": "tagging", "labels": ["NOUN", "NUM"]}}
PAIR_HEADS = {"stsb": {"type": "regression", "labels": ["score"], "text_pair": True},
              "sentiment": HEADS["sentiment"],
              "emotions": {"type": "multilabel", "labels": ["joy", "anger"], "text_pair": False}}


def prediction(marker: str, sentiment: float) -> dict:
    """A direct prediction (every task, all scores) of the text f"{marker} fine film"."""
    number, _, part = marker.partition(".")
    words = [(number, 0, len(number)), (".", len(number), len(number) + 1),
             (part, len(number) + 1, len(marker)), ("fine", len(marker) + 1, len(marker) + 5),
             ("film", len(marker) + 6, len(marker) + 10)]
    return {
        "sentiment": {"label": "positive", "score": sentiment,
                      "scores": {"negative": 1 - sentiment, "positive": sentiment}},
        "question": {"label": "DESC", "score": 0.6, "scores": {"DESC": 0.6, "ENTY": 0.4}},
        "pos": [{"word": w, "tag": "NOUN" if w.isalpha() else "NUM", "start": s, "end": e, "score": 0.9}
                for w, s, e in words],
    }


def requests_and_predictions(tasks: list[str]):
    requests = [{"inputs": [f"{k}.0 fine film"], "tasks": tasks, "all_scores": False} for k in range(2)]
    predictions = [prediction("0.0", 0.91230), prediction("1.0", 0.91236)]  # same label, scores 6e-5 apart
    return requests, predictions


def answer(request: dict, predicted: dict) -> dict:
    """What serve answers: the request's tasks in its order, every head's `scores` only if it asked."""
    body = {t: ({k: v for k, v in predicted[t].items() if k != "scores"}
                if isinstance(predicted[t], dict) and not request["all_scores"] else predicted[t])
            for t in request["tasks"]}
    return {"status": 200, "body": {"predictions": [body]}, "latency": 0.01}


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_right_answers_pass(serve_load, tol):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, HEADS, tol, near_ties=tol > 1e-3)
    assert serve_load.failures(summary) == []
    assert summary["requests_checked"] == 2


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_swapped_answers_fail(serve_load, tol):
    """Two requests with the same label and scores closer than the tolerance swap their answers: the
    markers in the tagging head's words give it away."""
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(requests[0], predictions[1]), answer(requests[1], predictions[0])]
    summary = serve_load.check(requests, results, predictions, HEADS, tol, near_ties=tol > 1e-3)
    assert "words" in serve_load.failures(summary)
    assert summary["words"] >= 2


def test_swapped_inputs_within_a_request_fail(serve_load):
    request = {"inputs": ["0.0 fine film", "0.1 fine film"], "tasks": ["pos", "sentiment"], "all_scores": True}
    predictions = [prediction("0.0", 0.95), prediction("0.1", 0.95)]
    body = [{t: p[t] for t in request["tasks"]} for p in reversed(predictions)]
    results = [{"status": 200, "body": {"predictions": body}, "latency": 0.01}]
    summary = serve_load.check([request], results, predictions, HEADS, 1e-4)
    assert "words" in serve_load.failures(summary)


def test_label_and_score_mismatches_fail(serve_load):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    wrong_label = copy.deepcopy(predictions[0])
    wrong_label["sentiment"]["label"] = "negative"
    wrong_score = copy.deepcopy(predictions[1])
    wrong_score["sentiment"]["score"] = 0.9130  # 6.4e-4 off: beyond fp32's tolerance
    results = [answer(requests[0], wrong_label), answer(requests[1], wrong_score)]
    summary = serve_load.check(requests, results, predictions, HEADS, 1e-4)
    assert set(serve_load.failures(summary)) == {"labels", "numeric"}


def test_near_tie_only_in_reduced_precision(serve_load):
    """A label flipped between two close classes, its score within the tolerance: a near tie in bf16
    (not a failure: the words identify the answer), a label mismatch in fp32."""
    requests, predictions = requests_and_predictions(["question", "pos"])
    flipped = copy.deepcopy(predictions[0])
    flipped["question"].update(label="ENTY", score=0.59)
    results = [answer(requests[0], flipped), answer(requests[1], predictions[1])]
    bf16 = serve_load.check(requests, results, predictions, HEADS, 0.05, near_ties=True)
    assert serve_load.failures(bf16) == [] and bf16["near_ties"] == 1
    fp32 = serve_load.check(requests, results, predictions, HEADS, 1e-4)
    assert "labels" in serve_load.failures(fp32)


def test_requests_without_a_tagging_head_are_counted_undetectable(serve_load):
    """Sentiment alone answers only {label, score}: two answers with the same label and scores closer than the
    tolerance could swap unseen. Right answers pass, and the check says it could not have caught a swap."""
    requests, predictions = requests_and_predictions(["sentiment"])
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, HEADS, 1e-4)
    assert serve_load.failures(summary) == []
    assert summary["undetectable"] == 2
    assert summary["swap_detectable"] == {"text sentiment": {"words": 0, "structure": 0, "values": 0,
                                                             "undetectable": 2}}


def test_tagging_head_covers_swaps_by_words(serve_load):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, HEADS, 0.05, near_ties=True)
    assert summary["swap_detectable"]["text sentiment,pos"]["words"] == 2 and summary["undetectable"] == 0


def test_lost_answers_fail(serve_load):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(requests[0], predictions[0]), {"status": 503, "body": {}, "latency": 0.01}]
    assert serve_load.failures(serve_load.check(requests, results, predictions, HEADS, 1e-4)) == ["lost"]


def test_demo_variants_keep_the_tagging_head(serve_load):
    variants = serve_load.make_variants(HEADS)
    assert {v["form"] for v in variants} == {"text", "pair", "mixed"}
    for v in variants:
        assert v["tasks"] is None or "pos" in v["tasks"]
        if v["form"] != "text":  # the classification heads read single texts only
            assert v["tasks"] == ["pos"]


# ------------------------------------------------------------------ a model with a text-pair head


def pair_prediction(stsb: float) -> dict:
    """A direct prediction (every head that reads a pair, all scores) of a text pair."""
    return {"stsb": {"value": stsb}}


def text_prediction(sentiment: float, joy: float) -> dict:
    return {"sentiment": {"label": "positive", "score": sentiment,
                          "scores": {"negative": 1 - sentiment, "positive": sentiment}},
            "emotions": {"labels": [{"label": "joy", "score": joy}], "scores": {"joy": joy, "anger": 0.1}}}


def test_pair_variants_name_only_heads_that_read_their_inputs(serve_load):
    variants = serve_load.make_variants(PAIR_HEADS)
    assert {v["form"] for v in variants} == {"text", "pair"}  # no head reads both: no mixed requests
    requests = serve_load.make_requests(variants, ["a film", "a play"], 2 * len(variants), 0, 2)
    for request in requests:
        forms = {serve_load.form_of(item) for item in request["inputs"]}
        assert len(forms) == 1
        assert all(forms <= serve_load.reads(PAIR_HEADS[t]) for t in request["tasks"])
    pairs = [item for r in requests for item in r["inputs"] if isinstance(item, dict)]
    assert pairs and all(set(item) == {"text", "text_pair"} for item in pairs)
    assert len({item["text"] for item in pairs}) == len(pairs)  # each carries its own "k.j" marker


def pair_requests():
    """Two pair requests for stsb, and two single-text requests for sentiment + emotions (without scores)."""
    requests = [{"inputs": [{"text": f"{k}.0 a film", "text_pair": "a play"}], "tasks": ["stsb"],
                 "all_scores": False} for k in range(2)]
    requests += [{"inputs": [f"{k}.0 fine film"], "tasks": ["sentiment", "emotions"], "all_scores": False}
                 for k in range(2, 4)]
    predictions = [pair_prediction(2.1), pair_prediction(3.4), text_prediction(0.91, 0.8),
                   text_prediction(0.62, 0.7)]
    return requests, predictions


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_pair_model_right_answers_pass(serve_load, tol):
    """Multilabel answers without `scores` (not asked) are right: the check cuts them as serve does."""
    requests, predictions = pair_requests()
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, PAIR_HEADS, tol, near_ties=tol > 1e-3)
    assert serve_load.failures(summary) == []
    assert summary["undetectable"] == 0
    assert summary["swap_detectable"]["pair stsb"]["values"] == 2
    assert summary["swap_detectable"]["text sentiment,emotions"]["values"] == 2


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_pair_model_swapped_answers_fail(serve_load, tol):
    """The stsb answers of two pair requests swapped, and the single-text answers swapped: the regression
    values and the sentiment / emotion scores give them away (no tagging head on this model)."""
    requests, predictions = pair_requests()
    order = [1, 0, 3, 2]
    results = [answer(requests[k], predictions[order[k]]) for k in range(4)]
    summary = serve_load.check(requests, results, predictions, PAIR_HEADS, tol, near_ties=tol > 1e-3)
    assert serve_load.failures(summary) == ["numeric"]
    assert {where.split(".")[1] for where in summary["examples"]["numeric"]} >= {"stsb", "sentiment"}


def test_regression_tolerance_is_relative_to_the_value(serve_load):
    requests, predictions = pair_requests()
    close = copy.deepcopy(predictions)
    close[1]["stsb"]["value"] = 3.5  # 0.1 off: within 0.05 * 3.4 in bf16, beyond 1e-4 * 3.4 in fp32
    results = [answer(r, p) for r, p in zip(requests, close)]
    assert serve_load.failures(serve_load.check(requests, results, predictions, PAIR_HEADS, 0.05, True)) == []
    assert serve_load.failures(serve_load.check(requests, results, predictions, PAIR_HEADS, 1e-4)) == ["numeric"]


def test_close_regression_values_are_undetectable_swaps(serve_load):
    """Two pairs whose values are within the tolerance: their swap passes, and the check says so."""
    requests, predictions = pair_requests()
    predictions[1] = pair_prediction(2.10005)
    results = [answer(requests[0], predictions[1]), answer(requests[1], predictions[0])]
    results += [answer(r, p) for r, p in zip(requests[2:], predictions[2:])]
    summary = serve_load.check(requests, results, predictions, PAIR_HEADS, 1e-4)
    assert serve_load.failures(summary) == []
    assert summary["swap_detectable"]["pair stsb"] == {"words": 0, "structure": 0, "values": 0, "undetectable": 2}


def test_the_heads_are_taken_in_the_order_serve_answers_them(serve_load, tmp_path):
    """transformers writes config.json's tasks sorted; serve answers in the recipe's order (task_order): a check
    that took the file's order failed every right answer to a request that names no tasks ("structure")."""
    import json

    (tmp_path / "config.json").write_text(json.dumps({"tasks": dict(sorted(HEADS.items())),
                                                      "task_order": list(HEADS)}))
    assert list(serve_load.served_heads(tmp_path)) == ["sentiment", "question", "pos"]
