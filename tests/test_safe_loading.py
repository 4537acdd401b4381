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
