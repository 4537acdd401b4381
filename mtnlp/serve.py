"""`mtnlp serve`: a model's heads behind HTTP (FastAPI on uvicorn).

    POST /predict  {"inputs": "text" | {...} | ["text", ...] | [{"text": ..., "text_pair": ...}, ...],
                    "tasks": [...] (optional), "all_scores": false}; an input may also be of a served
                   head's own form: {"text": ..., "choices": [...]} (multiple choice),
                   {"question": ..., "context": ...} (extractive QA)
                   -> {"predictions": [...]}: per input, what `mtnlp predict` prints as its "predictions";
                   and "truncated": [i, ...], the request's inputs longer than max_length, when there are any
    GET  /health   -> {"status": "ok", "requests": ..., "inputs": ..., "batches": ..., "queued": ..., "refused": ...}
    GET  /info     -> the tasks (type, labels, the model card's metrics), precision, limits, batching

Concurrent requests share encoder passes: one worker collects queued requests for a short window
(from the first one's arrival) up to a maximum number of inputs, runs ONE pipeline call on the
union of their inputs (in a thread, so the event loop keeps accepting), and answers each request
with its own slice. The call computes the union of the requested tasks, with every label's score if
any request asked for them; each answer keeps only its own tasks (in its order) and drops `scores`
unless it asked. So a batch never splits into several encoder passes by request options, and no
head runs that no request asked for.

A bad request is a 4xx JSON error {"error": "FIELD: what is wrong", "field": "FIELD"}. At most `max_queue`
inputs wait for the worker: a request that would take the queue past it is a 503 with Retry-After, before its
body is read when the queue is full, before it is queued otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .errors import UserError
from .readers import finite_float, json_error, not_json
from .tasks import task_type
from .tasks.base import (LONE_SURROGATE, answering_tasks, example_input, reads, reads_text, text_input_problem,
                         valid_unicode)

log = logging.getLogger("uvicorn.error")  # uvicorn configures it: its lines show at --log-level info
REQUEST_KEYS = ("inputs", "tasks", "all_scores")
ALL_SCORES_KEYS = ("scores", "candidates")  # what all_scores adds to a prediction (QA: the best candidates)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20  # 413 above
    max_inputs: int = 256  # texts in one request
    max_chars: int = 10_000  # characters in one text (each of a pair)
    max_queue: int = 1024  # inputs waiting for the pipeline; 503 above


class QueueFull(Exception):
    """The inputs waiting for the pipeline, with a request's, would be more than the limit: 503, retry later."""


class ApiError(Exception):
    """A bad request: HTTP `status`, the request `field` at fault and what is wrong with it."""

    def __init__(self, status: int, field: str, message: str):
        from .readers import Row

        # a key of the request as it reads: the characters that do not show (a BOM, a zero-width space) escaped
        super().__init__(f"{Row.printable(field) if field else EMPTY_KEY}: {message}")
        self.status, self.field = status, field


EMPTY_KEY = '""'  # how the message names a key that is the empty string


# ------------------------------------------------------------------ batching


@dataclass
class Job:
    inputs: list
    tasks: tuple[str, ...]
    all_scores: bool
    future: asyncio.Future
    arrived: float


@dataclass
class Stats:
    requests: int = 0
    inputs: int = 0
    batches: int = 0  # pipeline calls
    largest_batch: int = 0  # inputs in the largest call
    refused: int = 0  # requests answered 503 as the queue was full


def fail(job: Job, why: str) -> None:
    """Answer a job's request with an error (a 503 or 500), unless it is answered or its client went away."""
    if not job.future.done():
        job.future.set_exception(RuntimeError(why))


