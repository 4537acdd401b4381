"""Push to a hub and load back, end to end over real HTTP against the loopback hub in hub_server.py."""

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import CliSession
from conftest import tiny_tasks
from hub_server import LocalHub, client_env
from test_cli_startup import without_heavy_imports
from transformers import AutoTokenizer

from mtnlp import MultiTaskModel
from mtnlp.errors import UserError

TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"], "dropout": 0.1},
    "score": {"type": "regression", "labels": [], "dropout": 0.1},
    "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "dropout": 0.1},
}
TEXTS = ["Ann Lee flew to Paris .", "a gorgeous , witty , seductive movie ."]
SECRET = "hf_secret_token_do_not_print_123"


@pytest.fixture
def run_dir(tmp_path, tiny_encoder):
    """A run directory as `mtnlp train` leaves it: model/ plus metrics.json and curves.png."""
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS)
    model.config.mtnlp = {"base_model": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 32, "version": "0.1.0"}
    model.save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(run / "model")
    metrics = {"tasks": {"sentiment": {"validation": {"accuracy": 0.875, "f1": 0.86}},
                         "ner": {"validation": {"f1": 0.5}, "test": {"f1": 0.25}}}, "best_step": 40}
    (run / "metrics.json").write_text(json.dumps(metrics))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([1, 2, 3])
    plt.savefig(run / "curves.png")
    plt.close()
    from mtnlp.hub import write_card

    write_card(run / "model", run)
    return run


# huggingface_hub's retry waits (1, 2, 4, 8, 8 s), a hundred times shorter: the same retries, seconds sooner
FAST_RETRIES = ("import time, types, huggingface_hub.utils._http as http\n"
                "http.time = types.SimpleNamespace(**{**vars(time), 'sleep': lambda s: time.sleep(s / 100)})\n")


def mtnlp(hub, tmp_path, *args, token=SECRET, stdin=None):
    """`mtnlp ARGS` against `hub`, huggingface_hub's retries 100 times faster. A push runs where torch,
    transformers and datasets cannot be imported: it needs only huggingface_hub (seconds less start-up, and
    no torch on an upload-only machine)."""
    env = client_env(hub.url, tmp_path / "client", token)
    command = (without_heavy_imports(*args, prelude=FAST_RETRIES) if args[0] == "push"
               else [sys.executable, "-c", f"import sys\n{FAST_RETRIES}from mtnlp.cli import main\nsys.exit(main({list(args)!r}))"])
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, input=stdin, cwd=tmp_path)


@contextlib.contextmanager
def mtnlp_session(hub, tmp_path):
    """A function that runs `mtnlp ARGS` as mtnlp(hub, tmp_path, *ARGS, token=...) does (in tmp_path, or `cwd`),
    each in a process forked from one that imported mtnlp once (never a push: that one's process must not import
    torch)."""
    with CliSession(client_env(hub.url, tmp_path / "client", SECRET), tmp_path, FAST_RETRIES) as session:
        yield lambda *args, token=SECRET, cwd=None: session(*args, cwd=cwd, env={"HF_TOKEN": token})


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory):
    """One loopback hub and one mtnlp_session against it (its hub cache in the module's folder) for a module's tests."""
    folder = tmp_path_factory.mktemp("shared-hub")
    with LocalHub() as hub, mtnlp_session(hub, folder) as session:
        yield hub, session


@pytest.fixture
def hub_session(shared_hub, tmp_path):
    """`hub, session = hub_session(**settings)`: the module's hub emptied and set up as LocalHub(**settings), and
    a function running `mtnlp ARGS` in tmp_path as mtnlp_session's does, in a child of the module's CliSession
    (the session's hub cache is the module's: tests that download give their repos names of their own)."""
    hub, session = shared_hub

    def open_hub(**settings):
        hub.reset(**settings)
        return hub, lambda *args, token=SECRET: session(*args, token=token, cwd=tmp_path)

    yield open_hub
    hub.reset()  # failures a test left armed go with it


def predictions(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line)["predictions"] for line in proc.stdout.splitlines()]


