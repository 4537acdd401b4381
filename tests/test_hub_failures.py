"""`mtnlp push` against the loopback hub with injected failures: transient ones are retried and the push succeeds
with identical files; persistent ones end in exit status 2, one `error:` line, and no partial commit on the hub.
The token never shows in the output."""

from __future__ import annotations

import hashlib
import re

from hub_server import LocalHub
from test_hub import SECRET, mtnlp, mtnlp_session, run_dir  # noqa: F401  (run_dir is a fixture)

REPO_ID = "org/tiny-mt"
PREUPLOAD = r"^/api/models/org/tiny-mt/preupload/"
COMMIT = r"^/api/models/org/tiny-mt/commit/"
CREATE = r"^/api/repos/create$"
LFS_PUT = r"^/org/tiny-mt\.git/info/lfs/objects/[0-9a-f]{64}$"


def local_files(run_dir) -> dict[str, bytes]:
    """The files as pushed: the card's usage lines name the repo (hub.pushed_card), the rest as they are."""
    model = run_dir / "model"
    return {str(p.relative_to(model)): p.read_bytes().replace(b"REPO_OR_DIR", REPO_ID.encode())
            for p in sorted(model.rglob("*")) if p.is_file()}


def push(hub, run_dir, tmp_path):
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), REPO_ID)
    assert SECRET not in proc.stdout + proc.stderr
    return proc


