"""Load test of `mtnlp serve` on 127.0.0.1: N concurrent clients send a fixed number of /predict requests.

Starts `mtnlp serve MODEL --port 0` as a subprocess, then for each client count in --clients (default 1, 16, 64)
sends --requests requests, each client a thread with its own keep-alive connection taking the next request
until all are sent. Measures throughput (requests/s, inputs/s), latency percentiles and how many pipeline calls
served the requests (from /health). Then stops the server with SIGTERM (it must exit 0) and checks every answer
against a direct MultiTaskPipeline prediction of its own inputs, made before the server started.

The requests come from the model's heads (config.json `tasks`): each head reads single texts, text pairs
(`text_pair` true or false; absent: both) or an input form of its type's own (multiple_choice: {text,
choices}; extractive_qa: {question, context}). Every input form the heads read gets request variants that
name only heads reading it (all of them; each one beside the tagging heads; all in reverse order with all
scores), and, when some heads read both single texts and pairs, a variant mixing the two for those heads
(in one request with --inputs-per-request 2 or more, else alternating between its requests). Request k uses variant k % (number of variants). Its inputs are SST-2 dev sentences with
the request's and the input's number in front ("k.j"; a pair's second text is the next sentence).

How the check tells a swapped answer from a right one: the answer must equal the direct prediction of the
request's own inputs, cut as serve cuts it (the request's tasks in its order, `scores` / `candidates` only
if it asked). Words, offsets and spans must be equal exactly, labels too, and every number within the
tolerance (fp32: 1e-4; bf16: 0.05, since the server's batches pad differently from the direct prediction's;
an int8 ONNX export: 0.1, as it quantises activations over the whole batch; a regression value within the
tolerance times max(1, |value|)). In bf16 and int8 only, a label that differs while its score is within the
tolerance is a near tie (rounding between two close classes), counted as
`near_ties` and not a failure. Any other mismatch fails the run. Whether a swap would show is then worked
out for every input (check's `swap_detectable`): by `words` when no other input's answer has the same
words and offsets (a tagging head lists the "k.j" marker's words: the demo's pos head); by `structure`
when no other answer has the same shape; else by `values` when the check would fail every other answer
of the same shape given in its place (distinct texts whose labels or numbers differ beyond the
tolerance: e.g. a regression head's values). An input none of these covers (`undetectable`: two answers
with the same labels and numbers within the tolerance) is counted and listed, and does not fail the run:
for it the run shows only that its answer was right or equally close.

    python bench/serve_load.py [--model runs/demo/model] [--clients 1,16,64] [--requests 2000] [--precision auto]

The JSON goes to bench/results/serve_load.json (where recorded results live, BENCHMARKS.md) for the demo
model; for another model give --output.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

REPO = benchlib.REPO
DEMO_MODEL = REPO / "runs" / "demo" / "model"


# ------------------------------------------------------------------ the requests, from the model's heads


def served_heads(model: Path) -> dict[str, dict]:
    """config.json's heads in the order serve answers them: the recipe's (`task_order`; transformers writes the
    keys sorted)."""
    from mtnlp.folders import in_task_order

    config = json.loads((model / "config.json").read_text())
    return in_task_order(config["tasks"], config.get("task_order"))


def reads(spec: dict) -> set[str]:
    """The input forms a head (its config.json entry) reads: "text", "pair", or its type's own form (the type's
    name, e.g. "extractive_qa")."""
    from mtnlp.tasks import task_type

    if task_type(spec["type"]).input_fields:
        return {spec["type"]}
    return {True: {"pair"}, False: {"text"}}.get(spec.get("text_pair"), {"text", "pair"})


def form_of(item) -> str:
    """The form of one input: "text", "pair" or the name of the type whose own form it is."""
    from mtnlp.tasks import TASK_TYPES

    own = [name for name, kind in TASK_TYPES.items() if kind.accepts(item)]
    return own[0] if own else "pair" if isinstance(item, dict) and "text_pair" in item else "text"


def make_variants(heads: dict[str, dict]) -> list[dict]:
    """Request variants {form, tasks (None: every served head), all_scores} for each input form the heads read,
    each naming only heads that read that form. Every variant of a form keeps its tagging heads: their words
    carry the inputs' markers."""
    forms = {}  # form -> the heads reading it, in the model's order
    for name, spec in heads.items():
        for form in sorted(reads(spec)):
            forms.setdefault(form, []).append(name)
    both = [name for name, spec in heads.items() if reads(spec) == {"text", "pair"}]
    if both:
        forms["mixed"] = both  # single texts and pairs in one request
    variants = []
    for form, names in forms.items():
        tagging = [n for n in names if heads[n]["type"] == "tagging"]
        chosen = [(names, False)] + [([n, *tagging], i % 2 == 0) for i, n in enumerate(names) if n not in tagging]
        if len(names) > 1:
            chosen.append((names[::-1], True))
        for tasks, all_scores in chosen:
            variant = {"form": form, "tasks": None if tasks == list(heads) else tasks, "all_scores": all_scores}
            if variant not in variants:
                variants.append(variant)
    return variants


