"""Many `mtnlp` command lines for the price of one start-up (importing torch and transformers costs seconds).

`run_many` starts this file as one process. It imports what the commands import, then runs each command line in a
child forked from it: `mtnlp.cli.main` with that argv, in that folder, its stdout and stderr its own, and its exit
status what `python -m mtnlp` would give. Whatever the imports print on stderr (a library's warning) is put before
each command's own stderr, as each real process would print it first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PARALLEL = 2  # children at a time


def run_many(jobs: list[tuple[list[str], Path]], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run `mtnlp ARGV` in FOLDER for each (argv, folder); the results in the order given."""
    with tempfile.TemporaryDirectory(prefix="mtnlp-cli-runner-") as scratch:
        spec = Path(scratch) / "jobs.json"
        spec.write_text(json.dumps([{"argv": argv, "cwd": str(cwd)} for argv, cwd in jobs]), encoding="utf-8")
        runner = subprocess.run([sys.executable, __file__, str(spec), scratch], capture_output=True, text=True,
                                timeout=timeout, env=dict(os.environ))
        assert runner.returncode == 0, runner.stderr[-4000:]
        return [subprocess.CompletedProcess(["mtnlp", *argv], status, read(f"{scratch}/{i}.out"),
                                            read(f"{scratch}/{i}.err"))
                for i, ((argv, _), status) in enumerate(zip(jobs, json.loads(runner.stdout)))]


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def run_command(argv: list[str], cwd: str, out: str, err: str, prelude: bytes) -> int:
    """In a forked child: run one command line as `python -m mtnlp` would; returns its exit status."""
    import atexit
    import traceback

    from mtnlp.cli import main

    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.write(2, prelude)
    sys.argv = ["mtnlp", *argv]
    try:
        status = main()
    except SystemExit as e:  # as the interpreter reads it: None is 0; a message is printed, with status 1
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    return status


def serve(spec: str, scratch: str) -> None:
    jobs = json.loads(Path(spec).read_text(encoding="utf-8"))
    # the imports of `mtnlp train`, `evaluate`, `predict` and `export`, once; their stderr goes to a file
    prelude_path, saved = f"{scratch}/prelude.err", os.dup(2)
    os.dup2(os.open(prelude_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    import mtnlp.cli  # noqa: F401
    import mtnlp.evaluation  # noqa: F401
    import mtnlp.pipeline  # noqa: F401
    import mtnlp.recipes.multitask  # noqa: F401
    import mtnlp.train  # noqa: F401

    sys.stderr.flush()
    os.dup2(saved, 2)
    prelude = Path(prelude_path).read_bytes()

    statuses, running, waiting = [None] * len(jobs), {}, list(enumerate(jobs))
    while waiting or running:
        while waiting and len(running) < PARALLEL:
            i, job = waiting.pop(0)
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = run_command(job["argv"], job["cwd"], f"{scratch}/{i}.out", f"{scratch}/{i}.err", prelude)
                finally:
                    os._exit(status)
            running[pid] = i
        pid, wait_status = os.wait()
        statuses[running.pop(pid)] = os.waitstatus_to_exitcode(wait_status)
    print(json.dumps(statuses))


if __name__ == "__main__":
    serve(*sys.argv[1:])
