"""The precision policy: what `auto` picks on which hardware, the spellings of full precision, the one
warning for a slow explicit choice, and where a run records its choice."""

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from mtnlp import precision
from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train

# oneDNN and ATen capped at AVX2: on any x86 CPU this is what an AVX2-only machine (e.g. Zen 3) runs
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def no_native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native", lambda: (False, "no native bf16"))


def native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native", lambda: (True, "AMX"))


@pytest.mark.parametrize("value", ["no", "No", "fp32", "FP32", False])
def test_full_precision_spellings(value):
    assert precision.precision_name(value) == "fp32"


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="fp64"):
        precision.precision_name("fp64")


@pytest.mark.parametrize("written, expected", [("BF16", "bf16"), ("Auto", "auto"), ("FP16", "fp16"), ("NO", "fp32"),
                                               ("fp32", "fp32")])
def test_every_entry_point_takes_the_same_spellings(make_recipe, written, expected):
    """--precision, training.mixed_precision and MultiTaskPipeline(precision=) took different spellings (the CLI
    and recipes refused BF16, the pipeline took it)."""
    from mtnlp.cli import precision_option

    assert load_recipe(make_recipe(), [f"training.mixed_precision={written}"]).training.mixed_precision == expected
    assert precision_option(written) == expected == precision.precision_name(written)


@pytest.mark.parametrize("written", ["false", "off", "fp64", None])
def test_every_entry_point_refuses_a_bad_precision_alike(make_recipe, capsys, written):
    """The same message (listing no, which all of them take) from the command line, a recipe and the pipeline."""
    from mtnlp.cli import main

    message = f"unknown precision {written!r} (expected one of: auto, bf16, fp16, fp32, no)"
    with pytest.raises(ValueError) as error:
        precision.precision_name(written)
    assert str(error.value) == message
    override = "null" if written is None else f"'{written}'"  # (unquoted, YAML reads false and off as false)
    with pytest.raises(UserError) as error:
        load_recipe(make_recipe(), [f"training.mixed_precision={override}"])
    assert str(error.value).endswith(f"training.mixed_precision: {message}")
    if written is not None:
        with pytest.raises(SystemExit) as stop:
            main(["predict", "some-model", "a text", "--precision", written])
        assert stop.value.code == 2
        assert f"error: --precision: {message}; see `mtnlp predict --help`" in capsys.readouterr().err


def test_the_pipeline_refuses_a_bad_precision_before_loading(monkeypatch):
    """from_pretrained loaded the whole model (a hub id: downloaded it) and only then refused precision="fp64"."""
    from mtnlp import pipeline

    def load(*args, **kwargs):
        raise AssertionError("loaded")

    monkeypatch.setattr(pipeline, "load_pretrained", load)
    with pytest.raises(ValueError, match=r"^unknown precision 'fp64' \(expected one of: auto, bf16, fp16, fp32, no\)$"):
        pipeline.MultiTaskPipeline.from_pretrained("my-org/my-model", precision="fp64")


def test_auto_on_a_cpu_without_native_bf16_is_fp32(monkeypatch):
    no_native(monkeypatch)
    chosen = precision.resolve("auto", "cpu")
    assert (chosen.name, chosen.accelerate, chosen.warning) == ("fp32", "no", None)
    assert "no native bf16" in chosen.reason and chosen.describe().startswith("precision: fp32 (auto:")
    with chosen.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_auto_on_a_cpu_with_native_bf16_is_bf16(monkeypatch):
    native(monkeypatch)
    chosen = precision.resolve("auto", "cpu")
    assert (chosen.name, chosen.accelerate, chosen.warning) == ("bf16", "bf16", None)
    assert "AMX" in chosen.reason
    with chosen.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_explicit_bf16_on_a_slow_cpu_runs_with_a_warning(monkeypatch):
    no_native(monkeypatch)
    chosen = precision.resolve("bf16", "cpu")
    assert chosen.name == "bf16" and "much slower" in chosen.warning
    native(monkeypatch)
    assert precision.resolve("bf16", "cpu").warning is None
    assert precision.resolve("fp32", "cpu").warning is None