def assert_pushed(hub, run_dir, proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "error: " not in proc.stderr
    assert proc.stdout.strip().endswith(hub.commits(REPO_ID)[0].oid)  # the commit URL
    files = hub.repo_files(REPO_ID)
    for name, data in local_files(run_dir).items():
        assert files[name] == data, name  # byte-identical
    assert set(files) == set(local_files(run_dir)) | {".gitattributes"}
    assert len(hub.commits(REPO_ID)) == 2  # the initial commit and ONE upload commit


def assert_failed(proc, *fragments) -> str:
    """Exit 2 and one `error:` line (the client's retry warnings may come before it), no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.rstrip("\n").split("\n")[-1] == errors[0], proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert proc.stdout == ""
    return errors[0]


def seed(hub) -> tuple[list[str], dict[str, bytes]]:
    """An existing repo with one earlier upload; returns its main history and files."""
    hub.create_repo(REPO_ID)
    hub.commit_files(REPO_ID, {"README.md": b"# an earlier version\n", "config.json": b"{}"})
    return snapshot(hub)


def snapshot(hub) -> tuple[list[str], dict[str, bytes]]:
    return [c.oid for c in hub.commits(REPO_ID)], hub.repo_files(REPO_ID)


def statuses(hub, method: str, pattern: str) -> list[int]:
    return [r.status for r in hub.requests if r.method == method and re.search(pattern, r.path)]


def test_5xx_on_preupload_is_retried(run_dir, tmp_path):
    with LocalHub() as hub:
        hub.fail("POST", PREUPLOAD, 503)
        proc = push(hub, run_dir, tmp_path)
        assert_pushed(hub, run_dir, proc)
        assert statuses(hub, "POST", PREUPLOAD) == [503, 200]


def test_429_then_success_on_preupload(run_dir, tmp_path):
    with LocalHub() as hub:
        hub.fail("POST", PREUPLOAD, 429, headers={"Retry-After": "1"})
        proc = push(hub, run_dir, tmp_path)
        assert_pushed(hub, run_dir, proc)
        assert statuses(hub, "POST", PREUPLOAD) == [429, 200]


def test_500_on_commit_leaves_main_unchanged(run_dir, tmp_path):
    with LocalHub() as hub:
        before = seed(hub)
        hub.fail("POST", COMMIT, 500, times=6)  # 6: still failing if the client retried commits (1 + 5 retries)
        proc = push(hub, run_dir, tmp_path)
        message = assert_failed(proc, f"push to {REPO_ID} failed (HTTP 500)")
        assert len(proc.stderr.rstrip("\n").split("\n")) == 1, proc.stderr  # the commit is not retried: one line
        assert "\n" not in message
        assert snapshot(hub) == before  # no partial commit
        assert 500 in statuses(hub, "POST", COMMIT)


def test_403_on_create_is_a_clear_error(run_dir, tmp_path):
    with LocalHub() as hub:
        hub.fail("POST", CREATE, 403)
        proc = push(hub, run_dir, tmp_path)
        assert_failed(proc, f"push to {REPO_ID} failed (HTTP 403)", "token may write to 'org'")
        assert len(proc.stderr.rstrip("\n").split("\n")) == 1, proc.stderr
        assert not hub.repo_exists(REPO_ID)
        assert statuses(hub, "POST", CREATE) == [403]


def test_dropped_connection_on_lfs_put_is_retried(run_dir, tmp_path):
    with LocalHub(lfs_mode="lfs") as hub:
        hub.fail("PUT", LFS_PUT, 0)  # the server closes the connection without answering
        proc = push(hub, run_dir, tmp_path)
        assert_pushed(hub, run_dir, proc)
        puts = statuses(hub, "PUT", LFS_PUT)
        assert puts.count(0) == 1 and puts.count(200) == len(local_files(run_dir))
        assert all(entry.is_lfs for name, entry in hub.commits(REPO_ID)[0].files.items() if name != ".gitattributes")


def test_500_on_every_lfs_put_fails_without_a_commit(run_dir, tmp_path):
    # The client retries each PUT 5 times (6 attempts) and uploads up to 5 files at once, so a
    # failure budget spread over all files would run out before any one file gives up: aim it at the weights.
    weights = hashlib.sha256((run_dir / "model" / "model.safetensors").read_bytes()).hexdigest()
    with LocalHub(lfs_mode="lfs") as hub:
        before = seed(hub)
        hub.fail("PUT", LFS_PUT.replace("[0-9a-f]{64}", weights), 500, times=10)
        proc = push(hub, run_dir, tmp_path)
        assert_failed(proc, f"push to {REPO_ID} failed", "HTTP 500", "model.safetensors")
        assert snapshot(hub) == before  # main unchanged
        assert statuses(hub, "POST", COMMIT) == []  # the commit was never attempted
        assert statuses(hub, "PUT", LFS_PUT.replace("[0-9a-f]{64}", weights)) == [500] * 6



def test_refusals_are_one_line_before_any_request(run_dir, tiny_encoder, tmp_path):
    from test_hub import broken_folder

    encoder, _ = broken_folder("encoder without README", run_dir, tiny_encoder, tmp_path)
    model = str(run_dir / "model")
    cases = [([str(encoder), REPO_ID], f"error: {encoder}: a bert model, not an mtnlp multi-task model"),
             ([model, "a/b/c"], "error: repo id 'a/b/c' is not valid"),
             ([model, REPO_ID, "--token", ""], "error: token is empty")]
    with LocalHub() as hub:
        for args, message in cases:
            proc = mtnlp(hub, tmp_path, "push", *args)
            assert_failed(proc, message)
            assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert hub.requests == []


def test_a_lost_connection_or_a_damaged_cached_download_is_one_line_and_says_what_to_do(run_dir, tmp_path):
    """The hub dropped the weights download: a traceback with exit status 1 (hub walk); now one line, status 2, and
    the next call goes on. A cached copy damaged afterwards was named as the model's own broken weights."""
    with LocalHub() as hub, mtnlp_session(hub, tmp_path) as session:  # each call a fresh child of one process
        hub.create_repo(REPO_ID)
        hub.commit_files(REPO_ID, local_files(run_dir))
        hub.fail("GET", r"/resolve/.*/model\.safetensors$", 0, times=50)
        proc = session("predict", REPO_ID, "a text")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {REPO_ID}: cannot reach the hub to download it")
        hub._failures.clear()
        proc = session("predict", REPO_ID, "a text")
        assert proc.returncode == 0, proc.stderr[-3000:]
        (cached,) = [p.resolve() for p in (tmp_path / "client").rglob("model.safetensors") if p.is_symlink()]
        cached.write_bytes(cached.read_bytes()[:1000])  # damaged outside the hub client (a full disk, a copy)
        proc = session("predict", REPO_ID, "a text")
        assert proc.returncode == 2 and "the copy in the local hub cache is damaged" in proc.stderr, proc.stderr[-3000:]


# ---------------------------------------------------------------- pinned by mutation testing (mutation11)


def test_an_offline_cache_miss_is_found_where_the_error_was_raised_while_handling_it(monkeypatch):
    """offline_miss followed only `raise ... from` causes: an OSError raised in an `except LocalEntryNotFoundError`
    block (its __context__) lost the message that HF_HUB_OFFLINE forbids the download."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from mtnlp.errors import offline_miss

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    try:
        try:
            raise LocalEntryNotFoundError("not in the cache")
        except LocalEntryNotFoundError:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
    except OSError as e:
        error = e
    assert offline_miss(error) == "not in the local hub cache, and HF_HUB_OFFLINE is set: nothing is downloaded"
