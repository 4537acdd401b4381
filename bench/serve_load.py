"""Load test of `mtnlp serve` on 127.0.0.1: N concurrent clients send a fixed number of /predict requests.

Starts `mtnlp serve MODEL --port 0` as a subprocess, then for each client count in --clients (default 1, 16, 64)
sends --requests requests, each client a thread with its own keep-alive connection taking the next request
until all are sent. Every request has its own texts (SST-2 dev sentences with the request's and the input's
number in front, "k.j") and one of several task subsets and all_scores settings. Measures throughput
(requests/s, inputs/s), latency percentiles and how many pipeline calls served the requests (from /health).
Then stops the server with SIGTERM (it must exit 0) and checks every answer against a direct
MultiTaskPipeline prediction of its own inputs. Writes bench/results/serve_load.json.

How the check tells a swapped answer from a right one: every request variant asks for the tagging head
(pos), whose answer lists each input's words with their offsets, so the "k.j" marker of its own inputs
is in every answer; words and offsets must equal the direct prediction's exactly, so an answer that
belongs to another request (or another input of the same request) fails whatever the precision. Labels
must be equal too and every score within the tolerance (fp32: 1e-4; bf16: 0.05, since the server's
batches pad differently from the direct prediction's); any mismatch fails the run. In bf16 only, a label
that differs while its score is within the tolerance of the direct prediction's is a near tie (bf16
rounding between two close classes), counted as `near_ties` and not a failure: the words still tell
whose answer it is. A request without a tagging head could be told apart only by its scores (two
requests with the same label and close scores would pass swapped); the check counts such requests as
`unmarked` and fails on them, so every variant must keep the tagging head.

    python bench/serve_load.py [--model runs/demo/model] [--clients 1,16,64] [--requests 2000] [--precision auto]
"""

from __future__ import annotations

import argparse
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
# (tasks or None for every served task, all_scores): request k uses VARIANTS[k % len(VARIANTS)]. Each asks for
# pos (the tagging head): its words carry the request's marker, which is what identifies an answer (see above)
VARIANTS = [(None, False), (["sentiment", "pos"], False), (["question", "pos"], True),
            (["pos", "sentiment", "question"], True)]


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


def make_requests(texts: list[str], count: int, offset: int, per_request: int) -> list[dict]:
    requests = []
    for k in range(offset, offset + count):
        tasks, all_scores = VARIANTS[k % len(VARIANTS)]
        inputs = [f"{k}.{j} {texts[(k * per_request + j) % len(texts)]}" for j in range(per_request)]
        requests.append({"inputs": inputs, **({"tasks": tasks} if tasks else {}), "all_scores": all_scores})
    return requests


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


LABEL_KEYS = ("label", "tag")


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
        (problems["words"] if where.endswith((".word", ".start", ".end", ".text")) else problems["labels"]).append(
            where)


def cpu_meter():
    """A function giving (CPU-seconds of this process, of the whole machine) since the meter was made."""
    own, machine = sum(os.times()[:2]), machine_busy_s()
    return lambda: (sum(os.times()[:2]) - own, machine_busy_s() - machine)


def reference(all_requests: list[dict], model: str, precision: str, chunk: int) -> tuple[list[dict], dict]:
    """Direct MultiTaskPipeline predictions of every request's inputs (all tasks, all scores), made before the
    server starts; and the pipeline's own speed on them: all at once (sorted by length into batches) and in
    calls of `chunk` texts in request order (what the server's calls get with `chunk` clients)."""
    from mtnlp import MultiTaskPipeline

    pipe = MultiTaskPipeline.from_pretrained(model, precision=precision)
    pipe(["warm-up"])
    texts = [text for r in all_requests for text in r["inputs"]]
    speed = {}
    meter, began = cpu_meter(), time.perf_counter()
    predictions = pipe(texts, return_all_scores=True)
    elapsed = time.perf_counter() - began
    own, machine = meter()
    speed["all_at_once"] = {"inputs": len(texts), "inputs_per_s": round(len(texts) / elapsed, 1),
                            "cpu_per_wall_s": {"pipeline": round(own / elapsed, 2),
                                               "other_processes": round(max(machine - own, 0) / elapsed, 2)}}
    part = texts[:2000]
    meter, began = cpu_meter(), time.perf_counter()
    for start in range(0, len(part), chunk):
        pipe(part[start:start + chunk], return_all_scores=True)
    elapsed = time.perf_counter() - began
    own, machine = meter()
    speed[f"calls_of_{chunk}"] = {"inputs": len(part), "inputs_per_s": round(len(part) / elapsed, 1),
                                  "cpu_per_wall_s": {"pipeline": round(own / elapsed, 2),
                                                     "other_processes": round(max(machine - own, 0) / elapsed, 2)}}
    return predictions, {"tasks": {name: spec["type"] for name, spec in pipe.tasks.items()}, "speed": speed}