def close(a, b):
    """Same labels/tags/spans and scores equal to 1e-5."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) < 1e-5
    return a == b


@pytest.mark.parametrize("lfs_mode", ["regular", "lfs"])
def test_push_then_load_gives_identical_predictions(run_dir, tmp_path, lfs_mode, hub_session):
    hub, session = hub_session(lfs_mode=lfs_mode)
    repo = f"org/tiny-mt-{lfs_mode}"  # (a name of its own: nothing of it in the session's hub cache)
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = hub.repo_files(repo)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "curves.png"} <= set(files)
    entry = hub.commits(repo)[0].files["model.safetensors"]
    assert entry.is_lfs == (lfs_mode == "lfs")
    assert files["model.safetensors"] == (run_dir / "model" / "model.safetensors").read_bytes()
    lfs_puts = [r for r in hub.requests if r.method == "PUT"]
    assert bool(lfs_puts) == (lfs_mode == "lfs")

    remote = predictions(session("predict", repo, *TEXTS))
    downloads = [r.path for r in hub.requests if r.method == "GET" and r.status == 200]
    assert any(p.startswith(f"/{repo}/resolve/") and p.endswith("/model.safetensors") for p in downloads), downloads
    local = predictions(session("predict", str(run_dir / "model"), *TEXTS))
    assert close(remote, local)
    assert set(remote[0]) == set(TASKS)

    # pushing the same folder again changes nothing: no new commit
    commits = len(hub.commits(repo))
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(hub.commits(repo)) == commits
    # and secrets never leak to output or to the uploaded files
    assert SECRET not in proc.stdout + proc.stderr
    assert all(SECRET.encode() not in data for data in hub.repo_files(repo).values())


def test_model_card_metadata_and_table(run_dir, tmp_path):
    with LocalHub() as hub:
        assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/card").returncode == 0
        card = hub.repo_files("org/card")["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "mtnlp"
    assert "trained with [mtnlp](https://pypi.org/project/mtnlp/) 0.1.0" in card  # which mtnlp made it
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["pipeline_tag"] == "text-classification"
    assert {"mtnlp", "text-classification", "token-classification"} <= set(meta["tags"])
    assert "| sentiment | classification | negative, positive | accuracy 0.8750, f1 0.8600 | — |" in card
    assert "| ner | tagging | O, B-PER, I-PER, B-LOC, I-LOC | f1 0.5000 | f1 0.2500 |" in card
    assert "![training curves](curves.png)" in card
    assert 'MultiTaskPipeline.from_pretrained("org/card")' in card and "REPO_OR_DIR" not in card  # the repo's id
    assert "REPO_OR_DIR" in (run_dir / "model" / "README.md").read_text()  # the local card is left as it is


def test_push_private_to_a_branch_with_token_flag(run_dir, tmp_path, hub_session):
    hub, session = hub_session(required_token=SECRET)
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/private-mt", "--private",
                 "--revision", "dev", "--token", SECRET, token=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert SECRET not in proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # the commit URL: a new repo is private, nothing made private
    assert hub.is_private("org/private-mt")
    assert "model.safetensors" in hub.repo_files("org/private-mt", revision="dev")
    assert "model.safetensors" not in hub.repo_files("org/private-mt", revision="main")
    out = predictions(session("predict", "org/private-mt", TEXTS[0], "--revision", "dev"))
    assert set(out[0]) == set(TASKS)
    # a wrong token is refused with one clear line
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/private-mt", "--token", "hf_wrong")
    assert proc.returncode == 2 and "error: push to org/private-mt failed (HTTP 401)" in proc.stderr
    assert "Traceback" not in proc.stderr and "hf_wrong" not in proc.stderr


def test_missing_repo_and_missing_file_are_clear_errors(hub_session):
    hub, session = hub_session()
    proc = session("predict", "org/does-not-exist", "hello")
    assert proc.returncode == 2 and "org/does-not-exist" in proc.stderr and "Traceback" not in proc.stderr
    hub.create_repo("org/empty")
    hub.commit_files("org/empty", {"README.md": b"# nothing here\n"})
    proc = session("predict", "org/empty", "hello")
    assert proc.returncode == 2 and "org/empty" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_hub_is_a_clear_error(run_dir, tmp_path):
    hub = LocalHub()
    hub.start()
    hub.stop()  # nothing listens on that port any more
    proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/x")
    assert proc.returncode == 2 and "error: push to org/x failed" in proc.stderr and "Traceback" not in proc.stderr
    proc = mtnlp(hub, tmp_path, "predict", "org/x", "hello")  # loading names the cause too, not a missing repo
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: org/x: cannot reach the hub to download it ("), proc.stderr


def test_a_hub_id_not_in_the_cache_while_offline_says_so():
    from mtnlp.errors import UserError
    from mtnlp.pipeline import load_pretrained

    with pytest.raises(UserError, match=r"^my-org/nowhere: not in the local hub cache, and HF_HUB_OFFLINE is set"):
        load_pretrained("my-org/nowhere")


@pytest.mark.slow
def test_recipe_push_to_hub(make_recipe, tmp_path, hub_session):
    recipe = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2},
                         push_to_hub=True, hub_repo_id="org/from-recipe")
    hub, session = hub_session()
    proc = session("train", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = hub.repo_files("org/from-recipe")
    assert {"model.safetensors", "config.json", "README.md", "curves.png"} <= set(files)
    assert json.loads(files["config.json"])["tasks"]["ner"]["type"] == "tagging"
    assert SECRET not in proc.stdout + proc.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def model_copy(run_dir, tmp_path, name="copy"):
    import shutil

    return Path(shutil.copytree(run_dir / "model", tmp_path / name))


def encoder_copy(tiny_encoder, tmp_path, readme):
    import shutil

    folder = Path(shutil.copytree(tiny_encoder, tmp_path / "encoder"))
    if readme:
        (folder / "README.md").write_text("# a BERT encoder\n")
    return folder


def broken_folder(kind, run_dir, tiny_encoder, tmp_path):
    """A folder that is no loadable mtnlp model, as a user might push it, and the error's telling words."""
    if kind in ("encoder", "encoder without README"):
        return encoder_copy(tiny_encoder, tmp_path, kind == "encoder"), "a bert model, not an mtnlp multi-task model"
    folder = model_copy(run_dir, tmp_path)
    if kind == "no weights":
        (folder / "model.safetensors").unlink()
        return folder, "no model.safetensors (the weights)"
    if kind == "no tokenizer":
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").unlink()
        return folder, "no tokenizer (tokenizer_config.json and tokenizer.json)"
    if kind == "onnx":  # as `mtnlp export --onnx` leaves it: model.onnx, the mtnlp config, the tokenizer
        (folder / "model.safetensors").unlink()
        (folder / "README.md").unlink()
        (folder / "model.onnx").write_bytes(b"\x08\x07onnx graph")
        return folder, "an ONNX export (model.onnx), which cannot be loaded by hub id: push the model folder"
    if kind == "bad config":
        (folder / "config.json").write_text("{not json")
        return folder, "config.json: cannot read"
    raise ValueError(kind)


