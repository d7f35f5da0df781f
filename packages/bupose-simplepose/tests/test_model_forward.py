"""IMHN forward parity with the official NetworkEval(bn=True): all 4 stacks x 5 scales (forward_default.pt)."""

from __future__ import annotations

import pytest
import torch
from _sp_golden import load, official_state_dict

from bupose.simplepose.convert import from_official
from bupose.simplepose.model import IMHN


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    return official_state_dict()


def _loaded_imhn(official_sd: dict[str, torch.Tensor]) -> IMHN:
    with torch.device("meta"):
        model = IMHN()
    converted = from_official({"weights": official_sd, "epoch": 52, "train_loss": 0.1})
    sd = {k[len("backbone."):]: v for k, v in converted.items()}
    own = model.state_dict()
    assert list(sd) == list(own), "official key order is the module order"
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def test_forward_matches_official(official_sd: dict[str, torch.Tensor]) -> None:
    g = load("forward_default.pt")
    model = _loaded_imhn(official_sd)
    x = g["input/images_nhwc"].permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        out = model(x)
    worst = 0.0
    for s in range(4):
        for j in range(5):
            expected = g[f"output/stack{s}/scale{j}"]
            got = out[f"stack{s}_scale{j}_pred"]
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"stack{s}/scale{j}")
            worst = max(worst, float((got - expected).abs().max()))
    print(f"max abs error over 4 stacks x 5 scales: {worst:.3g}")
    assert worst < 1e-4


def test_strict_load_into_pose_model(official_sd: dict[str, torch.Tensor]) -> None:
    from bupose.core.model import build_model

    with torch.device("meta"):
        model = build_model("simplepose", "imhn")
    converted = from_official({"weights": official_sd})
    assert len(converted) == 1848
    own = model.state_dict()
    assert list(own) == list(converted)
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in converted.items())
    model.load_state_dict(converted, strict=True, assign=True)


def test_strict_load_reports_a_missing_key(official_sd: dict[str, torch.Tensor]) -> None:
    from bupose.core.weights import CheckpointMismatchError

    broken = dict(official_sd)
    del broken["posenet.outs.3.0.conv.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"posenet\.outs\.3\.0\.conv\.bias"):
        from_official({"weights": broken})
