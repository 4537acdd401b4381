"""`mtnlp serve`: /predict answers what `mtnlp predict` prints, limits and errors are 4xx JSON naming the
field, concurrent requests share pipeline calls, and a real server process stops cleanly on SIGTERM."""

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import FOUR_TASKS as TASKS, NER_LABELS, save_model
from mtnlp import MultiTaskPipeline
from mtnlp.cli import main as cli_main
from mtnlp.serve import Limits, card_metrics, create_app

TEXTS = ["John Smith works for the United Nations in New York .", "a gorgeous , witty , seductive movie .",
         "Who was Galileo ?", "", "Zürich’s café — naïve résumé!"]
CARD = """# card

| task | type | labels | validation | test |
|---|---|---|---|---|
| sentiment | classification | negative, positive | accuracy 0.8463, f1 0.8462 | — |
| ner | tagging | O, B-PER | seqeval_f1 0.5000 | seqeval_f1 0.4000 |
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_encoder):
    folder = save_model(tmp_path_factory.mktemp("mt-model"), tiny_encoder, TASKS)
    (folder / "README.md").write_text(CARD)
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir):
    return MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")


@pytest.fixture(scope="module")
def client(pipe, model_dir):
    app = create_app(pipe, limits=Limits(max_body_bytes=4000, max_inputs=5, max_chars=100), model_name="tiny",
                     metrics=card_metrics(str(model_dir)))
    with TestClient(app) as c:
        yield c


def assert_same(got, expected, where="predictions"):
    """Equal structure, keys in the same order, strings and ints equal, floats within 1e-5."""
    assert type(got) is type(expected), where
    if isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(got, expected, abs_tol=1e-5), (where, got, expected)
    else:
        assert got == expected, where


def asgi_post(app, messages: list[dict], leave: asyncio.Event | None = None):
    """A raw ASGI POST /predict that receives `messages`, then a disconnect once `leave` is set (or after a
    minute): (the app's coroutine, what it sent)."""
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await (leave.wait() if leave else asyncio.sleep(60))
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "root_path": "",
             "query_string": b"", "headers": [(b"content-type", b"application/json")], "http_version": "1.1",
             "scheme": "http", "server": ("testserver", 80), "client": ("client", 1)}
    return app(scope, receive, send), sent