@pytest.fixture
def no_network(monkeypatch):
    import mtnlp.hub

    monkeypatch.setattr(mtnlp.hub, "HfApi", lambda **kwargs: pytest.fail("push reached the hub"))


@pytest.mark.parametrize("kind", ["encoder", "encoder without README", "no weights", "no tokenizer", "onnx",
                                  "bad config"])
def test_push_refuses_a_folder_that_would_not_load(kind, run_dir, tiny_encoder, tmp_path, no_network):
    from mtnlp.hub import push

    folder, words = broken_folder(kind, run_dir, tiny_encoder, tmp_path)
    before = sorted(folder.iterdir())
    with pytest.raises(UserError) as e:
        push(folder, "org/x")
    assert str(e.value).startswith(str(folder)) and words in str(e.value) and "\n" not in str(e.value)
    assert sorted(folder.iterdir()) == before  # no model card written into it


def test_push_refuses_a_link_to_a_file_outside_the_folder(run_dir, tmp_path, no_network):
    """A link in a model folder (a colleague's, a git clone) published what it pointed to: a key, or
    /proc/self/environ with the hub token. A hub cache snapshot's links to its blobs are its own files."""
    from mtnlp.hub import push, pushed_files

    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    folder = model_copy(run_dir, tmp_path)
    (folder / "notes.md").symlink_to(secret)
    with pytest.raises(UserError, match=f"^{folder / 'notes.md'}: a link to {secret}, outside the model folder: a "
                                        "push uploads the folder's own files only"):
        push(folder, "org/x")
    (folder / "notes.md").unlink()
    (folder / "extra").mkdir()
    (folder / "extra" / "environ").symlink_to("/proc/self/environ")
    with pytest.raises(UserError, match="outside the model folder"):
        push(folder, "org/x")
    (folder / "extra" / "environ").unlink()
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("url = https://user:hf_token@hf.co/x")
    (folder / "git-config.txt").symlink_to(folder / ".git" / "config")
    with pytest.raises(UserError, match="git-config.txt: a link to .*config, a hidden file, which a push leaves out"):
        push(folder, "org/x")
    (folder / "git-config.txt").unlink()
    (folder / "extra" / "card.md").symlink_to(folder / "README.md")  # inside: uploaded
    assert folder / "extra" / "card.md" in pushed_files(folder)
    # huggingface_hub's cache: models--org--m/snapshots/REV/FILE -> ../../blobs/HASH
    repo = tmp_path / "hub" / "models--org--m"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for i, path in enumerate(p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()):
        (repo / "blobs" / f"blob{i}").write_bytes(path.read_bytes())
        (snapshot / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / path.relative_to(folder)).symlink_to(Path("../" * len(path.relative_to(folder).parts), "..",
                                                              "blobs", f"blob{i}"))
    assert [p.relative_to(snapshot) for p in pushed_files(snapshot)] == \
        [p.relative_to(folder) for p in pushed_files(folder) if p.name != "card.md"]
    (snapshot / "key.txt").symlink_to(secret)  # out of the cache
    with pytest.raises(UserError, match="key.txt: a link to .*id_ed25519, outside the model folder"):
        pushed_files(snapshot)
    (snapshot / "key.txt").unlink()
    fake = tmp_path / "proj" / "snapshots" / "mymodel"  # named like a cache's snapshot, but no cache
    fake.mkdir(parents=True)
    (fake / "notes.md").symlink_to(Path("..", "..", "..", secret.name))
    with pytest.raises(UserError, match="notes.md: a link to .*id_ed25519, outside the model folder"):
        pushed_files(fake)