class Batcher:
    """One worker task: queued requests -> one pipeline call per collected batch -> each request's slice."""

    def __init__(self, pipe, window_ms: float = 5.0, max_batch: int = 64, max_queue: int = 1024):
        self.pipe, self.window, self.max_batch, self.max_queue = pipe, window_ms / 1000, max_batch, max_queue
        self.stats = Stats()
        self.queued = 0  # inputs of the requests in the queue (a parsed request holds ~4 bytes a character)
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtnlp-pipeline")
        self._worker = asyncio.create_task(self._run(), name="mtnlp-batcher")

    async def stop(self) -> None:
        """After uvicorn has answered the requests in flight: end the worker, fail anything still queued."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            self.queued -= len(job.inputs)  # (an app started again must not count them as waiting)
            fail(job, "the server is shutting down")
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def check_room(self, inputs: int = 1) -> None:
        """QueueFull unless `inputs` more fit into the queue."""
        if self.queued + inputs > self.max_queue:
            self.stats.refused += 1
            raise QueueFull(f"the server is busy: {self.queued} inputs wait for the model (at most {self.max_queue} "
                            f"may); retry later")

    async def predict(self, inputs: list, tasks: tuple[str, ...], all_scores: bool) -> tuple[list[dict], list[int]]:
        """The inputs' predictions, and which of them were truncated; QueueFull if they do not fit."""
        if self._worker is None:  # an ASGI server or client that skips the lifespan events
            await self.start()
        self.check_room(len(inputs))
        loop = asyncio.get_running_loop()
        job = Job(inputs, tasks, all_scores, loop.create_future(), loop.time())
        self.stats.requests += 1
        self.stats.inputs += len(inputs)
        self._queue.put_nowait(job)
        self.queued += len(inputs)
        return await job.future

    async def _next(self, wait: float | None) -> Job:
        """The next queued job (waiting up to `wait` seconds; None: as long as it takes, 0: only one queued)."""
        if wait is None:
            job = await self._queue.get()
        else:
            job = self._queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self._queue.get(), wait)
        self.queued -= len(job.inputs)
        return job

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        held: Job | None = None  # a request that did not fit into the previous batch
        batch: list[Job] = []
        try:
            while True:
                first = held or await self._next(None)
                held = None
                if first.future.done():  # its client went away
                    continue
                batch, size = [first], len(first.inputs)
                deadline = first.arrived + self.window  # requests queued during the last call are taken at once
                while size < self.max_batch:
                    wait = deadline - loop.time()
                    try:
                        job = await self._next(wait)
                    except (asyncio.QueueEmpty, asyncio.TimeoutError):
                        break
                    if job.future.done():
                        continue
                    if size + len(job.inputs) > self.max_batch:
                        held = job
                        break
                    batch.append(job)
                    size += len(job.inputs)
                try:
                    await self._answer(batch)
                except Exception:  # a bug here must not stop the worker: every later request would hang
                    log.exception("batch failed")
                    for job in batch:
                        fail(job, "prediction failed (see the server log)")
                batch = []
        except asyncio.CancelledError:  # stop() while a batch is collected or computed: its requests (and one held
            for job in [*batch, *([held] if held else [])]:  # back) get an answer
                fail(job, "the server is shutting down")
            raise

    async def _answer(self, batch: list[Job]) -> None:
        try:
            results, warned = await self._call([x for job in batch for x in job.inputs], batch)
        except Exception:
            if len(batch) == 1:
                log.exception("prediction failed")
                fail(batch[0], "prediction failed (see the server log)")
                return
            for job in batch:  # one request's input must not fail the others: each alone
                await self._answer([job])
            return
        cut = [i for warning in warned for i in warning.indices]
        start = 0
        for job in batch:
            mine = results[start:start + len(job.inputs)]
            truncated = [i - start for i in cut if start <= i < start + len(job.inputs)]  # its own indices
            start += len(job.inputs)
            if not job.future.done():
                job.future.set_result(([self._select(r, job) for r in mine], truncated))

    async def _call(self, inputs: list, batch: list[Job]) -> tuple[list[dict], list]:
        """The batch's predictions, and its TruncationWarnings (each request is told its own inputs that were
        cut; the warning would name them by their place in the batch, in the server's log)."""
        from .pipeline import truncations  # not at import: `mtnlp serve` says option mistakes without torch

        wanted = {t for job in batch for t in job.tasks}
        tasks = [t for t in self.pipe.tasks if t in wanted]  # the union, in the model's order
        all_scores = any(job.all_scores for job in batch)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(inputs))
        # not strict: each request was checked against its own tasks (parse_request), and these are their union;
        # truncations records warnings process-wide, which is safe as only the one pipeline thread runs it
        call = functools.partial(self.pipe, inputs, tasks=tasks, return_all_scores=all_scores, strict=False)
        return await asyncio.get_running_loop().run_in_executor(self._executor, truncations, call)

    def _select(self, result: dict, job: Job) -> dict:
        """A request's own predictions from a batch's: its tasks in its order, `scores` only if it asked."""
        out = {}
        for task in job.tasks:
            if task not in result:  # an input of another head's own form (e.g. a question for a QA head)
                continue
            prediction = result[task]
            if not job.all_scores and isinstance(prediction, dict):  # every label's score: only when asked
                prediction = {k: v for k, v in prediction.items() if k not in ALL_SCORES_KEYS}
            out[task] = prediction
        return out