def check(all_requests: list[dict], all_results: list[dict], predictions: list[dict], task_types: dict,
          tol: float, near_ties: bool = False) -> dict:
    """Every answer against the direct prediction of its own inputs, cut as serve cuts it: the request's tasks
    in its order, `scores` only if it asked. `unmarked`: requests that ask for no tagging head, so that no
    words in their answer say whose it is (see the module's docstring)."""
    problems = {"lost": [], "structure": [], "words": [], "labels": [], "numeric": [], "unmarked": [],
                "near_ties": [], "max_abs_diff": 0.0}
    position = 0
    for k, (request, result) in enumerate(zip(all_requests, all_results)):
        mine = predictions[position:position + len(request["inputs"])]
        position += len(request["inputs"])
        tasks = request.get("tasks") or list(task_types)
        if not any(task_types[t] == "tagging" for t in tasks):
            problems["unmarked"].append(k)
        if result is None or result["status"] != 200:
            problems["lost"].append(k)
            continue
        expected = [{t: ({k2: v for k2, v in p[t].items() if k2 != "scores"}
                         if task_types[t] == "classification" and not request["all_scores"] else p[t])
                     for t in tasks} for p in mine]
        compare(result["body"].get("predictions"), expected, tol, f"request {k}", problems, near_ties)
    summary = {name: len(v) if isinstance(v, list) else v for name, v in problems.items()}
    summary["examples"] = {name: v[:5] for name, v in problems.items() if isinstance(v, list) and v}
    summary["tolerance"] = tol
    summary["near_ties_allowed"] = near_ties
    summary["requests_checked"] = len(all_requests)
    return summary


FAILING = ("lost", "structure", "words", "labels", "numeric", "unmarked")


def failures(summary: dict) -> list[str]:
    """The kinds of problem in a check() summary that fail the run (empty: the answers passed)."""
    return [name for name in FAILING if summary[name]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"))
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrent client counts, one run each")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--inputs-per-request", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--tolerance", type=float, help="max |difference| of a score (default: 1e-4, bf16 0.05)")
    parser.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    parser.add_argument("--output", default=str(benchlib.RESULTS / "serve_load.json"))
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").exists():
        sys.exit(f"{args.model}: no model there. Run `make demo` first (it trains runs/demo/model in 3-5 "
                 "min on 2 cores), or give --model a run's model/ folder")
    lines = (REPO / "recipes/data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0].strip() for line in lines]
    idle = benchlib.wait_for_idle(args.wait_idle) if args.wait_idle else None
    results = {"command": " ".join(["python", "bench/serve_load.py", *sys.argv[1:]]), "model": args.model,
               "requests_per_run": args.requests, "inputs_per_request": args.inputs_per_request,
               "request_variants": [{"tasks": t or "all", "all_scores": s} for t, s in VARIANTS],
               "server": {"max_batch": args.max_batch, "batch_window_ms": args.batch_window_ms,
                          "precision": args.precision},
               **benchlib.environment(), "idle_wait": idle, "runs": []}

    plan = []
    for clients in [int(c) for c in args.clients.split(",")]:
        plan.append((clients, make_requests(texts, args.requests, sum(len(r) for _, r in plan),
                                            args.inputs_per_request)))
    all_requests = [r for _, requests in plan for r in requests]
    predictions, direct = reference(all_requests, args.model, args.precision, chunk=16)
    results["direct_pipeline"] = direct["speed"]
    print(json.dumps(direct["speed"]))

    proc, url = start_server(args)
    host, port = url.split("//")[1].rsplit(":", 1)
    port = int(port)
    info = get(host, port, "/info")
    results["server"]["precision_used"] = info["precision"]
    results["server"]["pipeline_batch_size"] = info["batching"]["pipeline_batch_size"]
    all_results = []
    try:
        load(host, port, make_requests(texts, 50, 10**6, args.inputs_per_request), 4)  # warm-up, not checked
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
                | {"max": round(1000 * max(latencies), 1)},
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
    used = info["precision"]["used"]
    tol = args.tolerance if args.tolerance is not None else (1e-4 if used == "fp32" else 0.05)
    results["check"] = check(all_requests, all_results, predictions, direct["tasks"], tol, near_ties=used != "fp32")
    print(json.dumps(results["check"]))
    benchlib.write_results(Path(args.output), results)
    failed = failures(results["check"])
    if failed or proc.returncode != 0:
        sys.exit(f"FAILED: {', '.join(failed) or 'answers passed'}; server exit on SIGTERM: {proc.returncode}")


if __name__ == "__main__":
    main()
