"""Safe loading: weights only from safetensors, optimizer state with weights_only, no remote code."""

import re
from pathlib import Path

import pytest
import torch

from mtnlp.checkpoint import load_checkpoint
from mtnlp.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "mtnlp"


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/mtnlp-pwned"),))


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    from safetensors.torch import save_file

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    folder = tmp_path / "step-000001"
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    torch.save({"state": {}, "param_groups": [], "evil": Payload()}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text("{}")
    Path("/tmp/mtnlp-pwned").unlink(missing_ok=True)
    with pytest.raises(UserError, match="optimizer.pt: refused to load"):
        load_checkpoint(folder, model, optimizer)
    assert not Path("/tmp/mtnlp-pwned").exists()


def test_source_never_loads_pickles_or_remote_code():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", source):
            assert "weights_only=True" in call, (path, call)
        assert "trust_remote_code=True" not in source, path
        assert "pickle.load" not in source and "pickle.loads" not in source, path


def test_source_refuses_remote_code_without_asking():
    # with no trust_remote_code, transformers asks on stdin whether to run a folder's auto_map code
    import ast

    calls = 0
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):  # calls, not text (a printed usage line is not one)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "from_pretrained" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id.startswith("Auto"):
                calls += 1
                given = {k.arg: k.value for k in node.keywords}
                assert isinstance(given.get("trust_remote_code"), ast.Constant) \
                    and given["trust_remote_code"].value is False, (path, node.lineno)
    assert calls >= 5  # (the scan finds them)


def with_custom_code(folder: Path, file: str, auto_map: dict, module: str, marker: Path) -> Path:
    """`folder` whose `file` (config.json or tokenizer_config.json) names `module`.py's classes in an auto_map;
    importing the module creates `marker`."""
    import json

    config = json.loads((folder / file).read_text())
    config["auto_map"] = auto_map
    if file == "config.json":  # (its tokenizer_config.json names a class of transformers: the model's load asks)
        config["model_type"] = "evilbert"
    else:
        config.pop("tokenizer_class", None)
    (folder / file).write_text(json.dumps(config))
    (folder / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertModel, BertTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
        "class EvilTok(BertTokenizerFast):\n    pass\n")
    return folder


def test_a_folders_custom_code_is_refused_even_when_the_user_says_yes(tmp_path, tiny_encoder, make_recipe):
    import shutil

    from cli_runner import CliSession
    from conftest import save_model

    marker = tmp_path / "custom-code-ran"
    model = with_custom_code(save_model(tmp_path / "model", tiny_encoder, {"s": {"type": "classification",
                                                                                 "labels": ["a", "b"]}}),
                             "tokenizer_config.json", {"AutoTokenizer": [None, "evil.EvilTok"]}, "evil", marker)
    encoder = with_custom_code(Path(shutil.copytree(tiny_encoder, tmp_path / "encoder")), "config.json",
                               {"AutoConfig": "evilmodel.EvilConfig", "AutoModel": "evilmodel.EvilModel"},
                               "evilmodel", marker)
    recipe = write_recipe_for(make_recipe, encoder)
    with CliSession() as session:
        predicted = session("predict", str(model), "a fine movie", stdin="y\n")
        trained = session("train", str(recipe), stdin="y\n")
    for proc, where, file in ((predicted, f"{model}: ", "tokenizer_config.json"),
                              (trained, f"{recipe}:", "config.json")):
        assert proc.returncode == 2 and proc.stdout == "", proc
        lines = proc.stderr.rstrip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith(f"error: {where}"), proc.stderr
        assert f"{file} (auto_map: " in lines[0] and "mtnlp never runs" in lines[0], proc.stderr
    assert not marker.exists()


def write_recipe_for(make_recipe, encoder: Path) -> Path:
    import yaml

    recipe = make_recipe()
    spec = yaml.safe_load(recipe.read_text())
    spec["model"]["encoder"] = str(encoder)
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    return recipe