def test_push_of_a_run_folder_names_its_model_folder(run_dir, no_network):
    from mtnlp.hub import push

    with pytest.raises(UserError, match=f"^{run_dir}: a run folder; give its model folder, {run_dir / 'model'}$"):
        push(run_dir, "org/x")


@pytest.mark.parametrize("repo_id", ["not a repo", "a/b/c", "org/x.git", ""])
def test_push_refuses_an_invalid_repo_id(repo_id, run_dir, no_network):
    from mtnlp.hub import push

    with pytest.raises(UserError, match=f"^repo id '{re.escape(repo_id)}' is not valid: give NAME or NAMESPACE/NAME"):
        push(run_dir / "model", repo_id)


def test_a_hub_pages_address_given_for_a_model_or_repo_id_says_which_id_it_means(run_dir, no_network, tmp_path):
    """A pasted https://huggingface.co/org/name was "model folder not found" (a path to the CLI) or "not valid"."""
    from mtnlp import MultiTaskPipeline
    from mtnlp.folders import check_model_folder
    from mtnlp.hub import push

    with pytest.raises(UserError, match=r"^repo id 'https://huggingface.co/org/x' is a hub page's address: give the "
                                        r"id org/x$"):
        push(run_dir / "model", "https://huggingface.co/org/x")
    for given, said in (("https://huggingface.co/org/x", "a hub page's address, not a model id: give the id org/x"),
                        ("https://hf.co/org/x/tree/v2", "a hub page's address, not a model id: give the id org/x "
                                                         "and the revision v2"),
                        ("https://huggingface.co/bert-base-uncased", "a hub page's address, not a model id: give "
                                                                     "the id bert-base-uncased"),
                        ("https://huggingface.co/gpt2/tree/main", "a hub page's address, not a model id: give the "
                                                                 "id gpt2"),  # a name alone is an id too
                        ("https://huggingface.co/me/x/tree/refs%2Fpr%2F3", "a hub page's address, not a model id: "
                                                                          "give the id me/x and the revision refs/pr/3"),
                        # a repo named as a page is (props2 walk: "give the id org and the revision tree")
                        ("https://huggingface.co/org/tree/tree/v1", "a hub page's address, not a model id: give the "
                                                                    "id org/tree and the revision v1"),
                        ("https://huggingface.co/org/tree", "a hub page's address, not a model id: give the id org/tree"),
                        ("https://huggingface.co/org/commits/blob/main/config.json", "a hub page's address, not a "
                                                                                     "model id: give the id org/commits"),
                        ("https://huggingface.co/models?search=bert", "a URL: give a local folder or a hub id "
                                                                      "(org/name)"),
                        ("https://example.org/models/x", "a URL: give a local folder or a hub id (org/name)")):
        with pytest.raises(UserError, match=f"^{re.escape(given)}: {re.escape(said)}$"):
            MultiTaskPipeline.from_pretrained(given)
        with pytest.raises(UserError, match=f": {re.escape(said)}$"):  # (as a Path: https:/...)
            check_model_folder(Path(given))


