"""Pushing what a user has at hand (a copied or downloaded folder, a branch, a recipe's push_to_hub), what a
pushed model says about where it comes from, and the errors that loading a hub id gives."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from conftest import tiny_tasks
from hub_server import LocalHub, run_client
from test_hub import SECRET, TASKS, hub_session, model_copy, mtnlp, run_dir, shared_hub  # noqa: F401  (fixtures)


def last_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_push_leaves_out_hidden_files_and_another_runs_metrics(run_dir, tmp_path):
    folder = model_copy(run_dir, tmp_path)  # as copied out of its run, beside another run's metrics.json
    (folder / "README.md").unlink()
    config = json.loads((folder / "config.json").read_text())
    config["mtnlp"]["step"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    hidden = [".git/config", ".cache/huggingface/download/model.safetensors.metadata", ".DS_Store",
              ".ipynb_checkpoints/config-checkpoint.json"]
    for name in hidden:  # what `git clone`, `hf download --local-dir`, macOS and Jupyter leave
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    other = {"tasks": {"sentiment": {"validation": {"accuracy": 0.5757}}}, "best_step": 10}
    (tmp_path / "metrics.json").write_text(json.dumps(other))
    with LocalHub() as hub:
        proc = mtnlp(hub, tmp_path, "push", str(folder), "org/copy")
        assert proc.returncode == 0, proc.stderr[-2000:]
        files = hub.repo_files("org/copy")
        assert set(files) == {".gitattributes", "README.md", "config.json", "curves.png", "model.safetensors",
                              "tokenizer.json", "tokenizer_config.json"}
        card = files["README.md"].decode()
        assert "| sentiment | classification | negative, positive | — | — |" in card and "0.5757" not in card
        assert not (folder / "README.md").exists()  # the card went into the commit, not into the folder

        (tmp_path / "metrics.json").write_text(json.dumps(other | {"best_step": 40}))  # this model's run
        assert mtnlp(hub, tmp_path, "push", str(folder), "org/copy2").returncode == 0
        assert "| sentiment | classification | negative, positive | accuracy 0.5757 | — |" in \
            hub.repo_files("org/copy2")["README.md"].decode()


def test_a_push_removes_what_an_earlier_push_left_that_the_folder_does_not_have(run_dir, tmp_path):
    """Another model's eval-validation.json stayed beside the new weights, its metrics read as theirs (hub walk)."""
    folder = model_copy(run_dir, tmp_path)
    (folder / "eval-validation.json").write_text('{"sentiment": {"accuracy": 0.4667}}')
    with LocalHub() as hub:
        assert mtnlp(hub, tmp_path, "push", str(folder), "org/m").returncode == 0
        assert "eval-validation.json" in hub.repo_files("org/m")
        (folder / "eval-validation.json").unlink()
        proc = mtnlp(hub, tmp_path, "push", str(folder), "org/m")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "warning: org/m: removed 1 file(s) the folder does not have: eval-validation.json" in proc.stderr
        assert set(hub.repo_files("org/m")) == {".gitattributes", "README.md", "config.json", "curves.png",
                                                "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_a_card_pushed_to_a_branch_loads_from_it_and_tags_and_commits_are_no_branch(run_dir, tmp_path):
    with LocalHub() as hub:
        assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", "dev").returncode == 0
        card = hub.repo_files("org/b", revision="dev")["README.md"].decode()
        assert 'MultiTaskPipeline.from_pretrained("org/b", revision="dev")' in card
        assert "mtnlp export org/b --revision dev --task ner ner-model" in card

        proc = run_client("from huggingface_hub import create_tag; create_tag('org/b', tag='v1', revision='dev')",
                          hub.url, tmp_path / "client", SECRET)
        assert proc.returncode == 0, proc.stderr[-2000:]
        branches = dict(hub.branches("org/b"))
        assert last_error(mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", "v1")) == \
            "error: revision v1: a tag of org/b; a push goes to a branch: give a branch name"
        sha = hub.commits("org/b", revision="dev")[0].oid
        assert last_error(mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", sha)) == \
            f"error: revision {sha}: a commit id; a push goes to a branch: give its name"
        prefix = next(sha[:n] for n in range(7, 40) if not sha[:n].isdigit())  # digits only would be a name (a date)
        assert last_error(mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", prefix)) == \
            f"error: revision {prefix}: reads as the start of a commit id, and org/b has no branch of that name; " \
            "a push goes to a branch: give a name that is not hexadecimal"
        assert dict(hub.branches("org/b")) == branches  # no branch named after the tag or the commit
        assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", "20240615").returncode == 0
        assert "20240615" in dict(hub.branches("org/b"))  # digits only (a date) are a name


def test_loading_a_hub_id_says_what_is_missing(run_dir, tmp_path, hub_session):
    hub, session = hub_session(required_token=SECRET)
    assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/b", "--revision", "dev").returncode == 0
    assert last_error(session("predict", "org/none", "hi", token=None)) == \
        f"error: org/none: no such model repository on {hub.url} (a private one needs a token: HF_TOKEN or " \
        "`hf auth login`)"
    # what MultiTaskModel.push_to_hub leaves, as transformers does for any model: no tokenizer
    model = run_dir / "model"
    hub.create_repo("org/no-tokenizer")
    hub.commit_files("org/no-tokenizer", {name: (model / name).read_bytes()
                                          for name in ("config.json", "model.safetensors")})
    hub.create_repo("org/no-weights")  # and a folder uploaded without its weights
    hub.commit_files("org/no-weights", {name: (model / name).read_bytes()
                                        for name in ("config.json", "tokenizer.json", "tokenizer_config.json")})
    # an ONNX export uploaded as plain files (mtnlp push refuses one): it loads from a folder only
    config = json.loads((model / "config.json").read_text())
    config["mtnlp"]["onnx"] = {"tasks": list(TASKS), "quantize": None}
    hub.create_repo("org/onnx")
    hub.commit_files("org/onnx", {"config.json": json.dumps(config).encode(), "model.onnx": b"x"})
    said = [last_error(session(*call)) for call in (
        ("predict", "org/b", "hi"), ("predict", "org/b", "hi", "--revision", "nope"), ("predict", "org/none", "hi"),
        ("predict", "org/no-tokenizer", "hi"), ("predict", "org/no-weights", "hi"), ("predict", "org/onnx", "hi"),
        ("predict", "org/b", "hi", "--revision", ""))]
    assert said[0] == "error: org/b: no config.json at revision main (a model pushed to a branch: give its revision)"
    assert said[1] == "error: org/b: the repository has no revision 'nope'"
    assert said[2] == f"error: org/none: no such model repository on {hub.url} (or the token may not read it)"
    assert said[3].startswith("error: org/no-tokenizer: no tokenizer that loads (") and "`mtnlp push`" in said[3]
    assert said[4] == "error: org/no-weights: no weights (model.safetensors) at revision main"
    assert said[5] == "error: org/onnx: an ONNX export, which loads from a folder only: download it (hf download " \
        "org/onnx --local-dir DIR) and give DIR"
    assert said[6] == "error: revision: empty; leave it out for the default branch (main)"


def test_a_downloaded_models_card_names_the_repo_it_is_pushed_to(run_dir, tmp_path):
    with LocalHub() as hub:
        assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/first", "--revision", "exp").returncode == 0
        folder = tmp_path / "download"  # as `hf download org/first --revision exp --local-dir download` leaves it
        folder.mkdir()
        for name, data in hub.repo_files("org/first", revision="exp").items():
            (folder / name).write_bytes(data)
        assert mtnlp(hub, tmp_path, "push", str(folder), "org/second").returncode == 0
        card = hub.repo_files("org/second")["README.md"].decode()
        assert 'MultiTaskPipeline.from_pretrained("org/second")' in card and "mtnlp export org/second --task ner" in card
        assert "org/first" not in card and "exp\"" not in card and "--revision" not in card, card


def test_recipe_push_to_hub_checks_the_token_before_training(make_recipe, tmp_path, hub_session):
    recipe = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2},
                         push_to_hub=True, hub_repo_id="org/from-recipe")
    hub, session = hub_session(required_token=SECRET)
    error = last_error(session("train", str(recipe), token="hf_wrong"))
    assert error.startswith(f"error: {recipe}:") and "push_to_hub: push to org/from-recipe failed (HTTP 401)" in error
    assert "hf_wrong" not in error
    error = last_error(session("train", str(recipe), token=None))
    assert error.endswith("push_to_hub: push to org/from-recipe: no hub token: set HF_TOKEN or run `hf auth login`")
    assert not (tmp_path / "run" / "model").exists()  # nothing trained

    hub.fail("POST", r"^/api/models/org/from-recipe/commit/", 500, times=6)  # the push itself fails at the end
    error = last_error(session("train", str(recipe)))
    assert "push to org/from-recipe failed (HTTP 500)" in error
    assert error.endswith(f"(the model is kept: `mtnlp push {tmp_path / 'run' / 'model'} org/from-recipe` pushes it)")
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_pushed_model_records_hub_ids_only_and_a_transfer_its_source_commit(make_recipe, tiny_encoder, tmp_path,
                                                                              hub_session):
    source = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2}, name="source.yaml")
    hub, session = hub_session()
    proc = session("train", str(source))
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = (tmp_path / "run" / "model" / "config.json").read_text()
    # the local encoder folder and run folder appear nowhere in what a push publishes
    assert str(tiny_encoder) not in config and str(tmp_path) not in config and "_name_or_path" not in config
    assert json.loads(config)["mtnlp"]["base_model"] is None
    assert mtnlp(hub, tmp_path, "push", str(tmp_path / "run" / "model"), "org/src").returncode == 0
    commit = hub.commits("org/src")[0].oid

    transfer = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2}, name="transfer.yaml",
                           output_dir=str(tmp_path / "ft"), model={"encoder": tiny_encoder, "max_length": 64,
                                                                     "init_from": "org/src",
                                                                     "init_revision": commit})
    proc = session("train", str(transfer))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"init_from org/src (commit {commit[:12]}): the encoder" in proc.stdout, proc.stdout
    record = json.loads((tmp_path / "ft" / "model" / "config.json").read_text())["mtnlp"]
    assert record["init_from"] == {"model": "org/src", "revision": commit, "tasks": ["ner"],
                                   "encoder_of": None}
    assert record["base_model"] == "org/src"  # what the hub's model tree links to
    card = (tmp_path / "ft" / "model" / "README.md").read_text()
    assert f"after multi-task training on ner (`org/src` at {commit[:12]})" in card

    local = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 2}, name="local.yaml",
                        output_dir=str(tmp_path / "ft2"), model={"encoder": tiny_encoder, "max_length": 64,
                                                                  "init_from": str(tmp_path / "run"),
                                                                  "init_revision": "main"})
    error = last_error(session("train", str(local)))
    assert error.endswith(f"model.init_revision: {tmp_path / 'run' / 'model'} is a local folder; a revision is "
                          "for a hub id")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_weights_have_the_umask_s_permissions(umask, tiny_encoder, tmp_path):
    from mtnlp import MultiTaskModel
    from mtnlp.export import export_folder
    from transformers import AutoTokenizer

    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS)
    old = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "model")
        export_folder(model, AutoTokenizer.from_pretrained(tiny_encoder), "sentiment", tmp_path / "export")
    finally:
        os.umask(old)
    from mtnlp.checkpoint import save_checkpoint

    optimizer = torch.optim.AdamW(model.parameters())
    old = os.umask(umask)
    try:  # a checkpoint too: another user of a shared run directory may resume it
        save_checkpoint(tmp_path / "step-1", model, optimizer, {"step": 1})
    finally:
        os.umask(old)
    for path in (tmp_path / "model" / "model.safetensors", tmp_path / "export" / "model.safetensors",
                 *(tmp_path / "step-1").glob("*.safetensors")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_the_card_says_how_a_soft_shared_encoder_is_shared(tmp_path):
    from types import SimpleNamespace

    from mtnlp.hub import model_card

    tasks = {"a": {"type": "classification", "labels": ["x", "y"]}, "b": {"type": "regression", "labels": []}}
    for sharing, said, passes in ((None, "One shared bert encoder (from `org/enc`) with 2", "from one encoder pass"),
                                  ({"type": "lora", "r": 8}, "One shared bert encoder (from `org/enc`; per-task LoRA "
                                   "adapters, r 8) with 2", "from one encoder pass per task"),
                                  ({"type": "task_layers", "layers": 2}, "(from `org/enc`; its top 2 layers per task)",
                                   "from one encoder pass")):
        config = SimpleNamespace(tasks=tasks, mtnlp={"base_model": "org/enc"}, sharing=sharing,
                                 encoder=SimpleNamespace(model_type="bert"))
        card = model_card(config)
        assert said in card and f"# the a, b heads, {passes}\n" in card, card


def test_serve_of_a_hub_id_says_which_commit_it_loaded(run_dir, tmp_path):
    import httpx
    from hub_server import client_env
    from test_serve import serving

    with LocalHub() as hub:
        assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/s", "--revision", "dev").returncode == 0
        commit = hub.commits("org/s", revision="dev")[0].oid
        with serving("org/s", "--revision", "dev", "--precision", "fp32",
                     env=client_env(hub.url, tmp_path / "client", SECRET), cwd=tmp_path) as (first, url):
            assert first.startswith(f"serving org/s (commit {commit[:12]} of dev) on http://"), first
            info = httpx.get(f"{url}/info", timeout=30).json()
            assert (info["model"], info["revision"], info["commit"]) == ("org/s", "dev", commit)


def test_a_revision_the_source_lacks_is_blamed_on_init_revision(make_recipe, run_dir, tmp_path, hub_session):
    recipe = make_recipe(tasks={"ner": tiny_tasks()["ner"]}, training={"steps": 1})
    hub, session = hub_session()  # (org/source: a name the test above, in the same hub cache, does not download)
    assert mtnlp(hub, tmp_path, "push", str(run_dir / "model"), "org/source").returncode == 0
    error = last_error(session("train", str(recipe), "model.init_from=org/source", "output_dir=ft",
                               "model.init_revision=nope"))
    assert error == f"error: {recipe} (command-line override): model.init_revision: org/source: the repository has " \
                    "no revision 'nope'"