OWN_FORMS = {  # an input of a type's own form around a marked sentence
    "multiple_choice": lambda marked, other: {"text": marked, "choices": ["good", "bad", "boring"]},
    "extractive_qa": lambda marked, other: {"question": "What is it like?", "context": marked},
}


def make_input(form: str, marked: str, other: str):
    if form == "text":
        return marked
    if form == "pair":
        return {"text": marked, "text_pair": other}
    return OWN_FORMS[form](marked, other)


def make_requests(variants: list[dict], texts: list[str], count: int, offset: int, per_request: int) -> list[dict]:
    requests = []
    for k in range(offset, offset + count):
        variant = variants[k % len(variants)]
        inputs = []
        for j in range(per_request):
            n = k * per_request + j
            mixed = (k // len(variants) + j) % 2  # "mixed": pairs at odd places, alternating between requests
            form = variant["form"] if variant["form"] != "mixed" else ("pair" if mixed else "text")
            inputs.append(make_input(form, f"{k}.{j} {texts[n % len(texts)]}", texts[(n + 1) % len(texts)]))
        requests.append({"inputs": inputs, **({"tasks": variant["tasks"]} if variant["tasks"] else {}),
                         "all_scores": variant["all_scores"]})
    return requests


# ------------------------------------------------------------------ the server and its clients


def start_server(args) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "mtnlp", "serve", args.model, "--port", "0", "--precision", args.precision,
               "--max-batch", str(args.max_batch), "--batch-window-ms", str(args.batch_window_ms)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.wait(timeout=60)
        sys.exit(f"mtnlp serve did not start:\n{line}{proc.stderr.read()}")
    print(line.strip())
    return proc, line.split(" on ")[1].split()[0]


def get(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", path)
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body


def load(host: str, port: int, requests: list[dict], clients: int) -> dict:
    """Send all requests from `clients` threads; per request: status, body and latency."""
    results: list[dict | None] = [None] * len(requests)
    bodies = [json.dumps(r).encode() for r in requests]
    lock, position = threading.Lock(), [0]
    start = threading.Barrier(clients + 1)

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        start.wait()
        while True:
            with lock:
                k = position[0]
                position[0] += 1
            if k >= len(requests):
                break
            sent = time.perf_counter()
            try:
                conn.request("POST", "/predict", bodies[k], {"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
                results[k] = {"status": response.status, "body": json.loads(body),
                              "latency": time.perf_counter() - sent}
            except (OSError, http.client.HTTPException, json.JSONDecodeError) as e:
                results[k] = {"status": None, "error": repr(e), "latency": time.perf_counter() - sent}
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    before = get(host, port, "/health")
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    after = get(host, port, "/health")
    return {"results": results, "elapsed": elapsed, "batches": after["batches"] - before["batches"],
            "served_requests": after["requests"] - before["requests"]}


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used so far (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# ------------------------------------------------------------------ the direct predictions


def cpu_meter():
    """A function giving (CPU-seconds of this process, of the whole machine) since the meter was made."""
    own, machine = sum(os.times()[:2]), machine_busy_s()
    return lambda: (sum(os.times()[:2]) - own, machine_busy_s() - machine)


def predict_by_form(pipe, inputs: list, heads: dict[str, dict]) -> list[dict]:
    """The pipeline's predictions (all scores) of `inputs`: one call per input form, each asking for the heads
    that read that form."""
    by_form = {}
    for i, item in enumerate(inputs):
        by_form.setdefault(form_of(item), []).append(i)
    out = [None] * len(inputs)
    for form, positions in by_form.items():
        tasks = [name for name, spec in heads.items() if form in reads(spec)]
        for i, prediction in zip(positions, pipe([inputs[i] for i in positions], tasks=tasks, return_all_scores=True)):
            out[i] = prediction
    return out


def reference(all_requests: list[dict], model: str, precision: str, heads: dict, chunk: int) -> tuple[list, dict]:
    """Direct MultiTaskPipeline predictions of every request's inputs (every head that reads each, all scores),
    made before the server starts; and the pipeline's own speed on them: all at once (one call per input form,
    sorted by length into batches) and in calls of `chunk` inputs in request order (what the server's calls
    get with `chunk` clients)."""
    from mtnlp import MultiTaskPipeline
    from mtnlp.tasks.base import example_input

    pipe = MultiTaskPipeline.from_pretrained(model, precision=precision)
    first = next(iter(heads))
    pipe([example_input(heads[first])], tasks=[first])  # warm-up
    inputs = [item for r in all_requests for item in r["inputs"]]
    speed = {}
    meter, began = cpu_meter(), time.perf_counter()
    predictions = predict_by_form(pipe, inputs, heads)
    elapsed = time.perf_counter() - began
    own, machine = meter()
    speed["all_at_once"] = {"inputs": len(inputs), "inputs_per_s": round(len(inputs) / elapsed, 1),
                            "cpu_per_wall_s": {"pipeline": round(own / elapsed, 2),
                                               "other_processes": round(max(machine - own, 0) / elapsed, 2)}}
    part = inputs[:2000]
    meter, began = cpu_meter(), time.perf_counter()
    for start in range(0, len(part), chunk):
        predict_by_form(pipe, part[start:start + chunk], heads)
    elapsed = time.perf_counter() - began
    own, machine = meter()
    speed[f"calls_of_{chunk}"] = {"inputs": len(part), "inputs_per_s": round(len(part) / elapsed, 1),
                                  "cpu_per_wall_s": {"pipeline": round(own / elapsed, 2),
                                                     "other_processes": round(max(machine - own, 0) / elapsed, 2)}}
    return predictions, speed


# ------------------------------------------------------------------ the check

ALL_SCORES_KEYS = ("scores", "candidates")  # what all_scores adds to a prediction (as serve.py drops them)
LABEL_KEYS = ("label", "tag")
WORD_KEYS = ("word", "start", "end", "text", "answer")  # words, spans and their offsets: the marker's carriers


def expected_answers(request: dict, predictions: list[dict], heads: dict) -> list[dict]:
    """What serve must answer for a request, from the direct predictions of its inputs: the request's tasks in
    its order, every head's `scores` / `candidates` only if it asked."""
    tasks = request.get("tasks") or list(heads)
    return [{t: (p[t] if request["all_scores"] or not isinstance(p[t], dict)
                 else {key: v for key, v in p[t].items() if key not in ALL_SCORES_KEYS}) for t in tasks}
            for p in predictions]


def tolerance(kind: str, expected, tol: float) -> float:
    """The tolerance of a head's numbers: probabilities (classification, multilabel, tagging, choices, spans)
    absolute; a regression value relative to its size (bf16 keeps 3 significant digits)."""
    return tol * max(1.0, abs(expected["value"])) if kind == "regression" else tol


def compare(got, expected, tol: float, where: str, problems: dict, near_ties: bool = False) -> None:
    """Identity (keys, words, offsets, labels) must match; floats within tol (counted, and the max kept).
    With near_ties, a dict whose label differs while its score is within tol is a near tie, not a label
    mismatch."""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or list(got) != list(expected):
            problems["structure"].append(where)
            return
        tie = near_ties and isinstance(expected.get("score"), float) and isinstance(got.get("score"), float) \
            and abs(got["score"] - expected["score"]) <= tol
        for key in expected:
            if tie and key in LABEL_KEYS and got[key] != expected[key]:
                problems["near_ties"].append(f"{where}.{key}")
                continue
            compare(got[key], expected[key], tol, f"{where}.{key}", problems, near_ties)
    elif isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            problems["structure"].append(where)
            return
        for i, (a, b) in enumerate(zip(got, expected)):
            compare(a, b, tol, f"{where}[{i}]", problems, near_ties)
    elif isinstance(expected, float):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            problems["structure"].append(where)
            return
        diff = abs(got - expected)
        problems["max_abs_diff"] = max(problems["max_abs_diff"], diff)
        if diff > tol:
            problems["numeric"].append(where)
    elif got != expected:
        (problems["words"] if where.endswith(tuple(f".{k}" for k in WORD_KEYS)) else problems["labels"]).append(
            where)


def compare_answer(got, expected: dict, heads: dict, tol: float, where: str, problems: dict,
                   near_ties: bool) -> None:
    """One input's answer {task: prediction} against the expected one, each head with its type's tolerance."""
    if not isinstance(got, dict) or list(got) != list(expected):
        problems["structure"].append(where)
        return
    for task, prediction in expected.items():
        kind = heads[task]["type"]
        compare(got[task], prediction, tolerance(kind, prediction, tol), f"{where}.{task}", problems, near_ties)


def new_problems() -> dict:
    return {"lost": [], "structure": [], "words": [], "labels": [], "numeric": [], "near_ties": [],
            "max_abs_diff": 0.0}


FAILING = ("lost", "structure", "words", "labels", "numeric")


def skeleton(answer, path: str = "") -> str:
    """An answer with every label and number blanked: its keys, list lengths, words, spans and offsets."""
    if isinstance(answer, dict):
        return "{" + ",".join(f"{k}:{skeleton(v, k)}" for k, v in answer.items()) + "}"
    if isinstance(answer, list):
        return "[" + ",".join(skeleton(v, path) for v in answer) + "]"
    return json.dumps(answer) if path in WORD_KEYS else "_"


def first_number(answer: dict, heads: dict, tol: float) -> tuple[float, float]:
    """The first number compare() meets in an answer, and its tolerance (0, inf: it has none)."""
    for task, prediction in answer.items():
        stack = [prediction]
        while stack:
            value = stack.pop(0)
            if isinstance(value, float):
                return value, tolerance(heads[task]["type"], prediction, tol)
            stack[:0] = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    return 0.0, math.inf


def swap_detectable(answers: list[dict], heads: dict, tol: float, near_ties: bool) -> list[str]:
    """For each expected answer, what would make the check fail if the server gave any other input's answer
    in its place: "words" (no other answer has its words and offsets: a tagging head's marker), "structure"
    (no other answer has its shape), "values" (the check fails every other answer of its shape), or
    "undetectable" (some other answer would pass as its own)."""
    groups = {}
    for i, answer in enumerate(answers):
        groups.setdefault(skeleton(answer), []).append(i)
    covered = [""] * len(answers)
    for shape, members in groups.items():
        if len(members) == 1:
            covered[members[0]] = "words" if '"' in shape else "structure"
            continue
        firsts = sorted((first_number(answers[i], heads, tol)[0], i) for i in members)
        keys = [value for value, _ in firsts]
        for i in members:
            value, margin = first_number(answers[i], heads, tol)
            low, high = bisect.bisect_left(keys, value - margin), bisect.bisect_right(keys, value + margin)
            covered[i] = "values"
            for _, j in firsts[low:high]:  # others' answers whose first number passes: the rest fail on it
                trial = new_problems()
                if j != i:
                    compare_answer(answers[j], answers[i], heads, tol, "", trial, near_ties)
                    if not any(trial[name] for name in FAILING):
                        covered[i] = "undetectable"
                        break
    return covered


def check(all_requests: list[dict], all_results: list[dict], predictions: list[dict], heads: dict,
          tol: float, near_ties: bool = False) -> dict:
    """Every answer against the direct prediction of its own inputs, cut as serve cuts it (expected_answers);
    and for every input, which check would catch another input's answer in its place (swap_detectable),
    counted by request variant."""
    problems = new_problems()
    position, expected_all, where_all = 0, [], []
    for k, (request, result) in enumerate(zip(all_requests, all_results)):
        expected = expected_answers(request, predictions[position:position + len(request["inputs"])], heads)
        position += len(request["inputs"])
        expected_all += expected
        where_all += [(k, j) for j in range(len(expected))]
        if result is None or result["status"] != 200:
            problems["lost"].append(k)
            continue
        got = result["body"].get("predictions")
        if not isinstance(got, list) or len(got) != len(expected):
            problems["structure"].append(f"request {k}")
            continue
        for j, (answer, mine) in enumerate(zip(got, expected)):
            compare_answer(answer, mine, heads, tol, f"request {k}[{j}]", problems, near_ties)
    covered = swap_detectable(expected_all, heads, tol, near_ties)
    summary = {name: len(v) if isinstance(v, list) else v for name, v in problems.items()}
    summary["examples"] = {name: v[:5] for name, v in problems.items() if isinstance(v, list) and v}
    summary["tolerance"] = tol
    summary["near_ties_allowed"] = near_ties
    summary["requests_checked"] = len(all_requests)
    summary["swap_detectable"] = by_variant = {}
    for (k, j), how in zip(where_all, covered):
        request = all_requests[k]
        forms = sorted({form_of(item) for item in request["inputs"]})
        name = f"{'+'.join(forms)} {','.join(request.get('tasks') or ['all'])}" \
               f"{' all_scores' if request['all_scores'] else ''}"
        counts = by_variant.setdefault(name, {"words": 0, "structure": 0, "values": 0, "undetectable": 0})
        counts[how] += 1
    summary["undetectable"] = sum(counts["undetectable"] for counts in by_variant.values())
    summary["examples"]["undetectable"] = [f"request {k}[{j}]" for (k, j), how in zip(where_all, covered)
                                           if how == "undetectable"][:5]
    if not summary["examples"]["undetectable"]:
        del summary["examples"]["undetectable"]
    return summary


def failures(summary: dict) -> list[str]:
    """The kinds of problem in a check() summary that fail the run (empty: the answers passed)."""
    return [name for name in FAILING if summary[name]]


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrent client counts, one run each")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--inputs-per-request", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--tolerance", type=float, help="max |difference| of a score (default: 1e-4, bf16 0.05, int8 0.1)")
    parser.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    parser.add_argument("--output", help="results JSON (default for the demo model: bench/results/serve_load.json)")
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").exists():
        sys.exit(f"{args.model}: no model there. Run `make demo` first (it trains runs/demo/model in 1-4 "
                 "min on 2 cores), or give --model a run's model/ folder")
    if args.output is None and Path(args.model).resolve() != DEMO_MODEL.resolve():
        sys.exit("--output: give the results file for this model (bench/results/serve_load.json records the demo's)")
    output = Path(args.output or benchlib.RESULTS / "serve_load.json")
    heads = served_heads(Path(args.model))
    variants = make_variants(heads)
    texts = benchlib.sst2_dev_texts()
    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    results = {"command": " ".join(["python", "bench/serve_load.py", *sys.argv[1:]]), "model": args.model,
               "heads": {name: {"type": spec["type"], "reads": sorted(reads(spec))} for name, spec in heads.items()},
               "requests_per_run": args.requests, "inputs_per_request": args.inputs_per_request,
               "request_variants": [{**v, "tasks": v["tasks"] or "all"} for v in variants],
               "server": {"max_batch": args.max_batch, "batch_window_ms": args.batch_window_ms,
                          "precision": args.precision},
               **benchlib.environment(), "idle_wait": idle, "runs": []}

    plan = []
    for clients in [int(c) for c in args.clients.split(",")]:
        plan.append((clients, make_requests(variants, texts, args.requests, sum(len(r) for _, r in plan),
                                            args.inputs_per_request)))
    all_requests = [r for _, requests in plan for r in requests]
    predictions, results["direct_pipeline"] = reference(all_requests, args.model, args.precision, heads, chunk=16)
    print(json.dumps(results["direct_pipeline"]))

    proc, url = start_server(args)
    host, port = url.split("//")[1].rsplit(":", 1)
    port = int(port)
    info = get(host, port, "/info")
    results["server"]["precision_used"] = info["precision"]
    results["server"]["pipeline_batch_size"] = info["batching"]["pipeline_batch_size"]
    all_results = []
    try:
        warm_up = make_requests(variants, texts, 50, 10**6, args.inputs_per_request)
        load(host, port, warm_up, 4)  # not checked
        for clients, requests in plan:
            meter, server_before = cpu_meter(), process_cpu_s(proc.pid)
            run = load(host, port, requests, clients)
            server_cpu = process_cpu_s(proc.pid) - server_before
            client_cpu, machine_cpu = meter()
            other_cpu = machine_cpu - server_cpu - client_cpu
            latencies = [r["latency"] for r in run["results"] if r and r["status"] == 200]
            summary = {
                "clients": clients, "requests": len(requests), "answered_200": len(latencies),
                "seconds": round(run["elapsed"], 3),
                "requests_per_s": round(len(requests) / run["elapsed"], 1),
                "inputs_per_s": round(len(requests) * args.inputs_per_request / run["elapsed"], 1),
                "latency_ms": {f"p{q}": round(1000 * percentile(latencies, q), 1) for q in (50, 90, 99)}
                | {"max": round(1000 * max(latencies), 1)} if latencies else None,
                "pipeline_calls": run["batches"],
                "mean_requests_per_call": round(run["served_requests"] / max(run["batches"], 1), 2),
                # CPU-seconds per wall-second (2 cores: at most 2): the server, this client process, and all
                # other processes of the machine (other jobs: the shared-machine noise in these figures)
                "cpu_per_wall_s": {"server": round(server_cpu / run["elapsed"], 2),
                                   "clients": round(client_cpu / run["elapsed"], 2),
                                   "other_processes": round(max(other_cpu, 0) / run["elapsed"], 2)},
                "loadavg_after": list(os.getloadavg()),
            }
            print(json.dumps(summary))
            results["runs"].append(summary)
            all_results += run["results"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    results["server_exit_on_sigterm"] = proc.returncode
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    used, int8 = info["precision"]["used"], "int8" in json.dumps(info["precision"])
    tol = args.tolerance if args.tolerance is not None else (0.1 if int8 else 1e-4 if used == "fp32" else 0.05)
    results["check"] = check(all_requests, all_results, predictions, heads, tol, near_ties=int8 or used != "fp32")
    print(json.dumps(results["check"]))
    failed = failures(results["check"])
    if failed or proc.returncode != 0:  # kept beside, not over, the recorded results
        output = output.with_name(f"{output.stem}.failed{output.suffix}")
    benchlib.write_results(output, results)
    if results["check"]["undetectable"]:
        print(f"note: for {results['check']['undetectable']} inputs another input's answer would have passed "
              "(same labels, numbers within the tolerance): check.swap_detectable", file=sys.stderr)
    if failed or proc.returncode != 0:
        sys.exit(f"FAILED: {', '.join(failed) or 'answers passed'}; server exit on SIGTERM: {proc.returncode}")


if __name__ == "__main__":
    main()