@pytest.mark.parametrize("token", ["", " \n"])
def test_push_refuses_an_empty_token_or_revision_in_words_that_fit_python_and_the_cli(token, run_dir, no_network):
    from mtnlp.hub import push

    with pytest.raises(UserError, match="^token is empty: give a hub token, or none to use HF_TOKEN"):
        push(run_dir / "model", "org/x", token=token)
    with pytest.raises(UserError, match="^revision is empty: give a branch name, or none for main$"):
        push(run_dir / "model", "org/x", revision="")
    with pytest.raises(UserError, match="^revision 0{40}: a commit id"):
        push(run_dir / "model", "org/x", revision="0" * 40)


def test_push_without_namespace_commits_to_the_created_repo(run_dir, tmp_path):
    with LocalHub() as hub:
        proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "justname")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == f"{hub.url}/testuser/justname/commit/{hub.commits('testuser/justname')[0].oid}"
        assert "model.safetensors" in hub.repo_files("testuser/justname")
        assert not hub.repo_exists("justname") and not hub.errors


def test_private_makes_an_existing_public_repo_private_before_the_upload(run_dir, tmp_path):
    with LocalHub() as hub:
        hub.create_repo("org/was-public")
        proc = mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/was-public", "--private")
        assert proc.returncode == 0, proc.stderr[-2000:]
        # said as a warning (library code prints nothing): the CLI shows it on stderr, stdout is the URL alone
        assert "warning: org/was-public was public; made it private as asked" in proc.stderr.splitlines()
        assert len(proc.stdout.splitlines()) == 1
        assert proc.stdout.strip().endswith(hub.commits("org/was-public")[0].oid)
        assert hub.is_private("org/was-public")
        writes = [r.path for r in hub.requests if r.method in ("PUT", "POST") and "was-public" in r.path]
        assert writes[0] == "/api/models/org/was-public/settings"  # no file goes up while the repo is public
        assert writes[-1] == "/api/models/org/was-public/commit/main"


