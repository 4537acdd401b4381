"""`mtnlp` command lines for the tests at the cost of one start-up (importing torch and transformers takes seconds).

A CliSession is one process that imports what the commands import, then runs each command line it is sent in a
child forked from it: `mtnlp.cli.main` with that argv, in that folder, with that stdin, its stdout, stderr and exit
status its own, as from `python -m mtnlp`. Whatever the imports print (a library's warning) is put before each
command's own stdout and stderr, as each real process would print it first. Commands sent together (run_many) run
two at a time.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PARALLEL = 2  # children at a time


class CliSession:
    """`session("predict", MODEL, "text")` -> CompletedProcess; `session.run_many([(argv, folder), ...])`.
    `env`: the session's environment (read by libraries at import, e.g. HF_ENDPOINT); `prelude`: Python run before
    the imports. A command's own `env` sets (None: unsets) variables read when it runs, e.g. HF_TOKEN."""

    def __init__(self, env: dict | None = None, cwd: Path | str | None = None, prelude: str = ""):
        self.scratch = Path(tempfile.mkdtemp(prefix="mtnlp-cli-session-"))
        self.log = open(self.scratch / "session.err", "w+", encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.scratch), prelude], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=cwd,
                                     env=dict(os.environ) if env is None else env, start_new_session=True)
        self.cwd, self.sent, self.done, self.replies = cwd, {}, {}, queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True).start()

    def _read_replies(self):
        try:
            for line in self.proc.stdout:
                self.replies.put(json.loads(line))
        finally:  # the end of the session, or a line that is no reply: result() says so, with its stderr
            self.replies.put(None)

    def submit(self, *argv: str, cwd=None, env: dict | None = None, stdin: str | None = None) -> int:
        job = len(self.sent)
        self.sent[job] = list(argv)
        cwd = cwd or self.cwd or os.getcwd()
        self.proc.stdin.write(json.dumps({"id": job, "argv": list(argv), "cwd": str(cwd), "env": env or {},
                                          "stdin": stdin}) + "\n")
        self.proc.stdin.flush()
        return job

    def result(self, job: int, timeout: float = 300) -> subprocess.CompletedProcess:
        while job not in self.done:
            try:
                reply = self.replies.get(timeout=timeout)
            except queue.Empty:
                self._kill()
                raise AssertionError(f"mtnlp {' '.join(self.sent[job])} did not end within {timeout} s") from None
            if reply is None:
                raise AssertionError(f"the CLI session ended (status {self.proc.wait()}): {self.stderr()[-3000:]}")
            self.done[reply["id"]] = reply["status"]
        read = lambda suffix: (self.scratch / f"{job}.{suffix}").read_text(encoding="utf-8", errors="replace")
        return subprocess.CompletedProcess(["mtnlp", *self.sent[job]], self.done[job], read("out"), read("err"))

    def __call__(self, *argv: str, cwd=None, env: dict | None = None, stdin: str | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        return self.result(self.submit(*argv, cwd=cwd, env=env, stdin=stdin), timeout)

    def run_many(self, jobs: list[tuple[list[str], Path]], timeout: float = 300) -> list[subprocess.CompletedProcess]:
        """`mtnlp ARGV` in FOLDER for each (argv, folder), two at a time; the results in the order given."""
        return [self.result(job, timeout) for job in [self.submit(*argv, cwd=cwd) for argv, cwd in jobs]]

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def _kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session and the children it forked
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:  # (after a failure: no waiting for commands still running; they are killed)
                self.proc.stdin.close()
                status = self.proc.wait(timeout=300)
                assert status == 0 and "Traceback" not in self.stderr(), self.stderr()[-3000:]
        finally:
            self._kill()
            self.proc.wait()
            self.log.close()
            shutil.rmtree(self.scratch, ignore_errors=True)


# ---------------------------------------------------------------- the session process


def run_command(job: dict, scratch: str, prelude: dict) -> None:
    """In a forked child: run one command line as `python -m mtnlp` does, then end as an interpreter ends."""
    from mtnlp.cli import main

    os.chdir(job["cwd"])
    sys.path[0] = os.getcwd()  # as `python -m` has it
    for key, value in job["env"].items():
        os.environ.pop(key, None) if value is None else os.environ.update({key: value})
    if job["stdin"] is not None:
        Path(f"{scratch}/{job['id']}.in").write_text(job["stdin"], encoding="utf-8")
    os.dup2(os.open(f"{scratch}/{job['id']}.in" if job["stdin"] is not None else os.devnull, os.O_RDONLY), 0)
    for fd, suffix in ((1, "out"), (2, "err")):
        os.dup2(os.open(f"{scratch}/{job['id']}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.write(fd, prelude[fd])
    sys.argv = ["mtnlp", *job["argv"]]
    try:
        status = main()
    except SystemExit as e:  # as the interpreter reads it: None is 0; a message is printed, with status 1
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    # an interpreter's exit: threads joined, atexit functions, finalisers of what is garbage; all but tearing the
    # modules down, a second of every real command's time that tells nothing
    threading._shutdown()
    atexit._run_exitfuncs()
    gc.collect()
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(status)


def serve(scratch: str, prelude_code: str) -> None:
    # the prelude and the imports of `mtnlp train`, `evaluate`, `predict` and `export`, once; what they print is
    # kept for each command (stdout carries the replies)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    for fd in (1, 2):
        os.dup2(os.open(f"{scratch}/imports.{fd}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    exec(prelude_code, {})
    for module in ("mtnlp.cli", "mtnlp.evaluation", "mtnlp.pipeline", "mtnlp.recipes.multitask", "mtnlp.train"):
        importlib.import_module(module)
    sys.stdout.flush(), sys.stderr.flush()
    for fd in (1, 2):
        os.dup2(saved[fd], fd)
    prelude = {fd: Path(f"{scratch}/imports.{fd}").read_bytes() for fd in (1, 2)}

    waiting, running, pending, reading = [], {}, b"", True
    while reading or waiting or running:
        while waiting and len(running) < PARALLEL:
            job = waiting.pop(0)
            pid = os.fork()
            if pid == 0:
                run_command(job, scratch, prelude)
            running[pid] = job["id"]
        # requests are lines on stdin: wait for one while nothing runs, look for one between children's ends
        if reading and select.select([0], [], [], 0.02 if running else None)[0]:
            chunk = os.read(0, 65536)
            reading = bool(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            waiting += [json.loads(line) for line in lines if line.strip()]
        while running:  # once stdin is closed, nothing else to wait for: block until a child ends
            pid, wait_status = os.waitpid(-1, os.WNOHANG if reading else 0)
            if pid == 0:
                break
            print(json.dumps({"id": running.pop(pid), "status": os.waitstatus_to_exitcode(wait_status)}), flush=True)
            if not reading:
                break  # start the next one waiting


if __name__ == "__main__":
    serve(*sys.argv[1:])