def cli_predictions(model_dir, tmp_path, texts, *options):
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    assert cli_main(["predict", str(model_dir), "--input", str(inputs), "--output", str(out),
                     "--precision", "fp32", *options]) == 0
    return [json.loads(line)["predictions"] for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("body,options", [
    ({"inputs": TEXTS[0]}, []),
    ({"inputs": {"text": TEXTS[0]}}, []),
    ({"inputs": TEXTS}, []),
    ({"inputs": TEXTS[:3], "tasks": ["ner", "sentiment"]}, ["--tasks", "ner,sentiment"]),
    ({"inputs": TEXTS, "all_scores": True}, ["--all-scores"]),
    ({"inputs": TEXTS[1:], "tasks": ["sentiment", "pos"], "all_scores": True}, ["--tasks", "sentiment,pos",
                                                                               "--all-scores"]),
    ({"inputs": [{"words": ["John", "Smith", "\u200b", "works"]}, TEXTS[0]], "tasks": ["ner", "pos"]}, ["--tasks", "ner,pos"]),
], ids=["single", "single_object", "list", "tasks", "all_scores", "tasks_all_scores", "words"])
def test_predict_equals_the_cli(client, model_dir, tmp_path, body, options):
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    texts = [body["inputs"]] if isinstance(body["inputs"], (str, dict)) else body["inputs"]
    assert_same(response.json(), {"predictions": cli_predictions(model_dir, tmp_path, texts, *options)})


def test_health_and_info(client, pipe):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["model"] == "tiny" and list(info["tasks"]) == list(pipe.tasks)
    assert info["tasks"]["ner"]["type"] == "tagging" and info["tasks"]["ner"]["labels"] == NER_LABELS
    assert info["tasks"]["sentiment"]["metrics"] == {"validation": {"accuracy": 0.8463, "f1": 0.8462}}
    assert info["tasks"]["ner"]["metrics"] == {"validation": {"seqeval_f1": 0.5}, "test": {"seqeval_f1": 0.4}}
    assert info["tasks"]["score"]["metrics"] == {}
    assert info["precision"]["used"] == "fp32" and info["limits"]["max_inputs"] == 5
    assert info["limits"]["max_queue"] == 1024 and health.json()["queued"] == 0


def test_info_gives_a_multilabel_heads_thresholds(tiny_encoder, tmp_path):
    """A client reading all_scores needs each label's threshold to know why a label was or was not predicted."""
    tasks = {"emotions": {"type": "multilabel", "labels": ["joy", "anger"], "dropout": 0.1, "threshold": 0.5,
                          "thresholds": [0.3, 0.65]},
             "topics": {"type": "multilabel", "labels": ["a", "b", "c"], "dropout": 0.1, "threshold": 0.4},
             "sentiment": TASKS["sentiment"]}
    folder = save_model(tmp_path / "m", tiny_encoder, tasks)
    app = create_app(MultiTaskPipeline.from_pretrained(str(folder), precision="fp32"), model_name="m")
    with TestClient(app) as c:
        info = c.get("/info").json()["tasks"]
    assert info["emotions"]["thresholds"] == {"joy": 0.3, "anger": 0.65} and info["emotions"]["thresholds_tuned"]
    assert info["topics"]["thresholds"] == {"a": 0.4, "b": 0.4, "c": 0.4} and not info["topics"]["thresholds_tuned"]
    assert "thresholds" not in info["sentiment"]


@pytest.mark.parametrize("content,status,field", [
    ({"inputs": "x" * 5000}, 413, "body"),
    ({"inputs": ["a"] * 6}, 422, "inputs"),
    ({"inputs": ["short", "y" * 101]}, 422, "inputs[1]"),
    ({"inputs": ["a", 3]}, 422, "inputs[1]"),
    ({"inputs": []}, 422, "inputs"),
    ({"inputs": {"txt": "a"}}, 422, "inputs[0].txt"),  # one object is one input
    ({"inputs": [{"question": "Who?"}]}, 422, "inputs[0].context"),  # part of a QA input: what it lacks
    ({"texts": ["a"]}, 422, "texts"),
    ({"all_scores": True}, 422, "inputs"),
    ({"inputs": "a", "tasks": ["sentiment", "nope"]}, 422, "tasks"),
    ({"inputs": "a", "tasks": "sentiment"}, 422, "tasks"),
    ({"inputs": "a", "all_scores": "yes"}, 422, "all_scores"),
    (["a", "b"], 422, "body"),
    (b'{"inputs": ["a",', 400, "body"),
    (b"\xff\xfe", 400, "body"),
    (b"[" * 1900 + b"]" * 1900, 400, "body"),
    (b'{"inputs": ["ok", "a \\ud800 lone surrogate"]}', 422, "inputs[1]"),  # valid JSON, not valid Unicode
    (b'{"inputs": [{"text": "ok", "text_pair": "\\udfff"}]}', 422, "inputs[0]"),
    ({"inputs": [{"words": ["a", " "]}]}, 422, "inputs[0].words[1]"),
    ({"inputs": [{"words": ["abcdefghi"] * 20}]}, 422, "inputs[0].words"),  # max_chars: the words of one text
    ({"inputs": [{"words": ["a"]}], "tasks": ["sentiment"]}, 422, "inputs[0]"),
    # a lone surrogate in a key (messages name keys: a plain-text 500), a key given twice, what is not JSON
    (b'{"inputs": {"\\ud800": "a"}}', 422, "inputs[0]"),
    (b'{"inputs": "a", "\\ud800": 1}', 422, "\\ud800"),
    (b'{"inputs": "a", "tasks": ["sentiment"], "tasks": ["ner"]}', 422, "tasks"),
    (b'{"inputs": {"text": "I love it", "text": "I hate it"}}', 422, "text"),
    (b'{"inputs": ["a", NaN]}', 400, "body"),
    (b'{"inputs": "a", "all_scores": -Infinity}', 400, "body"),
    (b'{"inputs": {"text": "x", "choices": [1.5, 1e400]}}', 400, "body"),
])
def test_bad_requests_name_the_field(client, content, status, field):
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and error["error"].startswith(f"{field}: "), error


def test_a_raw_control_character_in_the_body_is_told_where_and_how_to_write_it(client):
    """json's message ("Invalid control character at") lost its position."""
    response = client.post("/predict", content=b'{"inputs":\n ["ok", "a\tb"]}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json() == {
        "field": "body", "error": r"body: invalid JSON (a raw control character (a tab, a line break) inside a string: "
                                 r"write it escaped (\t, \n, \u0000) (line 2 column 11))"}


@pytest.mark.parametrize("opener,closer,field", [(b"[", b"]", "inputs[0]"), (b'{"text": ', b"}", "inputs[0].text"),
                                                  (b'{"words": ', b"}", "inputs[0].words")])
def test_json_nested_just_below_the_parsers_limit_is_a_422_not_a_500(pipe, opener, closer, field):
    """json.loads reads up to ~980 levels; checking the texts' Unicode recursed and raised RecursionError from
    500 levels on: a text/plain 500 and a traceback in the log."""
    app = create_app(pipe, limits=Limits(max_body_bytes=1 << 16))
    with TestClient(app, raise_server_exceptions=False) as client:
        for depth in (500, 800, 970):  # (970: json's limit is lower in a deeper stack, such as TestClient's)
            body = b'{"inputs": [' + opener * depth + b'"x"' + closer * depth + b'], "tasks": ["ner"]}'
            response = client.post("/predict", content=body, headers={"content-type": "application/json"})
            expected = {422: field} if depth < 970 else {422: field, 400: "body"}
            assert expected.get(response.status_code) == response.json()["field"], (depth, response.text)


def test_valid_unicode_reads_any_depth():
    from mtnlp.tasks.base import valid_unicode

    deep = ["x"]
    for _ in range(100_000):
        deep = [deep, {"k": "y"}]
    assert valid_unicode(deep) and not valid_unicode([deep, {"k": ["\ud800"]}]) and valid_unicode(3)


def test_a_task_the_server_leaves_out_is_named_as_not_served(pipe):
    from mtnlp.serve import ApiError, parse_request

    with pytest.raises(ApiError) as info:
        parse_request(b'{"inputs": "x", "tasks": ["score"]}', {"sentiment": pipe.tasks["sentiment"]}, Limits())
    assert str(info.value) == "tasks: no served task 'score' (this server serves: sentiment)"


def test_an_integer_python_refuses_to_read_is_a_bad_body_not_a_500(pipe):
    """json.loads raises a plain ValueError for an integer of over 4,300 digits: it was a 500 (text/plain)."""
    from mtnlp.serve import ApiError, parse_request

    with pytest.raises(ApiError) as info:
        parse_request(b'{"inputs": "x", "all_scores": ' + b"9" * 5000 + b"}", pipe.tasks, Limits())
    assert (info.value.status, info.value.field) == (400, "body") and "4300 digits" in str(info.value)


def test_body_limit_without_content_length(client):
    def chunks():  # a streamed (chunked) body: no Content-Length to check first
        yield b'{"inputs": ["'
        for _ in range(100):
            yield b"x" * 100
        yield b'"]}'

    response = client.post("/predict", content=chunks())
    assert response.status_code == 413 and response.json()["field"] == "body"


def test_text_pairs_pass_through_or_are_refused_by_name(client, pipe):
    """The pipeline decides about {"text", "text_pair"} inputs; serve only passes them on."""
    body = {"inputs": ["plain", {"text": "Who was Galileo ?", "text_pair": "An astronomer ."}], "tasks": ["sentiment"]}
    response = client.post("/predict", json=body)
    if client.get("/info").json()["text_pairs"]:
        assert response.status_code == 200, response.text
        assert_same(response.json()["predictions"], pipe(body["inputs"], tasks=["sentiment"]))
    else:
        assert response.status_code == 422 and response.json()["field"] == "inputs[1]", response.text
    assert client.post("/predict", json={"inputs": ["a" * 101]}).json()["field"] == "inputs[0]"


def test_a_key_given_twice_is_found_in_time_linear_in_the_keys():
    """A 1 MiB body of distinct keys with one given twice at its end took minutes to name it (quadratic), on the
    one thread that parses every request."""
    from conftest import cost_ratio
    from mtnlp.serve import ApiError, parse_request

    def parse(n):
        body = ("{" + ", ".join(f'"k{i}": 1' for i in range(n)) + ', "k0": 2}').encode()
        with pytest.raises(ApiError, match="^k0: given twice in one object$"):
            parse_request(body, {}, Limits())

    assert cost_ratio(parse, 1_000, 16_000) < 100  # linear: about 16 (up to 65 on a loaded machine); quadratic: about 256


def test_a_compressed_body_is_a_415_and_health_answers_head(client):
    response = client.post("/predict", content=b'{"inputs": "a"}',
                           headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 415 and response.json() == {
        "error": "body: Content-Encoding gzip is not taken: send the JSON uncompressed", "field": "body"}
    assert client.post("/predict", content=b'{"inputs": "a"}', headers={"content-encoding": "identity"}).status_code == 200
    for path in ("/health", "/info"):  # load balancers probe with HEAD too
        assert client.head(path).status_code == 200


def test_unknown_path_and_method_are_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    response = client.get("/predict")
    assert response.status_code == 405 and "error" in response.json()
    # /predict/ was an empty 307 redirect; /docs a page whose scripts come from a CDN an offline server cannot reach
    for path in ("/predict/", "/docs", "/redoc", "/openapi.json"):  # (the last was the schema for /docs)
        response = client.post(path, json={"inputs": "a"}, follow_redirects=False) if path == "/predict/" else client.get(path)
        assert response.status_code in (404, 405) and "error" in response.json(), path


def test_concurrent_requests_share_pipeline_calls(pipe):
    """20 clients at once, each with its own texts, tasks and all_scores: every answer is its own, and the
    requests were batched (fewer pipeline calls than requests; the window is long, so this is no race)."""
    app = create_app(pipe, window_ms=500, max_batch=64)
    options = [(None, False), (["sentiment"], True), (["ner", "score"], False), (["pos", "sentiment"], True)]
    requests = []
    for i in range(20):
        tasks, all_scores = options[i % 4]
        inputs = [f"Request {i} text {j} : {TEXTS[(i + j) % 3]}" for j in range(1 + i % 3)]
        requests.append({"inputs": inputs, **({"tasks": tasks} if tasks else {}), "all_scores": all_scores})
    with TestClient(app) as client:
        responses = post_together(client, requests)
        stats = app.state.batcher.stats
        health = client.get("/health").json()
    for body, response in zip(requests, responses):
        assert response is not None and response.status_code == 200, response
        expected = pipe(body["inputs"], tasks=body.get("tasks"), return_all_scores=body["all_scores"])
        assert_same(response.json()["predictions"], expected)
    assert stats.requests == 20 and stats.inputs == sum(len(r["inputs"]) for r in requests)
    assert 1 <= stats.batches < stats.requests, stats
    assert health["batches"] == stats.batches


def post_together(client, bodies: list[dict]) -> list:
    """POST /predict each body from its own thread, all at once (the batcher's window gathers them)."""
    responses, start = [None] * len(bodies), threading.Barrier(len(bodies))

    def send(i):
        start.wait()
        responses[i] = client.post("/predict", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return responses


def test_each_request_is_told_which_of_its_own_inputs_were_truncated(pipe):
    """Two requests share a pipeline call; the long text is the batch's input 3 but its request's input 0."""
    app = create_app(pipe, window_ms=1000, max_batch=64)
    bodies = [{"inputs": TEXTS[:3]}, {"inputs": [" ".join(["word"] * 400), TEXTS[0]]}]
    with TestClient(app) as client:
        responses = post_together(client, bodies)
        assert app.state.batcher.stats.batches == 1
    assert "truncated" not in responses[0].json() and len(responses[0].json()["predictions"]) == 3
    assert responses[1].json()["truncated"] == [0]


class FailingPipeline:
    """Stands in for MultiTaskPipeline: fails on any call that includes the text "boom"."""
    tasks = {"sentiment": TASKS["sentiment"]}
    batch_size, max_length = 32, 32

    class precision:
        @staticmethod
        def as_dict():
            return {"used": "fp32"}

    def __init__(self):
        self.calls = []

    def __call__(self, inputs, tasks=None, return_all_scores=False, strict=None):
        self.calls.append(list(inputs))
        if "boom" in inputs:
            raise ValueError("boom")
        return [{"sentiment": {"label": "positive", "score": len(text) / 100}} for text in inputs]


class SlowPipeline(FailingPipeline):
    """Holds any call that includes the text "slow" until `release` is set."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def __call__(self, inputs, **options):
        if "slow" in inputs:
            self.release.wait(30)
        return super().__call__(inputs, **options)


def test_a_failing_input_fails_only_its_own_request():
    pipe = FailingPipeline()
    app = create_app(pipe, window_ms=2000, max_batch=3)
    bodies = [{"inputs": ["ok"]}, {"inputs": ["boom"]}, {"inputs": ["fine"]}]
    with TestClient(app) as client:
        responses = post_together(client, bodies)
    assert sorted(map(len, pipe.calls))[-1] == 3  # one shared call (it failed), then each request alone
    assert [r.status_code for r in responses] == [200, 500, 200]
    assert responses[0].json() == {"predictions": [{"sentiment": {"label": "positive", "score": 0.02}}]}
    assert responses[2].json()["predictions"][0]["sentiment"]["score"] == 0.04
    assert "error" in responses[1].json()


def test_stopping_answers_every_request_and_a_restarted_batcher_has_an_empty_queue():
    """stop() failed the queued requests but kept counting their inputs as queued: an app started again refused
    requests as busy ("3 inputs wait") on an empty queue; the request in the pipeline's call got no answer."""
    from mtnlp.serve import Batcher, QueueFull

    pipe = SlowPipeline()

    async def run():
        batcher = Batcher(pipe, window_ms=0, max_batch=1, max_queue=4)
        await batcher.start()
        jobs = [asyncio.create_task(batcher.predict([text], ("sentiment",), False)) for text in ("slow", "a", "b", "c")]
        while batcher.queued != 3:  # the first is in the pipeline, three wait
            await asyncio.sleep(0.01)
        threading.Timer(0.2, pipe.release.set).start()  # (stop waits for the pipeline's thread to end its call)
        await batcher.stop()
        await asyncio.wait(jobs, timeout=5)
        said, queued = [str(job.exception()) for job in jobs], batcher.queued
        await batcher.start()  # the app started again
        try:
            return said, queued, await asyncio.wait_for(batcher.predict(["d", "e"], ("sentiment",), False), 10)
        except QueueFull as e:
            return said, queued, e
        finally:
            await batcher.stop()

    said, queued, again = asyncio.run(run())
    assert said == ["the server is shutting down"] * 4 and queued == 0
    assert len(again[0]) == 2, again


def test_stopping_while_a_batch_is_collected_answers_its_requests():
    """The worker cancelled in its collection window (before the pipeline call) left the request taken from the
    queue unanswered."""
    from mtnlp.serve import Batcher

    async def run():
        batcher = Batcher(FailingPipeline(), window_ms=2000, max_batch=8)
        await batcher.start()
        job = asyncio.create_task(batcher.predict(["a"], ("sentiment",), False))
        while batcher.queued:  # taken into the batch; the window is still open
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await batcher.stop()
        await asyncio.wait([job], timeout=5)
        return job

    job = asyncio.run(run())
    assert job.done() and str(job.exception()) == "the server is shutting down"


def test_a_request_whose_client_went_away_is_dropped_from_the_queue():
    """Starlette does not cancel an endpoint whose client disconnected: a request queued behind a slow one
    was computed anyway, and clients that time out and retry piled up work."""
    pipe = SlowPipeline()
    release = pipe.release
    app = create_app(pipe, window_ms=0, max_batch=1)

    async def post(text: str, leave: asyncio.Event) -> int:
        """A raw ASGI POST /predict whose client disconnects once `leave` is set; the response status."""
        call, sent = asgi_post(app, [{"type": "http.request", "body": json.dumps({"inputs": [text]}).encode(),
                                      "more_body": False}], leave)
        await call
        return sent[0]["status"]

    async def main():
        stays, leaves = asyncio.Event(), asyncio.Event()
        slow = asyncio.create_task(post("slow", stays))
        await asyncio.sleep(0.3)  # the slow request holds the one pipeline thread
        gone = asyncio.create_task(post("gone", leaves))
        await asyncio.sleep(0.3)  # queued behind it
        leaves.set()
        assert await asyncio.wait_for(gone, 5) == 499  # answered at once, not after the slow one
        release.set()
        assert await asyncio.wait_for(slow, 30) == 200
        assert await asyncio.wait_for(post("next", stays), 30) == 200
        await app.state.batcher.stop()

    asyncio.run(main())
    assert pipe.calls == [["slow"], ["next"]]  # the request of the client that left was never computed


def test_a_full_queue_is_a_503_with_retry_after_before_the_body_is_read():
    """The queue was unbounded: 400 clients of 1 MiB each held ~1.1 MB apiece (RSS 460 -> 910 MB)."""

    pipe = SlowPipeline()
    release = pipe.release
    app = create_app(pipe, window_ms=0, max_batch=1, limits=Limits(max_inputs=2, max_queue=3))

    async def post(texts: list[str]) -> tuple[dict, bool]:
        """A raw ASGI POST /predict: (its response start, whether its body was read)."""
        messages = [{"type": "http.request", "body": json.dumps({"inputs": texts}).encode(), "more_body": False}]
        call, sent = asgi_post(app, messages)
        await call
        return sent[0], not messages

    async def main():
        slow = asyncio.create_task(post(["slow"]))  # holds the one pipeline thread: not waiting
        await asyncio.sleep(0.3)
        queued = [asyncio.create_task(post(["a", "b"]))]  # 2 of 3 inputs waiting
        await asyncio.sleep(0.1)
        busy, read = await asyncio.wait_for(post(["c", "d"]), 5)  # 4 > 3: refused at once, once parsed
        assert busy["status"] == 503 and (b"retry-after", b"1") in busy["headers"] and read
        queued.append(asyncio.create_task(post(["e"])))  # 3 of 3
        await asyncio.sleep(0.1)
        assert app.state.batcher.queued == 3
        busy, read = await asyncio.wait_for(post(["f"]), 5)  # full: refused before its body is read
        assert busy["status"] == 503 and (b"retry-after", b"1") in busy["headers"] and not read
        release.set()
        for task in (slow, *queued):
            assert (await asyncio.wait_for(task, 30))[0]["status"] == 200
        assert app.state.batcher.queued == 0 and app.state.batcher.stats.refused == 2
        await app.state.batcher.stop()

    asyncio.run(main())
    assert pipe.calls == [["slow"], ["a", "b"], ["e"]]


def test_card_metrics_of_a_folder_without_a_card(tmp_path):
    assert card_metrics(str(tmp_path)) == {}


# ------------------------------------------------------------------ the command


def serve_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mtnlp", *args], capture_output=True, text=True, timeout=timeout,
                          env=serve_env())


def test_serve_process_answers_then_stops_cleanly_on_sigterm(model_dir):
    """A real `mtnlp serve` on a free port: it answers; SIGTERM while a request waits in the batching window
    lets that request finish, then the process exits 0."""
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "serve", str(model_dir), "--port", "0",
                             "--precision", "fp32", "--batch-window-ms", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve_env())
    try:
        first = proc.stdout.readline()  # "serving MODEL on http://127.0.0.1:PORT (...)"
        assert first.startswith("serving "), first + proc.stderr.read() if proc.poll() is not None else first
        url = first.split(" on ")[1].split()[0]
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
        answer = {}

        def slow_request():  # waits 3 s in the batching window: still in flight at SIGTERM
            answer["response"] = httpx.post(f"{url}/predict", json={"inputs": TEXTS[:2], "tasks": ["sentiment"]},
                                            timeout=60)

        sender = threading.Thread(target=slow_request)
        sender.start()
        deadline = time.time() + 30
        while httpx.get(f"{url}/health", timeout=30).json()["requests"] < 1 and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        sender.join(timeout=60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out
    response = answer["response"]
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    assert set(response.json()["predictions"][0]) == {"sentiment"}


def test_unloadable_model_is_one_error_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    proc = run_cli("serve", str(tmp_path), "--port", "0")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: {tmp_path / 'config.json'}: cannot read: Expecting property name " \
        "enclosed in double quotes: line 1 column 2 (char 1)", lines
    assert cli_main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: model folder not found\n"


HEAVY = ("torch", "transformers", "datasets", "accelerate", "peft", "evaluate")


def run_without_heavy_imports(*argv):
    code = ("import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in HEAVY)
            + f"from mtnlp.cli import main\nsys.exit(main({list(argv)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_option_mistakes_and_busy_port_need_no_heavy_import(model_dir):
    proc = run_without_heavy_imports("serve", "--help")
    assert proc.returncode == 0 and "--batch-window-ms" in proc.stdout, proc.stderr
    proc = run_without_heavy_imports("serve", str(model_dir), "--max-batch", "0")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --max-batch: must be at least 1"), proc.stderr
    proc = run_without_heavy_imports("serve", str(model_dir), "--max-queue", "100")  # a full request never fits
    assert proc.returncode == 2 and proc.stderr == "error: --max-queue: must be at least --max-inputs (256; got 100)\n"
    from types import SimpleNamespace

    from mtnlp.serve import check_args

    args = SimpleNamespace(max_batch=64, batch_size=32, max_body_bytes=1 << 20, max_inputs=2000, max_chars=10_000,
                           max_queue=None, batch_window_ms=5, port=0)
    check_args(args)  # a larger --max-inputs alone: the queue grows with it
    assert args.max_queue == 8000
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_without_heavy_imports("serve", str(model_dir), "--port", str(port))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), proc.stderr


OWN_TASKS = {"mc": {"type": "multiple_choice", "labels": [], "dropout": 0.1},
             "qa": {"type": "extractive_qa", "labels": [], "dropout": 0.1, "doc_stride": 8, "max_answer_length": 10,
                    "allow_unanswerable": False},
             "sentiment": TASKS["sentiment"]}
OWN_INPUTS = [{"text": "The sky on a clear day is", "choices": ["blue", "loud", "salty"]},
              {"question": "Where did Ann fly ?", "context": "Ann Lee flew to Paris on a sunny day in June ."},
              "a plain text for the sentiment head"]


@pytest.fixture(scope="module")
def own_model_dir(tmp_path_factory, tiny_encoder):
    return save_model(tmp_path_factory.mktemp("own-model"), tiny_encoder, OWN_TASKS)


def test_choice_and_question_inputs_are_served_as_the_cli_predicts_them(own_model_dir, tmp_path):
    pipe = MultiTaskPipeline.from_pretrained(str(own_model_dir), precision="fp32")
    with TestClient(create_app(pipe, limits=Limits(max_chars=50, max_inputs=64))) as client:
        for body, options in (({"inputs": OWN_INPUTS}, []), ({"inputs": OWN_INPUTS, "all_scores": True}, ["--all-scores"])):
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text
            assert_same(response.json(), {"predictions": cli_predictions(own_model_dir, tmp_path, OWN_INPUTS, *options)})
        for body, field, fragment in (
            ({"inputs": [{"text": "x", "choices": ["only one"]}]}, "inputs[0].choices", "at least 2 choices"),
            ({"inputs": [{"text": "x", "choices": ["a", ""]}]}, "inputs[0].choices[1]", "choice 1 must be a non-empty"),
            ({"inputs": [{"text": " ", "choices": ["a", "b"]}]}, "inputs[0].text", '"text" (the context) must be'),
            # nothing is echoed: a misspelt optional field would be lost without a word
            ({"inputs": [{**OWN_INPUTS[0], "qustion": "What?"}]}, "inputs[0].qustion",
             "unknown field (expected: text, choices, question)"),
            ({"inputs": [{**OWN_INPUTS[1], "doc_stride": 4}]}, "inputs[0].doc_stride",
             "unknown field (expected: question, context)"),
            ({"inputs": [{"question": "", "context": "c"}]}, "inputs[0].question", '"question" must be a non-empty string'),
            ({"inputs": [{"question": "q", "context": 3}]}, "inputs[0].context", '"context" must be a non-empty string'),
            ({"inputs": [{"text": "x", "choices": ["a", "b" * 51]}]}, "inputs[0].choices", "more than the limit of 50"),
            ({"inputs": [OWN_INPUTS[0]], "tasks": ["sentiment"]}, "inputs[0]", "an input of the multiple_choice type, but no requested task reads it (sentiment reads texts)"),
            ({"inputs": ["plain"], "tasks": ["qa"]}, "inputs[0]",  # no requested head reads a text: not a 500
             "a text, but no requested task reads it (qa reads {question, context})"),
            ({"inputs": [OWN_INPUTS[1], {"text": "a", "text_pair": "b"}], "tasks": ["qa"]}, "inputs[1]",
             "a text pair, but no requested task reads it (qa reads {question, context})"),
            ({"inputs": [OWN_INPUTS[1]], "tasks": ["qa", "mc"]}, "inputs[0]",  # a head named is never left out
             "an input of the extractive_qa type, but a requested task does not read it (mc reads {text, choices, question?})"),
            # each choice is a sequence the encoder reads: 100,000 choices (under 1 MiB) held every client 12 s
            ({"inputs": [{"text": "x", "choices": [f"c{i}" for i in range(200)]}, "a text"]}, "inputs",
             "201 inputs, counting each choice of a multiple-choice input, more than the limit of 64"),
        ):
            response = client.post("/predict", json=body)
            assert response.status_code == 422 and response.json()["field"] == field, response.text
            assert fragment in response.json()["error"], response.text


def test_max_inputs_counts_each_window_of_a_qa_inputs_context(own_model_dir):
    """The encoder reads a long context in windows, each a sequence: 10 contexts of 9,990 characters (55 windows
    each at max_length 64) were accepted as 10 inputs and held every other request for 23 s."""
    from mtnlp.tasks.extractive_qa import windows

    pipe = MultiTaskPipeline.from_pretrained(str(own_model_dir), precision="fp32")
    long = {"question": "Where did Ann fly ?", "context": "Ann Lee flew to Paris on a sunny day in June . " * 8}
    enc, _ = windows(pipe.tokenizer, [long["question"]], [long["context"]], pipe.max_length, 8)  # the qa head's stride
    made = len(enc["input_ids"])
    assert 5 < made <= 10
    with TestClient(create_app(pipe, limits=Limits(max_inputs=10))) as client:
        response = client.post("/predict", json={"inputs": [long]})
        assert response.status_code == 200 and response.json()["predictions"][0]["qa"]["answer"], response.text
        response = client.post("/predict", json={"inputs": [long, long, "a text"]})
        assert response.status_code == 422 and response.json() == {
            "error": f"inputs: {2 * made + 1} inputs, counting each window of a QA input's context, more than the "
                     "limit of 10", "field": "inputs"}
        both = [{"text": "x", "choices": ["a", "b", "c", "d", "e"]}, long]
        response = client.post("/predict", json={"inputs": both})
        assert response.status_code == 422 and response.json()["error"] == (
            f"inputs: {5 + made} inputs, counting each choice of a multiple-choice input and each window of a QA "
            "input's context, more than the limit of 10")


@contextlib.contextmanager
def serving(*args: str, env: dict | None = None, cwd=None):
    """A real `mtnlp serve ARGS --port 0`: yields (its start-up line, its URL), then SIGTERM; the process
    must have exited with status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "mtnlp", "serve", *args, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or serve_env(), cwd=cwd)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving "), first + (proc.stderr.read() if proc.poll() is not None else "")
        yield first, first.split(" on ")[1].split()[0]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_a_model_whose_heads_read_no_texts_is_served(own_model_dir):
    """The warm-up call must send inputs the served heads read (a text would be refused by mc and qa)."""
    with serving(str(own_model_dir), "--tasks", "mc,qa", "--precision", "fp32") as (_, url):
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert info["text_pairs"] is False  # no served head reads a pair
        assert {t: v["reads"] for t, v in info["tasks"].items()} == {"mc": "{text, choices, question?}", "qa": "{question, context}"}
        response = httpx.post(f"{url}/predict", json={"inputs": OWN_INPUTS[:2]}, timeout=60)
        assert response.status_code == 200 and [set(p) for p in response.json()["predictions"]] == [{"mc"}, {"qa"}]


def test_a_client_gone_mid_body_and_a_shutdown_that_runs_out_get_answers_not_tracebacks():
    """A body cut short by its client logged a ClientDisconnect traceback; a request still waiting when uvicorn's
    graceful shutdown (60 s) ran out got a plain-text 500 and a CancelledError traceback."""

    release = threading.Event()

    class Slow(FailingPipeline):
        def __call__(self, inputs, **options):
            release.wait(30)
            return super().__call__(inputs, **options)

    app = create_app(Slow(), window_ms=0, max_batch=1)

    async def main():
        cut, sent = asgi_post(app, [{"type": "http.request", "body": b'{"inputs": [', "more_body": True},
                             {"type": "http.disconnect"}])
        await asyncio.wait_for(cut, 5)  # no exception out of the app
        assert sent[0]["status"] == 499
        waiting, sent = asgi_post(app, [{"type": "http.request", "body": b'{"inputs": ["a"]}', "more_body": False}])
        task = asyncio.create_task(waiting)
        await asyncio.sleep(0.3)
        task.cancel()  # as uvicorn does when the graceful shutdown's time is up
        await asyncio.wait_for(task, 5)
        assert sent[0]["status"] == 503 and b"shutting down" in sent[1]["body"]
        release.set()
        await app.state.batcher.stop()

    asyncio.run(main())


def test_an_app_started_again_still_answers(pipe):
    """The request-parsing thread pool was made with the app and shut down when it stopped: a second start (a second
    TestClient on one app) answered every /predict with 500."""
    app = create_app(pipe, model_name="tiny")
    for _ in range(2):
        with TestClient(app) as client:
            response = client.post("/predict", json={"inputs": ["a fine film"]})
            assert response.status_code == 200, response.text


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_truncated_indices_are_the_requests_own_whatever_its_place_in_the_batch(pipe):
    """The short request is queued first, so the long text is the batch's input 3 and its request's input 0."""
    app = create_app(pipe, window_ms=2000, max_batch=64)
    out = [None, None]
    with TestClient(app) as client:
        first = threading.Thread(target=lambda: out.__setitem__(0, client.post("/predict", json={"inputs": TEXTS[:3]})))
        first.start()
        while app.state.batcher.stats.requests == 0:
            time.sleep(0.005)
        out[1] = client.post("/predict", json={"inputs": [" ".join(["word"] * 400), TEXTS[0]]})
        first.join()
        assert app.state.batcher.stats.batches == 1
    assert "truncated" not in out[0].json() and out[1].json()["truncated"] == [0]


def test_a_request_that_does_not_fit_the_batch_is_answered_in_the_next():
    from mtnlp.serve import Batcher

    pipe = FailingPipeline()

    async def run():
        batcher = Batcher(pipe, window_ms=300, max_batch=3)
        await batcher.start()
        try:  # 2 + 2 inputs > max_batch 3: the second request waits for the next call
            return await asyncio.wait_for(asyncio.gather(batcher.predict(["text 0", "more 0"], ("sentiment",), False),
                                                         batcher.predict(["text 1", "more 1"], ("sentiment",), False)), 10)
        finally:
            await batcher.stop()

    first, second = asyncio.run(run())
    assert len(first[0]) == len(second[0]) == 2 and sorted(map(len, pipe.calls)) == [2, 2]


def test_a_request_without_all_scores_gets_no_qa_candidates_from_a_batch_that_asked_for_them(own_model_dir):
    """A batch asks the pipeline for every score when one of its requests does: a QA request without all_scores
    that shared it got the `candidates` too, its answer's shape set by another client's request."""
    from mtnlp.serve import Batcher

    pipe = MultiTaskPipeline.from_pretrained(str(own_model_dir), precision="fp32")
    question = OWN_INPUTS[1]

    async def run():
        batcher = Batcher(pipe, window_ms=300, max_batch=64)
        await batcher.start()
        try:
            asked, plain = await asyncio.wait_for(asyncio.gather(batcher.predict([question], ("qa",), True),
                                                                 batcher.predict([question], ("qa",), False)), 60)
            return asked, plain, batcher.stats.batches
        finally:
            await batcher.stop()

    (asked, _), (plain, _), batches = asyncio.run(run())
    assert batches == 1  # one pipeline call, with return_all_scores
    assert "candidates" in asked[0]["qa"]
    assert_same(plain, pipe([question], tasks=["qa"]))
    assert set(plain[0]["qa"]) == {"answer", "start", "end", "score"}


# ---------------------------------------------------------------- pinned by mutation testing (mutation10 survivors)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_the_byte_limit_is_read_and_one_byte_more_refused(client, chunked):
    """`max_body_bytes` is the most a body may hold, whether its Content-Length says its size or it comes in
    chunks: one of exactly that size was refused with 413 (V12), one a byte over it read when chunked (V13)."""
    for size, status in ((4000, 200), (4001, 413)):
        body = b'{"inputs": ["a fine film"]}'
        body += b" " * (size - len(body))  # (whitespace is JSON's own padding)
        content = body if not chunked else (body[i:i + 1000] for i in range(0, len(body), 1000))
        response = client.post("/predict", content=content, headers={"content-type": "application/json"})
        assert response.status_code == status, (size, response.text)


def test_a_text_of_exactly_max_chars_is_read(client):
    """`max_chars` is the most characters a text may have: a text of exactly that many was refused."""
    response = client.post("/predict", json={"inputs": ["y" * 100, {"words": ["y" * 49, "y" * 50]}]})
    assert response.status_code == 200, response.text


def test_a_request_that_waited_through_the_last_call_is_batched_at_once():
    """The batch window runs from the first request's arrival: one that waited through a slow pipeline call had
    waited long enough, yet it was held a whole window more after the call (V03)."""
    from mtnlp.serve import Batcher

    pipe = SlowPipeline()

    async def run():
        batcher = Batcher(pipe, window_ms=1500, max_batch=64)
        await batcher.start()
        try:
            slow = asyncio.create_task(batcher.predict(["slow"], ("sentiment",), False))
            while batcher.stats.batches == 0:  # until "slow" is in the pipeline call (after its own window)
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(batcher.predict(["a"], ("sentiment",), False))
            await asyncio.sleep(1.8)  # "a" has waited longer than the window
            pipe.release.set()
            released = asyncio.get_running_loop().time()
            await asyncio.wait_for(asyncio.gather(slow, waiting), 10)
            return asyncio.get_running_loop().time() - released
        finally:
            await batcher.stop()

    assert asyncio.run(run()) < 1.0  # at once, not a window (1.5 s) later: a margin for a loaded machine
    assert pipe.calls == [["slow"], ["a"]]


@pytest.mark.parametrize("window", [-1.0, math.nan, 10_001.0])
def test_a_batch_window_outside_0_to_10000_ms_is_refused(window):
    """Only a window over 10 s was refused: a negative one and nan (taken as 0) were served with (V23)."""
    from types import SimpleNamespace

    from mtnlp.errors import UserError
    from mtnlp.serve import check_args

    args = SimpleNamespace(max_batch=64, batch_size=32, max_body_bytes=1 << 20, max_inputs=256, max_chars=10_000,
                           max_queue=None, batch_window_ms=window, port=0)
    with pytest.raises(UserError, match=r"^--batch-window-ms: must be from 0 to 10000 \(got "):
        check_args(args)


@pytest.mark.parametrize("body,field,said", [
    (b'{"": null, "": null}', "", '"": given twice in one object'),
    ('{"\ufeffinputs": ["x"]}'.encode(), "\ufeffinputs", "\\ufeffinputs: unknown field (expected: inputs, tasks, all_scores)"),
    ('{"inputs": ["x"], "in\u200bputs": 1}'.encode(), "in\u200bputs", "in\\u200bputs: unknown field (expected: inputs, "
                                                                      "tasks, all_scores)")])
def test_a_request_key_that_does_not_show_is_named_escaped(body, field, said):
    """A key with a pasted BOM or zero-width space read "inputs: unknown field (expected: inputs, ...)", and an empty
    key ": given twice" (props2 walk): the message escapes what does not show, as recipe errors do; `field` is the key."""
    from mtnlp.serve import ApiError, parse_request

    with pytest.raises(ApiError) as raised:
        parse_request(body, {"sentiment": {"type": "classification", "labels": ["a", "b"]}}, Limits())
    assert raised.value.field == field and str(raised.value) == said
