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


TASKS = {"sentiment": "classification", "question": "classification", "pos": "tagging"}


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
    """What serve answers: the request's tasks in its order, `scores` only if it asked."""
    body = {t: ({k: v for k, v in predicted[t].items() if k != "scores"}
                if TASKS[t] == "classification" and not request["all_scores"] else predicted[t])
            for t in request["tasks"]}
    return {"status": 200, "body": {"predictions": [body]}, "latency": 0.01}


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_right_answers_pass(serve_load, tol):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, TASKS, tol, near_ties=tol > 1e-3)
    assert serve_load.failures(summary) == []
    assert summary["requests_checked"] == 2


@pytest.mark.parametrize("tol", [1e-4, 0.05])
def test_swapped_answers_fail(serve_load, tol):
    """Two requests with the same label and scores closer than the tolerance swap their answers: the
    markers in the tagging head's words give it away."""
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(requests[0], predictions[1]), answer(requests[1], predictions[0])]
    summary = serve_load.check(requests, results, predictions, TASKS, tol, near_ties=tol > 1e-3)
    assert "words" in serve_load.failures(summary)
    assert summary["words"] >= 2


def test_swapped_inputs_within_a_request_fail(serve_load):
    request = {"inputs": ["0.0 fine film", "0.1 fine film"], "tasks": ["pos", "sentiment"], "all_scores": True}
    predictions = [prediction("0.0", 0.95), prediction("0.1", 0.95)]
    body = [{t: p[t] for t in request["tasks"]} for p in reversed(predictions)]
    results = [{"status": 200, "body": {"predictions": body}, "latency": 0.01}]
    summary = serve_load.check([request], results, predictions, TASKS, 1e-4)
    assert "words" in serve_load.failures(summary)


def test_label_and_score_mismatches_fail(serve_load):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    wrong_label = copy.deepcopy(predictions[0])
    wrong_label["sentiment"]["label"] = "negative"
    wrong_score = copy.deepcopy(predictions[1])
    wrong_score["sentiment"]["score"] = 0.9130  # 6.4e-4 off: beyond fp32's tolerance
    results = [answer(requests[0], wrong_label), answer(requests[1], wrong_score)]
    summary = serve_load.check(requests, results, predictions, TASKS, 1e-4)
    assert set(serve_load.failures(summary)) == {"labels", "numeric"}


def test_near_tie_only_in_reduced_precision(serve_load):
    """A label flipped between two close classes, its score within the tolerance: a near tie in bf16
    (not a failure: the words identify the answer), a label mismatch in fp32."""
    requests, predictions = requests_and_predictions(["question", "pos"])
    flipped = copy.deepcopy(predictions[0])
    flipped["question"].update(label="ENTY", score=0.59)
    results = [answer(requests[0], flipped), answer(requests[1], predictions[1])]
    bf16 = serve_load.check(requests, results, predictions, TASKS, 0.05, near_ties=True)
    assert serve_load.failures(bf16) == [] and bf16["near_ties"] == 1
    fp32 = serve_load.check(requests, results, predictions, TASKS, 1e-4)
    assert "labels" in serve_load.failures(fp32)


def test_requests_without_a_tagging_head_fail_as_unmarked(serve_load):
    """Sentiment alone answers only {label, score}: swapped answers with close scores could not be told
    apart, so such a request fails the check even when its answer is right."""
    requests, predictions = requests_and_predictions(["sentiment"])
    results = [answer(r, p) for r, p in zip(requests, predictions)]
    summary = serve_load.check(requests, results, predictions, TASKS, 1e-4)
    assert serve_load.failures(summary) == ["unmarked"]


def test_lost_answers_fail(serve_load):
    requests, predictions = requests_and_predictions(["sentiment", "pos"])
    results = [answer(requests[0], predictions[0]), {"status": 503, "body": {}, "latency": 0.01}]
    assert serve_load.failures(serve_load.check(requests, results, predictions, TASKS, 1e-4)) == ["lost"]


def test_every_variant_asks_for_the_tagging_head(serve_load):
    for tasks, _ in serve_load.VARIANTS:
        assert tasks is None or "pos" in tasks