@pytest.mark.parametrize("encoder", ["local folder", "/gone/my-enc/bert", "./my-enc", "~/my-enc", "a/b/my-enc"])
def test_model_card_leaves_out_a_local_base_model(encoder, tmp_path, monkeypatch):
    from mtnlp.hub import model_card
    from mtnlp.modeling import MultiTaskConfig

    monkeypatch.chdir(tmp_path)
    if encoder == "local folder":
        encoder = "my-enc"  # a hub id's shape, but a folder here
        (tmp_path / "my-enc").mkdir()
    config = MultiTaskConfig(encoder={"model_type": "bert"}, tasks=TASKS, mtnlp={"base_model": encoder})
    card = model_card(config)
    assert "base_model" not in yaml.safe_load(card.split("---")[1])
    assert encoder not in card and "(from" not in card
    config.mtnlp["base_model"] = "bert-base-uncased"
    card = model_card(config)
    assert yaml.safe_load(card.split("---")[1])["base_model"] == "bert-base-uncased"
    assert "One shared bert encoder (from `bert-base-uncased`)" in card
    card = model_card(config, datasets=["glue", str(tmp_path), "./data/sst2"])
    assert yaml.safe_load(card.split("---")[1])["datasets"] == ["glue"]  # local data set folders are left out


def test_a_label_with_a_pipe_or_a_line_break_keeps_the_cards_table_whole(tmp_path):
    """A `|` in a label made its row one cell longer, and serve's /info then dropped that task's metrics."""
    from mtnlp.hub import card_rows, model_card
    from mtnlp.modeling import MultiTaskConfig
    from mtnlp.serve import card_metrics

    tasks = {"sentiment": {"type": "classification", "labels": ["neg|bad", "pos"], "dropout": 0.1},
             "topics": {"type": "multilabel", "labels": ["arts|crafts", "line1\nline2"], "dropout": 0.1}}
    metrics = {"tasks": {"sentiment": {"validation": {"accuracy": 0.75}}, "topics": {"test": {"f1_micro": 0.5}}}}
    card = model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks), metrics)
    rows = [line for line in card.splitlines() if line.startswith("| sentiment") or line.startswith("| topics")]
    assert rows == ["| sentiment | classification | neg\\|bad, pos | accuracy 0.7500 | — |",
                    "| topics | multilabel | arts\\|crafts, line1 line2 | — | f1_micro 0.5000 |"]
    assert [cells[2] for _, _, cells in card_rows(card.splitlines())] == ["neg|bad, pos", "arts|crafts, line1 line2"]
    (tmp_path / "README.md").write_text(card, encoding="utf-8")
    assert card_metrics(str(tmp_path)) == {"sentiment": {"validation": {"accuracy": 0.75}},
                                           "topics": {"test": {"f1_micro": 0.5}}}


def test_the_card_says_how_figures_whose_names_do_not_say_are_averaged():
    """A reader on the hub cannot tell macro from micro F1 by the name (TREC: macro F1 0.78 beside accuracy 0.92)."""
    from mtnlp.hub import card_rows, model_card
    from mtnlp.modeling import MultiTaskConfig

    tasks = {"question": {"type": "classification", "labels": ["a", "b"]}, "topic": {"type": "classification", "labels": ["x", "y"]},
             "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER"]}, "score": {"type": "regression", "labels": []}}
    metrics = {"tasks": {"question": {"test": {"accuracy": 0.92, "f1": 0.78}}, "topic": {"validation": {"f1": 0.5}},
                         "ner": {"validation": {"precision": 0.5, "recall": 0.4, "f1": 0.44}},
                         "score": {"validation": {"mse": 0.3}}}}
    lines = model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks), metrics).splitlines()
    notes = [line for line in lines if line.startswith("- ") and "): " in line]  # (not the metadata's tags)
    assert notes[0] == "- f1 (question, topic): macro-averaged over the labels in the split's gold or predicted labels"
    assert notes[1:] == ["- precision, recall, f1 (ner): of whole entities (seqeval, conlleval's rules), micro-averaged "
                         "over the entity types"]  # none for pearsonr: not shown
    assert len(list(card_rows(lines))) == 4  # the table is still whole
    assert not [line for line in model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks)).splitlines()
                if line.startswith("- ") and "): " in line]  # no figures, no notes


