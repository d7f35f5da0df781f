"""bupose.core.io.read_image and bupose.core.weights.unwrap_checkpoint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bupose.core.io import read_image
from bupose.core.weights import CheckpointError, unwrap_checkpoint


def test_read_image_rgb_and_errors(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    got = read_image(tmp_path / "a.png")
    assert got.dtype == np.uint8 and got.shape == (6, 8, 3) and np.array_equal(got, rgb)
    with pytest.raises(FileNotFoundError, match=r"nope\.png: image file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="not a file"):
        read_image(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jpg: the image file is empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"text\.png: not a readable image"):
        read_image(str(tmp_path / "text.png"))


def test_unwrap_checkpoint() -> None:
    t = torch.zeros(1)
    assert unwrap_checkpoint({"module.a": t, "module.b": t}) == {"a": t, "b": t}
    resumable = {"epoch": 3, "model": "name", "state_dict": {"a": t}, "best_state_dict": {"b": t}}
    assert list(unwrap_checkpoint(resumable)) == ["a"]
    assert list(unwrap_checkpoint({"meta": {}, "weights": {"c": t}})) == ["c"]
    assert list(unwrap_checkpoint({"x": {"a": t}, "model": {"m": t}}, wrappers=("model",))) == ["m"]
    with pytest.raises(CheckpointError, match=r"f\.pth: expected a dict of tensors, found list"):
        unwrap_checkpoint([t], "f.pth")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=r"'state_dict'.*non-tensor entries \['epoch', 'optimizer'\]"):
        unwrap_checkpoint({"epoch": 3, "optimizer": {"lr": 1}}, "f.pth")
    with pytest.raises(CheckpointError, match="the state_dict is empty"):
        unwrap_checkpoint({})
