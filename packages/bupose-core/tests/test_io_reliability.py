"""Bad input at the library level (issue 17): image headers checked before decoding, the pixel limit,
native decoder noise, the output-folder check, checkpoint sniffing and the one-line CLI errors.
(The whole corpus runs through the CLI in integration_tests/test_reliability_corpus.py.)"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bupose.core.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_output_dir,
    max_image_pixels,
    quiet_native_stderr,
    read_header,
    read_image,
    set_max_image_pixels,
)
from bupose.core.weights import CheckpointError, read_checkpoint, save_safetensors


def _jpeg(h: int = 12, w: int = 16) -> bytes:
    return cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8))[1].tobytes()


def _png(h: int = 12, w: int = 16) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 90, np.uint8))[1].tobytes()


def test_headers_give_format_and_size() -> None:
    img = np.zeros((12, 16, 3), np.uint8)
    for ext, fmt in ((".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP"), (".tif", "TIFF"), (".webp", "WebP"),
                     (".ppm", "PPM/PGM")):
        header = read_header(cv2.imencode(ext, img)[1].tobytes())
        assert header is not None and (header.format, header.width, header.height) == (fmt, 16, 12), ext
    assert read_header(b"hello") is None
    with pytest.raises(ValueError, match="truncated JPEG"):
        read_header(_jpeg()[:60])
    with pytest.raises(ValueError, match="truncated PNG"):
        read_header(_png()[:40])


def test_truncated_and_text_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "cut.jpg").write_bytes(_jpeg(40, 40)[:300])
    with pytest.raises(ValueError, match=r"cut\.jpg: not a readable image \(truncated JPEG: the data ends"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "cut.png").write_bytes(_png(40, 40)[:60])
    with pytest.raises(ValueError, match=r"cut\.png: not a readable image \(truncated PNG"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "page.jpg").write_text("<html>not a picture</html>")
    with pytest.raises(ValueError, match="holds text, not image data"):
        read_image(tmp_path / "page.jpg")


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_png(2, 2))
    data[16:24] = struct.pack(">II", 50_000, 50_000)  # the IHDR claims 2.5 gigapixels
    (tmp_path / "huge.png").write_bytes(bytes(data))
    decoded: list[int] = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(ValueError, match=r"huge\.png: PNG header says 50000x50000 = 2,500,000,000 pixels, over the "
                                         r"limit of 100,000,000 pixels; not decoded \(raise it with --max-image-pixels"):
        read_image(tmp_path / "huge.png")
    assert decoded == []


def test_pixel_limit_env_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.png").write_bytes(_png(12, 16))  # 192 pixels
    monkeypatch.setenv("BUPOSE_MAX_IMAGE_PIXELS", "100")
    assert max_image_pixels() == 100
    with pytest.raises(ValueError, match="over the limit of 100 pixels"):
        read_image(tmp_path / "a.png")
    try:
        set_max_image_pixels(200)
        assert read_image(tmp_path / "a.png").shape == (12, 16, 3)
    finally:
        set_max_image_pixels(None)
    monkeypatch.setenv("BUPOSE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="BUPOSE_MAX_IMAGE_PIXELS='lots': expected a positive integer"):
        max_image_pixels()
    monkeypatch.delenv("BUPOSE_MAX_IMAGE_PIXELS")
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="positive integer"):
        set_max_image_pixels(0)


def test_conversions(tmp_path: Path) -> None:
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    got = read_image(tmp_path / "g16.png")
    assert got.shape == (3, 4, 3) and got.dtype == np.uint8
    assert np.array_equal(got[..., 0], (gray16 >> 8).astype(np.uint8)) and np.array_equal(got[..., 0], got[..., 2])
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGRA
    rgba[..., 3] = 7
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]


def test_native_noise_is_hidden_unless_debugging(capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUPOSE_DEBUG", raising=False)
    with quiet_native_stderr():
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
    assert "libpng" not in capfd.readouterr().err
    monkeypatch.setenv("BUPOSE_DEBUG", "1")
    with quiet_native_stderr():
        os.write(2, b"libpng warning: shown\n")
    assert "libpng warning: shown" in capfd.readouterr().err


def test_check_output_dir_creates_nothing(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--output .*file/out: .*file is not a folder"):
        check_output_dir(tmp_path / "file" / "out")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_are_sniffed_and_never_run_code(tmp_path: Path) -> None:
    (tmp_path / "r.pth").write_bytes(b"\x13" + bytes(range(200)))
    with pytest.raises(CheckpointError, match=r"r\.pth: not a checkpoint \(a PyTorch file is a zip archive or a pickle"):
        read_checkpoint(tmp_path / "r.pth")
    marker = tmp_path / "ran"
    torch.save({"x": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"holds pickled Python object \w+\.system, which was not loaded.*--trust-checkpoint"):
        read_checkpoint(tmp_path / "evil.pth")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"x": _Evil(marker)}, f, protocol=4)
    with pytest.raises(CheckpointError, match="which was not loaded"):
        read_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()
    save_safetensors(tmp_path / "w.safetensors", {"a": torch.ones(2)}, {"head": "h"})
    (tmp_path / "w.pth").write_bytes((tmp_path / "w.safetensors").read_bytes())
    raw, meta = read_checkpoint(tmp_path / "w.pth")  # safetensors under another name: recognised
    assert list(raw) == ["a"] and meta == {"head": "h"}
    whole = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(tmp_path / "half.safetensors")


def test_cli_errors_are_one_line() -> None:
    from bupose.core.cli import _one_line
    from bupose.core.weights import CheckpointError as CE

    assert _one_line(CE("f.pth: bad\nsecond line")) == "f.pth: bad second line"
    assert _one_line(RuntimeError("boom")) == "RuntimeError: boom (run with --debug for the traceback)"