# ------------------------------------------------------------------ requests


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed `limit` bytes (by Content-Length or while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body", f"{int(declared)} bytes, more than the limit of {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body", f"more than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # it went away before its body was whole: nobody to answer (a flaky network)
        raise ApiError(499, "body", "the client went away before its body was whole") from None
    return b"".join(chunks)


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects: after the body, the server's next ASGI message is the disconnect
    (Starlette does not cancel an endpoint whose client went away)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def unique_keys(pairs: list) -> dict:
    """An object of a request, each key given once (json keeps the last of a key given twice, silently)."""
    given = {}
    for key, value in pairs:
        if key in given:
            raise ApiError(422, key, "given twice in one object")
        given[key] = value
    return given


def parse_request(body: bytes, served: dict, limits: Limits, windows=None) -> tuple[list, tuple, bool]:
    """(inputs, tasks, all_scores) of a /predict body, or an ApiError naming the field at fault.
    `served`: the served tasks' config entries, by name; `windows(inputs, specs)`: how many windows QA inputs
    make for the QA heads `specs` (qa_windows; None: one each)."""
    try:
        # strict: NaN and Infinity are not JSON (json reads them), nor a key twice in one object, nor 1e400
        payload = json.loads(body, parse_constant=not_json, object_pairs_hook=unique_keys, parse_float=finite_float)
    except (ValueError, RecursionError) as e:  # ValueError: also bad UTF-8 and an int of over 4,300 digits
        raise ApiError(400, "body", f"invalid JSON ({json_error(e)})") from None
    if not isinstance(payload, dict):
        raise ApiError(422, "body", 'expected a JSON object such as {"inputs": ["some text"]}')
    for key in payload:
        if key not in REQUEST_KEYS:
            raise ApiError(422, key, f"unknown field (expected: {', '.join(REQUEST_KEYS)})")
    if "inputs" not in payload:
        raise ApiError(422, "inputs", "missing")
    inputs = payload["inputs"]
    inputs = [inputs] if isinstance(inputs, (str, dict)) else inputs  # one text or object: one input
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(422, "inputs", "expected a text, an object or a non-empty list of those")
    if len(inputs) > limits.max_inputs:
        raise ApiError(422, "inputs", f"{len(inputs)} inputs, more than the limit of {limits.max_inputs}")

    tasks = payload.get("tasks")
    named = tasks is not None  # then each must answer every input
    if tasks is None:
        tasks = tuple(served)
    else:
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise ApiError(422, "tasks", "expected a non-empty list of task names (omit it for every task)")
        unknown = [t for t in tasks if t not in served]
        if unknown:
            raise ApiError(422, "tasks", f"no served task {unknown[0]!r} (this server serves: {', '.join(served)})")
        tasks = tuple(dict.fromkeys(tasks))
    all_scores = payload.get("all_scores", False)
    if not isinstance(all_scores, bool):
        raise ApiError(422, "all_scores", "expected true or false")
    asked = {t: served[t] for t in tasks}
    types = [{asked[t]["type"] for t in check_input(item, f"inputs[{i}]", limits, asked, named)}
             for i, item in enumerate(inputs)]
    # the encoder reads one sequence per choice of a multiple-choice input and per window of a QA input's
    # context: each counts as an input
    questions = [item for item, kinds in zip(inputs, types) if "extractive_qa" in kinds]
    sequences = sum(len(item["choices"]) if "multiple_choice" in kinds else 1
                    for item, kinds in zip(inputs, types) if "extractive_qa" not in kinds)
    if questions:
        specs = [spec for spec in asked.values() if spec["type"] == "extractive_qa"]
        sequences += windows(questions, specs) if windows else len(questions)
    if sequences > limits.max_inputs:
        counted = [what for what, kind in (("each choice of a multiple-choice input", "multiple_choice"),
                                           ("each window of a QA input's context", "extractive_qa"))
                   if any(kind in kinds for kinds in types)]
        raise ApiError(422, "inputs", f"{sequences} inputs, counting {' and '.join(counted)}, more than the limit of "
                                      f"{limits.max_inputs}")
    return inputs, tasks, all_scores


def qa_windows(tokenizer, max_length: int, inputs: list[dict], specs: list[dict]) -> int:
    """How many windows QA `inputs` make, as the pipeline reads them (with the largest doc_stride of the QA heads
    `specs`): a context far longer than max_length is many sequences for the encoder."""
    from .tasks.extractive_qa import span_settings, windows

    stride = max(span_settings(spec, max_length)[0] for spec in specs)
    enc, _ = windows(tokenizer, [item["question"] for item in inputs], [item["context"] for item in inputs],
                     max_length, stride)
    return len(enc["input_ids"])


def check_input(item, name: str, limits: Limits, asked: dict, named: bool) -> list[str]:
    """A text, a pair, or an input of a requested task's own form (`asked`: the requested tasks' config
    entries, by name; `named`: the request named them, so each must read it), within the limits: the tasks
    that read it."""
    if not valid_unicode(item):
        raise ApiError(422, name, LONE_SURROGATE)
    if not isinstance(item, (str, dict)):
        raise ApiError(422, name, 'expected a text or an object {"text": ..., "text_pair": ...}')
    try:
        takers = answering_tasks(item, asked, every=named)
    except ValueError as e:  # (an InputError names the field within the input)
        raise ApiError(422, name + getattr(e, "field", ""), str(e)) from None
    kind = task_type(asked[takers[0]]["type"])
    own = kind.input_fields
    if not own and (problem := text_input_problem(item)):
        raise ApiError(422, f"{name}{problem[0]}", problem[1])
    if own and (unknown := [key for key in item if key not in own + kind.optional_fields]):  # (nothing is echoed:
        # a misspelt optional field would be lost without a word)
        raise ApiError(422, f"{name}.{unknown[0]}", f"unknown field (expected: {', '.join(own + kind.optional_fields)})")
    for key, value in ({"": item} if isinstance(item, str) else item).items():
        if key == "words" and not own:  # one text, split: its words and the spaces between them
            value = " ".join(value)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and len(text) > limits.max_chars:
                raise ApiError(422, f"{name}.{key}" if key else name,
                               f"{len(text)} characters, more than the limit of {limits.max_chars}")
    return takers


# ------------------------------------------------------------------ the application


def card_metrics(model: str, revision: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {split: {metric: value}}} from the model card's table (README.md, as hub.model_card writes it)."""
    from .hub import read_card, table_metrics

    return table_metrics(read_card(model, revision) or "")


def request_parser() -> ThreadPoolExecutor:
    """The thread requests are parsed in (a QA input's windows are counted by tokenising it, with a copy of the
    tokenizer: the pipeline's holds its lock for a whole call), off the event loop."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtnlp-requests")


def create_app(pipe, *, tasks: list[str] | None = None, limits: Limits = Limits(), window_ms: float = 5.0,
               max_batch: int = 64, model_name: str = "", metrics: dict | None = None,
               revision: str | None = None, commit: str | None = None) -> FastAPI:
    """The FastAPI app serving `pipe` (a MultiTaskPipeline). `tasks`: the heads served (default: all);
    `revision` and `commit`: of a hub id, what was asked for and what was loaded. app.state.batcher.stats
    counts requests and pipeline calls."""
    served = {t: pipe.tasks[t] for t in tasks or pipe.tasks}
    batcher = Batcher(pipe, window_ms=window_ms, max_batch=max_batch, max_queue=limits.max_queue)
    windows = None
    if any(spec["type"] == "extractive_qa" for spec in served.values()):
        windows = functools.partial(qa_windows, copy.deepcopy(pipe.tokenizer), pipe.max_length)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.parser = request_parser()  # one per start (an app started again)
        await batcher.start()
        yield
        await batcher.stop()
        app.state.parser.shutdown(wait=True)

    # no /docs (its page loads from a CDN, which an offline server cannot reach), so no /openapi.json for it
    # either (/info says what the server serves), and no redirect of /predict/
    app = FastAPI(title="mtnlp", summary=f"{model_name}: {', '.join(served)}", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.batcher = batcher
    app.state.parser = request_parser()  # (an ASGI server that sends no lifespan events uses this one)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        def shown(text: str) -> str:  # a lone surrogate of the request (a key) cannot be encoded: written \\ud800
            return text.encode("utf-8", "backslashreplace").decode("utf-8")

        return JSONResponse({"error": shown(str(e)), "field": shown(e.field)}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):  # 404, 405 ...: the same JSON shape
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(QueueFull)
    async def queue_full(request, e: QueueFull):  # (uvicorn reads and drops a body left unread)
        return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "1"})

    @app.post("/predict")
    async def predict(request: Request):
        batcher.check_room()  # a full queue: not even the body is read
        if (coding := request.headers.get("content-encoding", "identity").strip().lower()) not in ("identity", ""):
            raise ApiError(415, "body", f"Content-Encoding {coding} is not taken: send the JSON uncompressed")
        body = await read_body(request, limits.max_body_bytes)
        inputs, request_tasks, all_scores = await asyncio.get_running_loop().run_in_executor(
            request.app.state.parser, parse_request, body, served, limits, windows)
        answer = asyncio.create_task(batcher.predict(inputs, request_tasks, all_scores))
        gone = asyncio.create_task(client_gone(request))
        try:
            await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the graceful shutdown's time ran out while this request waited
            answer.cancel()
            return JSONResponse({"error": "the server is shutting down: its time for requests in flight ran out"},
                                status_code=503)
        finally:  # also when this endpoint is cancelled (shutdown, a timeout)
            gone.cancel()
            left = not answer.done()
            if left:  # the client went away: its request is dropped from the queue, not computed
                answer.cancel()
        if left:  # (uvicorn neither sends nor logs a response to a closed connection)
            log.info("%s - request dropped: the client went away (499)", getattr(request.client, "host", "-"))
            return JSONResponse({"error": "the client went away"}, status_code=499)
        try:
            predictions, truncated = answer.result()
        except RuntimeError as e:
            return JSONResponse({"error": str(e)}, status_code=500)
        return JSONResponse({"predictions": predictions, **({"truncated": truncated} if truncated else {})})

    @app.api_route("/health", methods=["GET", "HEAD"])  # (load balancers probe with either)
    async def health():
        s = batcher.stats
        return {"status": "ok", "requests": s.requests, "inputs": s.inputs, "batches": s.batches,
                "queued": batcher.queued, "refused": s.refused}

    info = {
        "model": model_name,
        "revision": revision,
        "commit": commit,
        "tasks": {name: {"type": spec["type"], "labels": spec["labels"], "reads": reads(spec),
                         **task_type(spec["type"]).decision(spec), "metrics": (metrics or {}).get(name, {})}
                  for name, spec in served.items()},
        "text_pairs": any(reads_text(spec, pair=True) for spec in served.values()),
        "precision": pipe.precision.as_dict(),
        "max_length": pipe.max_length,
        "limits": {"max_body_bytes": limits.max_body_bytes, "max_inputs": limits.max_inputs,
                   "max_chars": limits.max_chars, "max_queue": limits.max_queue},
        "batching": {"window_ms": window_ms, "max_batch": max_batch, "pipeline_batch_size": pipe.batch_size},
    }

    @app.api_route("/info", methods=["GET", "HEAD"])
    async def get_info():
        return info

    return app


# ------------------------------------------------------------------ the command


def check_args(args) -> None:
    """Option mistakes, before anything heavy is imported."""
    for name in ("max_batch", "batch_size", "max_body_bytes", "max_inputs", "max_chars"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be at least 1 (got {getattr(args, name)})")
    if args.max_queue is None:
        args.max_queue = 4 * args.max_inputs
    if args.max_queue < args.max_inputs:  # a request of --max-inputs inputs would never fit
        raise UserError(f"--max-queue: must be at least --max-inputs ({args.max_inputs}; got {args.max_queue})")
    if not 0 <= args.batch_window_ms <= 10_000:  # inf held every request, nan was taken as 0
        raise UserError(f"--batch-window-ms: must be from 0 to 10000 (got {args.batch_window_ms})")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port: {args.port} is not a port number (0 picks a free one)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the model loads: a port in use is reported at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def run(args) -> int:
    """`mtnlp serve MODEL ...`: load the model, then serve until SIGTERM or Ctrl-C (exit 0 on SIGTERM)."""
    check_args(args)
    with contextlib.closing(bind(args.host, args.port)) as sock:
        return serve(args, sock)


def serve(args, sock: socket.socket) -> int:
    from .cli import load_model, quiet_libraries, requested_tasks
    from .hub import loaded_commit

    quiet_libraries(with_datasets=False)
    from .pipeline import MultiTaskPipeline

    model, tokenizer = load_model(args.model, revision=args.revision)
    pipe = MultiTaskPipeline(model, tokenizer, precision=args.precision, batch_size=args.batch_size)
    tasks = requested_tasks(args.tasks, pipe.tasks)
    limits = Limits(args.max_body_bytes, args.max_inputs, args.max_chars, args.max_queue)
    commit = None if Path(args.model).expanduser().exists() else loaded_commit(args.model, args.revision)
    app = create_app(pipe, tasks=tasks, limits=limits, window_ms=args.batch_window_ms, max_batch=args.max_batch,
                     model_name=args.model, metrics=card_metrics(args.model, args.revision),
                     revision=args.revision, commit=commit)
    # the first call builds the kernels: not on a client's time (an input each served head reads)
    warm = {json.dumps(example_input(pipe.tasks[t])): example_input(pipe.tasks[t]) for t in tasks or pipe.tasks}
    pipe(list(warm.values()), tasks=tasks, strict=False)
    config = uvicorn.Config(app, log_level="info", access_log=args.access_log, timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    loaded = f" (commit {commit[:12]}{f' of {args.revision}' if args.revision else ''})" if commit else ""
    print(f"serving {args.model}{loaded} on http://{shown}:{port} (tasks: {', '.join(tasks or pipe.tasks)}; "
          f"{pipe.precision.describe()})", flush=True)
    # uvicorn finishes the requests in flight on SIGTERM, then raises the signal again for the previous
    # handler: this one makes that a normal exit (status 0) instead of death by signal
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:  # uvicorn logged why (e.g. the app's start-up failed)
        print("error: the server did not start", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0