@pytest.mark.parametrize("has_native", [True, False])
def test_fp16_on_a_cpu_runs_as_fp32_and_says_so(monkeypatch, has_native):
    """Accelerate does not autocast fp16 on a CPU: training would run fp32 while saying fp16, and an
    evaluation with fp16 autocast would then not reproduce it."""
    (native if has_native else no_native)(monkeypatch)
    chosen = precision.resolve("fp16", "cpu")
    assert (chosen.requested, chosen.name, chosen.accelerate) == ("fp16", "fp32", "no")
    assert "runs as fp32" in chosen.warning
    with chosen.autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: has_bf16)
    chosen = precision.resolve("auto", "cuda")
    assert chosen.name == expected and chosen.warning is None
    assert (precision.resolve("bf16", "cuda").warning is None) == has_bf16


def test_auto_asks_the_cuda_device_it_runs_on(monkeypatch):
    """A machine with an old GPU 0 and a new GPU 1: cuda:1 is asked about, not the current device."""
    current = [0]

    @contextlib.contextmanager
    def on_device(index):
        before, current[0] = current[0], index
        yield
        current[0] = before

    monkeypatch.setattr(torch.cuda, "device", on_device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: current[0] == 1)
    assert precision.resolve("auto", "cuda:1").name == "bf16"
    assert precision.resolve("auto", "cuda:0").name == "fp16" and precision.resolve("auto", "cuda").name == "fp16"


def test_auto_on_other_devices_is_fp32():
    assert precision.resolve("auto", "meta").name == "fp32"


def test_the_real_detection_sees_an_avx2_only_cpu():
    """Not mocked: torch's own checks, with oneDNN capped as on an AVX2-only CPU, give fp32."""
    code = "from mtnlp import precision; c = precision.resolve('auto', 'cpu'); print(c.name, '|', c.reason)"
    out = subprocess.run([sys.executable, "-c", code], env=os.environ | AVX2_ONLY, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("fp32 |"), out


@pytest.mark.parametrize("written", ["no", "false", "fp32", "'no'"])
def test_recipe_full_precision_in_file_and_override(make_recipe, written):
    path = make_recipe()
    text = path.read_text().replace("mixed_precision: fp32", f"mixed_precision: {written}")
    path.write_text(text)
    assert load_recipe(path).training.mixed_precision == "fp32"
    assert load_recipe(make_recipe(), [f"training.mixed_precision={written}"]).training.mixed_precision == "fp32"


def test_recipe_default_is_auto_and_bad_values_name_the_key(make_recipe, tmp_path):
    raw = yaml.safe_load(make_recipe().read_text())
    del raw["training"]["mixed_precision"]
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_recipe(path).training.mixed_precision == "auto"
    with pytest.raises(UserError, match=r"\(command-line override\): training.mixed_precision: unknown precision 'fp64'"):
        load_recipe(path, ["training.mixed_precision=fp64"])


def test_shipped_recipes_say_auto():
    from conftest import REPO

    for path in sorted((REPO / "recipes").rglob("*.yaml")):
        assert load_recipe(path).training.mixed_precision == "auto", path


@pytest.mark.parametrize("has_native, expected", [(False, "fp32"), (True, "bf16")])
def test_a_run_records_its_choice_and_reason(make_recipe, tmp_path, monkeypatch, capsys, has_native, expected):
    (native if has_native else no_native)(monkeypatch)
    result = train(load_recipe(make_recipe(training={"steps": 2, "mixed_precision": "auto"})))
    assert result.precision.name == expected
    assert result.accelerator.mixed_precision == {"fp32": "no", "bf16": "bf16"}[expected]
    run = tmp_path / "run"
    recorded = (run / "recipe.yaml").read_text()
    assert recorded.startswith(f"# training.mixed_precision: auto -> {expected} (auto: ")
    # the file keeps what was asked for: evaluating with it on another machine chooses for that machine
    assert yaml.safe_load(recorded)["training"]["mixed_precision"] == "auto"
    assert load_recipe(run / "recipe.yaml").training.mixed_precision == "auto"  # the record reloads
    metrics = json.loads((run / "metrics.json").read_text())["precision"]
    assert metrics["requested"] == "auto" and metrics["used"] == expected and metrics["reason"].startswith("auto: ")
    assert f"precision: {expected} (auto: " in capsys.readouterr().out


def test_cli_warns_once_for_bf16_on_an_avx2_only_cpu(make_recipe):
    recipe = make_recipe(training={"steps": 1, "mixed_precision": "bf16"})
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe)], capture_output=True, text=True,
                          env=os.environ | AVX2_ONLY, timeout=600)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bf16 on a CPU without native bf16" in warnings[0], proc.stderr
    assert "precision: bf16 (requested)" in proc.stdout