def test_the_card_says_the_precision_its_figures_were_measured_in():
    """bf16 and fp32 figures differ in their last digits; the card gave them with no word of which."""
    from mtnlp.hub import model_card
    from mtnlp.modeling import MultiTaskConfig

    config = MultiTaskConfig(encoder={"model_type": "bert"}, tasks={"s": {"type": "classification", "labels": ["a", "b"]}})
    used = {"requested": "auto", "used": "bf16", "device": "cpu", "reason": "auto: this CPU runs bf16 natively (AMX)"}
    card = model_card(config, {"tasks": {"s": {"validation": {"accuracy": 0.9}}}, "precision": used})
    assert "Figures measured in bf16 (auto: this CPU runs bf16 natively (AMX))." in card.splitlines()
    assert "Figures measured" not in model_card(config, {"tasks": {}, "precision": used})  # no figures, no line
    assert "Figures measured" not in model_card(config, {"tasks": {"s": {"validation": {"accuracy": 0.9}}}})


def test_the_card_says_tuned_thresholds_were_tuned_on_the_validation_figures_split():
    """Validation figures at thresholds chosen on validation are not a held-out estimate: the card said nothing."""
    from mtnlp.hub import model_card
    from mtnlp.modeling import MultiTaskConfig

    tasks = {"emotions": {"type": "multilabel", "labels": ["joy", "anger"], "threshold": 0.5, "thresholds": [0.3, 0.6]},
             "topics": {"type": "multilabel", "labels": ["a", "b"], "threshold": 0.5}}
    config = MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks)
    figures = {"validation": {"micro_f1": 0.6}, "test": {"micro_f1": 0.5}}
    card = model_card(config, {"tasks": {"emotions": figures, "topics": figures}}).splitlines()
    said = [line for line in card if "were tuned on the validation split" in line]
    assert len(said) == 1 and said[0].startswith("The per-label thresholds of emotions were tuned")  # not topics'
    assert not [line for line in model_card(config, {"tasks": {"emotions": {"test": {"micro_f1": 0.5}}}}).splitlines()
                if "were tuned" in line]  # no validation figures shown: nothing to warn of


def test_metrics_beside_a_model_from_another_step_are_not_its_card_figures(run_dir):
    """A model folder copied next to another run's metrics.json (same tasks, another best step): the card gives
    no figures rather than that run's."""
    from mtnlp.hub import run_metrics, saved_config, write_card

    model = run_dir / "model"
    config = json.loads((model / "config.json").read_text())
    for step, kept in ((40, True), (7, False)):  # metrics.json's best_step is 40
        config["mtnlp"]["step"] = step
        (model / "config.json").write_text(json.dumps(config))
        assert (run_metrics(model, saved_config(model)) is not None) == kept
        write_card(model, run_dir)
        assert ("| sentiment | classification | negative, positive | accuracy 0.8750, f1 0.8600 | — |"
                in (model / "README.md").read_text()) == kept


def test_the_cards_labels_cell_keeps_whole_labels_and_says_how_many():
    """A 300-label task's cell was cut inside a label (`34, 35, 3...`), with no count anywhere in the table."""
    from mtnlp.hub import model_card
    from mtnlp.modeling import MultiTaskConfig

    labels = [f"intent {i}" for i in range(300)]
    tasks = {"intent": {"type": "classification", "labels": labels},
             "long": {"type": "classification", "labels": ["x" * 130, "y"]}}
    rows = [line for line in model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks)).splitlines()
            if line.startswith("| intent |") or line.startswith("| long |")]
    cell = rows[0].split(" | ")[2]
    assert cell.endswith(", ... (300 labels)") and cell.split(", ")[:-1] == labels[:len(cell.split(", ")) - 1]
    assert 100 < len(cell) <= 120
    assert rows[1].split(" | ")[2] == "... (2 labels)"
    many = {"t": {"type": "classification", "labels": [f"category {i:05d} of the cataloguex" for i in range(10_000)]}}
    cell = [line for line in model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=many)).splitlines()
            if line.startswith("| t |")][0].split(" | ")[2]
    assert cell.endswith(", ... (10,000 labels)") and len(cell) <= 120