def test_a_resume_that_resolves_auto_otherwise_keeps_the_recipe_it_replaces(make_recipe, tmp_path):
    from mtnlp.report import resume_recipe, write_recipe

    recipe, run = load_recipe(make_recipe(training={"mixed_precision": "auto"})), tmp_path / "out"
    run.mkdir()
    bf16 = precision.Precision("auto", "bf16", "cpu", "auto: native bf16")
    write_recipe(run, recipe, bf16)
    assert (run / "recipe.yaml").read_text().startswith("# training.mixed_precision: auto -> bf16 (auto: native bf16)\n")
    resume_recipe(run, recipe, bf16, 2)
    assert not list(run.glob("recipe.before-step-*"))
    resume_recipe(run, recipe, precision.Precision("auto", "fp32", "cpu", "auto: no native bf16"), 4)
    assert (run / "recipe.before-step-000004.yaml").read_text().startswith("# training.mixed_precision: auto -> bf16")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_transfer_from_a_half_precision_model_trains_fp32_weights(make_recipe, tmp_path, tiny_encoder, dtype):
    """A source saved in half precision (e.g. pushed so) loads in it; the new model is fp32 all the same, as one
    from an encoder is (fp32 training crashed on bf16 encoder weights beside fp32 heads)."""
    from conftest import FOUR_TASKS
    from transformers import AutoTokenizer

    from mtnlp import MultiTaskModel

    source = tmp_path / "half"
    MultiTaskModel.from_encoder(tiny_encoder, FOUR_TASKS, dtype=dtype).save_pretrained(source)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(source)
    recipe = make_recipe(training={"steps": 1, "mixed_precision": "fp32"})
    result = train(load_recipe(recipe, [f"model.init_from={source}"]))
    assert {p.dtype for p in result.last_model.parameters()} == {torch.float32}
    assert result.last_model.config.encoder.dtype == torch.float32


def half_model(dtype):
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)).to(dtype)


@pytest.mark.parametrize("has_native", [True, False])
@pytest.mark.parametrize("asked", ["auto", "bf16", "fp16"])
def test_fp16_weights_on_a_cpu_are_cast_to_fp32(monkeypatch, has_native, asked):
    """fp16 matmuls on a CPU ran 2-5x slower than fp32 (auto kept the weights' fp16; bf16 ran fp16): they run
    as an fp32 model's would, bf16 autocast included where it runs."""
    (native if has_native else no_native)(monkeypatch)
    model = half_model(torch.float16)
    chosen = precision.for_model(asked, model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    expected = precision.resolve(asked, "cpu")
    assert (chosen.name, chosen.cast, chosen.warning) == (expected.name, True, expected.warning)
    assert "fp16 weights cast to fp32" in chosen.reason or "half-precision weights cast to fp32" in chosen.reason
    with chosen.autocast():
        out = model(torch.ones(2, 4))
    assert out.dtype == (torch.bfloat16 if chosen.name == "bf16" else torch.float32)


@pytest.mark.parametrize("has_native", [True, False])
def test_bf16_weights_asked_bf16_on_a_cpu_keep_the_slow_warning(monkeypatch, has_native):
    (native if has_native else no_native)(monkeypatch)
    model = half_model(torch.bfloat16)
    chosen = precision.for_model("bf16", model)
    assert (chosen.name, chosen.cast) == ("bf16", False) and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.autocast("cpu", dtype=torch.bfloat16), chosen.autocast():  # its own dtype: no autocast, even a caller's
        assert not torch.is_autocast_enabled("cpu")
    assert (chosen.warning is None) == has_native
    if not has_native:
        assert "much slower" in chosen.warning


@pytest.mark.parametrize("asked", ["auto", "fp16"])
def test_bf16_weights_where_fp16_runs_are_cast_to_fp32_under_fp16_autocast(monkeypatch, asked):
    """On a CUDA device without bf16 (a T4, a V100) auto picks fp16, yet a model saved in bf16 ran its bf16
    weights there, emulated; an explicit fp16 ran bf16 too. They now run as an fp32 model does: fp16 autocast."""
    def cuda_without_bf16(requested, device):
        name = "fp16" if requested in ("auto", "fp16") else requested
        return precision.Precision(requested, name, "cuda", "auto: the CUDA device lacks bf16")
    monkeypatch.setattr(precision, "resolve", cuda_without_bf16)
    model = half_model(torch.bfloat16)
    chosen = precision.for_model(asked, model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert (chosen.name, chosen.cast, chosen.warning) == ("fp16", True, None)
    assert "bf16 weights cast to fp32" in chosen.reason


def cpu_flags(monkeypatch, amx: bool, onednn_bf16: bool = True) -> None:
    """A CPU with AVX512-BF16 (and AMX if `amx`) as torch reports it, oneDNN with or without bf16 kernels, no ISA cap."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("cap, reason", [
    (None, "AMX and AVX512-BF16"),
    ("ALL", "AMX and AVX512-BF16"),
    ("AVX512_CORE_AMX", "AMX and AVX512-BF16"),
    ("avx10_1_512_amx_fp16", "AMX and AVX512-BF16"),
    ("AVX512_CORE_BF16", "AVX512-BF16"),  # oneDNN's ISA just below its AMX ones
    ("AVX10_2_512", "AVX512-BF16"),
    ("NOT_AN_ISA", "AMX and AVX512-BF16"),  # (oneDNN ignores a value it does not know)
])
def test_the_reason_names_amx_only_where_onednn_may_use_it(monkeypatch, cap, reason):
    cpu_flags(monkeypatch, amx=True)
    if cap is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.cpu_native() == (True, reason)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)  # AMX alone (a VM masking the flag)
    assert precision.cpu_native() == (False, "no AVX512-BF16 (oneDNN's AMX kernels need it too)")


def test_a_onednn_without_bf16_kernels_is_not_native(monkeypatch):
    cpu_flags(monkeypatch, amx=True, onednn_bf16=False)
    assert precision.cpu_native() == (False, "oneDNN does not use its bf16 units")
    assert precision.resolve("auto", "cpu").name == "fp32"


@pytest.mark.parametrize("variables, expected", [
    ({}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, False),  # an AVX-512 cap: torch still says bf16 is supported
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),  # oneDNN reads it in any case
    ({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, False),
    ({"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX2"}, True),  # oneDNN reads DNNL_ only without ONEDNN_
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
])
def test_a_cap_on_onednn_below_its_bf16_isa_is_not_native(monkeypatch, variables, expected):
    """Capped to AVX512_CORE or AVX512_CORE_VNNI, oneDNN emulates bf16 (matmuls about 2x slower than fp32 on a
    Zen 4), while torch's check still said it supports bf16: auto picked bf16."""
    cpu_flags(monkeypatch, amx=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    native_bf16, why = precision.cpu_native()
    assert native_bf16 == expected
    if not expected:
        name, value = next(iter(variables.items()))
        assert why == f"{name}={value.upper()} keeps oneDNN below AVX512_CORE_BF16: it emulates bf16"
        assert precision.resolve("auto", "cpu").name == "fp32"
