"""The reliability corpus (issue 17): bad inputs made at test time, run through the real ``bupose`` CLI.

Every case checks the same rules: no traceback, one clear line naming the file (or field) and what
is wrong, the good items of the same run still get their results, nothing half-written is left behind,
and the exit status says whether something failed. ``docs/reliability.md`` is the table of these cases.

The images of ``bupose run`` go through one run over a folder that mixes them with good files (one
model load); checkpoints, ``bupose eval`` and ``bupose train``/``data`` inputs are one run each. No
binary file is committed: the builders below write every file from its format's specification.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bupose.core.plugins import get_registry

pytestmark = pytest.mark.skipif(
    "example" not in get_registry().names("heads"), reason="needs the example plugin (bupose-example-head)"
)
HAS_DEKR = "dekr" in get_registry().names("heads")
NATIVE_NOISE = ("Corrupt JPEG data", "libpng", "Premature end", "moov atom", "[mjpeg", "[mov,", "[avi", "imgcodecs")

# ------------------------------------------------------------------------------------- file builders
RNG_SEED = 17


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(RNG_SEED + seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(ext: str, img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok, ext
    return buf.tobytes()


def jpeg(h: int = 20, w: int = 30, seed: int = 0) -> bytes:
    return encode(".jpg", rgb(h, w, seed))


def png(h: int = 20, w: int = 30, seed: int = 0) -> bytes:
    return encode(".png", rgb(h, w, seed))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR claims ``width`` x ``height`` but whose data is one row of 1 pixel."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00")) + _chunk(b"IEND", b"")


def palette_png(h: int = 12, w: int = 16) -> bytes:
    """An 8-bit palette (colour type 3) PNG with 4 colours."""
    palette = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    idx = (np.arange(h * w).reshape(h, w) % 4).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in idx)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", palette)
        + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    )  # fmt: skip


def _lzw_literals(indices: np.ndarray, min_size: int) -> bytes:
    """GIF LZW data that only uses literal codes (a clear code before the table would grow)."""
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    width = min_size + 1
    codes = [clear]
    next_code, first = eoi + 1, True
    for v in indices.tolist():
        codes.append(int(v))
        if first:
            first = False
        else:
            next_code += 1
        if next_code >= (1 << width) - 1:
            codes.append(clear)
            next_code, first = eoi + 1, True
    codes.append(eoi)
    acc = nbits = 0
    out = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def gif(frames: int = 3, h: int = 6, w: int = 8) -> bytes:
    """A looping GIF89a with ``frames`` frames of 4 colours (frame k is shifted by k)."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0b10000001, 0, 0))
    out += bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for k in range(frames):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", 10) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        idx = ((np.arange(h * w) + k) % 4).astype(np.uint8)
        data = _lzw_literals(idx, 2)
        out += b"\x02"
        for i in range(0, len(data), 255):
            block = data[i : i + 255]
            out += bytes([len(block)]) + block
        out += b"\x00"
    out += b"\x3b"
    return bytes(out)


def exif_rotated_jpeg(h: int = 20, w: int = 30, orientation: int = 6) -> bytes:
    """A JPEG with an EXIF APP1 segment whose Orientation tag is ``orientation`` (6: rotate 90 CW)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = jpeg(h, w, seed=3)
    return data[:2] + app1 + data[2:]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF header is patched to claim ``width`` x ``height``."""
    data = bytearray(jpeg(8, 8, seed=4))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def corrupt_scan_jpeg() -> bytes:
    """A JPEG with bytes of its entropy-coded data overwritten (end marker intact): libjpeg warns."""
    data = bytearray(jpeg(32, 32, seed=5))
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    for k in range(start + 10, min(start + 60, len(data) - 4), 7):
        data[k] = 0xFF if k % 2 else 0x00
    return bytes(data)


def cmyk_jpeg() -> bytes | None:
    """A CMYK JPEG (needs Pillow to write one; ``None`` without it)."""
    try:
        from PIL import Image
    except ImportError:
        return None


    img = Image.new("CMYK", (30, 20), (0, 128, 255, 10))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def video(frames: int = 2, h: int = 32, w: int = 48) -> bytes:
    """A tiny MJPG AVI."""
    import os
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".avi")
    os.close(fd)
    try:
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
        for k in range(frames):
            vw.write(rgb(h, w, seed=10 + k))
        vw.release()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


# ------------------------------------------------------------------------------------------ helpers
def bupose(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m bupose.core ARGS`` as a user runs it (no --debug, one thread)."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full.pop("BUPOSE_DEBUG", None)
    if env is None or MAX_PIXELS not in env:
        full.pop(MAX_PIXELS, None)
    return subprocess.run(
        [sys.executable, "-m", "bupose.core", *args], capture_output=True, text=True, timeout=timeout, env=full
    )


MAX_PIXELS = "BUPOSE_MAX_IMAGE_PIXELS"


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no native-library noise on either stream."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    for noise in NATIVE_NOISE:
        assert noise not in both, both


def the_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one ``Error:`` line of a failed command, checked to contain every fragment."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert_clean(proc)
    errors = [ln for ln in lines(proc.stderr) if ln.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def no_leftovers(folder: Path) -> None:
    """No temporary or half-written file in ``folder`` (atomic writes leave none)."""
    if folder.exists():
        left = [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
        assert not left, left


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one random-weight example model (reused by every run) and one good image."""
    import torch

    from bupose.core.model import build_model
    from bupose.core.weights import save_safetensors

    root = tmp_path_factory.mktemp("corpus")
    torch.manual_seed(0)
    model = build_model("example", "example_convnet")
    save_safetensors(root / "example.safetensors", model.state_dict(), model.metadata())
    (root / "good.png").write_bytes(png(24, 32, seed=1))
    return root


def run_args(work: Path, out: Path, *inputs: str | Path, weights: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "run", "--head", "example", "--backbone", "example_convnet",
        "--weights", str(weights or work / "example.safetensors"), "--output", str(out), *extra,
        *(str(i) for i in inputs),
    ]  # fmt: skip


# ------------------------------------------------------------------------------ images for bupose run
@dataclass(frozen=True)
class ImageCase:
    name: str
    build: Callable[[], bytes | None]
    expect: str | None  # None: processed (results + overlay); else a fragment of its one error line
    why: str


def _text() -> bytes:
    return b"<html><body>this is a web page saved as a .jpg</body></html>\n"


def _gif_expectation() -> str | None:
    return None if int(cv2.__version__.split(".")[0]) * 100 + int(cv2.__version__.split(".")[1]) >= 411 else "GIF decoding needs"


LIMIT = 10_000  # the pixel limit of the folder run (BUPOSE_MAX_IMAGE_PIXELS)

IMAGE_CASES = [
    ImageCase("good_a.jpg", lambda: jpeg(20, 30, seed=2), None, "a plain JPEG"),
    ImageCase("good_b.png", lambda: png(18, 26, seed=3), None, "a plain PNG"),
    ImageCase("zero_bytes.jpg", lambda: b"", "the image file is empty", "zero-byte file"),
    ImageCase("webpage.jpg", _text, "holds text, not image data", "text named .jpg"),
    ImageCase("random_bytes.png", lambda: np.random.default_rng(5).integers(1, 256, 400, dtype=np.uint8).tobytes(),
              "unknown image format", "random bytes named .png"),
    ImageCase("truncated.jpg", lambda: jpeg(40, 40, seed=6)[: len(jpeg(40, 40, seed=6)) // 2], "truncated JPEG",
              "JPEG cut in half"),
    ImageCase("truncated.png", lambda: png(40, 40, seed=7)[: len(png(40, 40, seed=7)) // 2], "truncated PNG",
              "PNG cut in half"),
    ImageCase("header_only.jpg", lambda: jpeg(16, 16, seed=8)[:200], "truncated JPEG", "JPEG header without scan data"),
    ImageCase("gray16.png", lambda: encode(".png", np.random.default_rng(9).integers(0, 65535, (12, 14), dtype=np.uint16)),
              None, "16-bit grayscale PNG (scaled to 8 bits)"),
    ImageCase("rgb16.png", lambda: encode(".png", np.random.default_rng(10).integers(0, 65535, (12, 14, 3), dtype=np.uint16)),
              None, "16-bit RGB PNG"),
    ImageCase("gray8.png", lambda: encode(".png", rgb(14, 12, seed=11)[..., 0]), None, "8-bit grayscale"),
    ImageCase("rgba.png", lambda: encode(".png", np.dstack([rgb(14, 12, 12), rgb(14, 12, 13)[..., :1]])), None,
              "RGBA PNG (alpha dropped)"),
    ImageCase("palette.png", palette_png, None, "palette PNG"),
    ImageCase("cmyk.jpg", cmyk_jpeg, None, "CMYK JPEG (needs Pillow to write)"),
    ImageCase("one_pixel.png", lambda: png(1, 1, seed=14), None, "1x1 image"),
    ImageCase("three_by_two.png", lambda: png(2, 3, seed=15), None, "3x2 image"),
    ImageCase("wide_strip.png", lambda: png(1, 3000, seed=16), None, "aspect ratio 3000:1"),
    ImageCase("tall_strip.png", lambda: png(2000, 1, seed=17), None, "aspect ratio 1:2000"),
    ImageCase("claims_huge.jpg", lambda: jpeg_claiming(60000, 60000), "over the limit of 10,000 pixels",
              "JPEG header claiming 60000x60000"),
    ImageCase("claims_huge.png", lambda: png_header(100_000, 100_000), "over the limit of 10,000 pixels",
              "PNG header claiming 100000x100000"),
    ImageCase("over_limit.png", lambda: png(100, 120, seed=18), "12,000 pixels, over the limit of 10,000",
              "a real image over the (lowered) limit"),
    ImageCase("zero_size.png", lambda: png_header(0, 0), "header says 0x0", "PNG header claiming 0x0"),
    ImageCase("exif_rotated.jpg", exif_rotated_jpeg, None, "EXIF orientation 6 (applied, with one note line)"),
    ImageCase("animated.gif", gif, _gif_expectation(), "3-frame animated GIF (first frame)"),
    ImageCase("corrupt_scan.jpg", corrupt_scan_jpeg, None, "damaged scan data, end marker intact (libjpeg warns)"),
    ImageCase("bitmap.bmp", lambda: encode(".bmp", rgb(10, 12, seed=19)), None, "BMP"),
    ImageCase("tiff.tif", lambda: encode(".tif", rgb(10, 12, seed=20)), None, "TIFF"),
    ImageCase("webp.webp", lambda: encode(".webp", rgb(10, 12, seed=21)), None, "WebP"),
    ImageCase("portable.pgm", lambda: encode(".pgm", rgb(10, 12, seed=22)[..., 0]), None, "PGM"),
    ImageCase("clip.avi", video, None, "a good 2-frame video"),
    ImageCase("corrupt.mp4", lambda: np.random.default_rng(23).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
              "cannot be opened as a video", "random bytes named .mp4"),
    ImageCase("notes.mp4", lambda: b"not a video\n" * 20, "cannot be opened as a video", "text named .mp4"),
]


def prepare_images(work: Path, submit: Submit) -> dict[str, Any]:
    """One ``bupose run`` over a folder of every image case, plus a path that does not exist."""
    folder = work / "mixed"
    folder.mkdir()
    built = {}
    for case in IMAGE_CASES:
        data = case.build()
        if data is not None:
            (folder / case.name).write_bytes(data)
            built[case.name] = data
    out = work / "mixed_out"
    submit("images", run_args(work, out, folder, work / "no_such_image.jpg"), {MAX_PIXELS: str(LIMIT)})
    return {"out": out, "built": built, "folder": folder}


@pytest.fixture(scope="module")
def image_run(launched: Launched) -> dict[str, Any]:
    info = dict(launched.info["images"])
    info["proc"] = launched.result("images")
    info["results"] = json.loads((info["out"] / "results.json").read_text())
    return info


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.name for c in IMAGE_CASES])
def test_image_case(case: ImageCase, image_run: dict[str, Any]) -> None:
    if case.name not in image_run["built"]:
        pytest.skip(f"{case.why}: cannot be written here")
    proc, results, out = image_run["proc"], image_run["results"], image_run["out"]
    naming = [ln for ln in lines(proc.stderr) if case.name in ln]
    ids = {r["image_id"] for r in results}
    stem = Path(case.name).stem
    if case.expect is None:
        # a good file is named only by the note that its EXIF orientation was applied (docs/run.md)
        assert all(ln.startswith("note:") and "EXIF orientation" in ln for ln in naming), naming
        mine = [r for r in results if str(r["image_id"]).split("#")[0] == case.name]
        assert mine, f"{case.name} ({case.why}) got no results: {sorted(ids)}"
        for r in mine:
            assert len(r["keypoints"]) == 51 and all(np.isfinite(r["keypoints"])) and np.isfinite(r["score"])
        overlay = out / "overlays" / (f"{stem}.mp4" if case.name.endswith(".avi") else f"{stem}.jpg")
        assert overlay.is_file()
    else:
        assert len(naming) == 1, (case.name, proc.stderr)
        assert case.expect in naming[0], naming[0]
        assert case.name not in {str(i).split("#")[0] for i in ids}
        assert not list((out / "overlays").glob(f"{stem}.*"))


def test_image_run_as_a_whole(image_run: dict[str, Any]) -> None:
    proc, out = image_run["proc"], image_run["out"]
    assert_clean(proc)
    assert proc.returncode != 0  # some inputs failed: the exit status says so
    bad = [c for c in IMAGE_CASES if c.expect is not None and c.name in image_run["built"]]
    assert "no_such_image.jpg" in proc.stderr
    errors = [ln for ln in lines(proc.stderr) if ln.startswith("error:")]
    assert len(errors) == len(bad) + 1, proc.stderr  # one line per bad input
    # the other lines are the run's own progress notes, never library noise
    info = ("Error:", "bupose run", "error:", "loading ", "model ready", "note:", "device:", "skipped:")
    assert all(ln.startswith(info) for ln in lines(proc.stderr)), proc.stderr
    assert the_error(proc).count("\n") == 0
    no_leftovers(out)
    # the documented orientation rule: EXIF orientation is applied (a photo is turned upright)
    overlay = cv2.imread(str(out / "overlays" / "exif_rotated.jpg"))
    assert overlay.shape[:2] == (30, 20)
    # an animated GIF gives its first frame
    if _gif_expectation() is None:
        from bupose.core.io import read_image

        first = read_image(image_run["folder"] / "animated.gif")
        assert first.shape == (6, 8, 3) and first[0, 0].tolist() == [0, 0, 0] and first[0, 1].tolist() == [255, 0, 0]


def prepare_misc(work: Path, submit: Submit) -> dict[str, Any]:
    (work / "limit").mkdir()
    (work / "limit" / "big.png").write_bytes(png(100, 120, seed=18))
    submit("flag_limit", run_args(work, work / "limit_out", work / "limit" / "big.png",
                                  extra=("--max-image-pixels", "20000")), {MAX_PIXELS: str(LIMIT)})
    (work / "empty").mkdir()
    submit("empty_folder", run_args(work, work / "empty_out", work / "empty"))
    submit("nonexistent", run_args(work, work / "nx_out", work / "nowhere.jpg"))
    (work / "allbad").mkdir()
    (work / "allbad" / "a.jpg").write_bytes(b"")
    (work / "allbad" / "b.png").write_bytes(_text())
    submit("all_bad", run_args(work, work / "allbad_out", work / "allbad"))
    (work / "a_file").write_text("not a folder")
    submit("unwritable", run_args(work, work / "a_file" / "out", work / "good.png"))
    (work / "debug.pth").write_bytes(b"\x00garbage" * 10)
    submit("debug", ["--debug", *run_args(work, work / "debug_out", work / "good.png", weights=work / "debug.pth")])
    return {}


def test_flag_raises_the_pixel_limit(work: Path, launched: Launched) -> None:
    proc = launched.result("flag_limit")
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc)
    assert {r["image_id"] for r in json.loads((work / "limit_out" / "results.json").read_text())} == {"big.png"}


def test_empty_folder(work: Path, launched: Launched) -> None:
    the_error(launched.result("empty_folder"), "empty", "has no images or videos")
    assert not (work / "empty_out").exists()


def test_nonexistent_input(work: Path, launched: Launched) -> None:
    the_error(launched.result("nonexistent"), "nowhere.jpg", "no such file")
    assert not (work / "nx_out").exists()


def test_all_inputs_bad(work: Path, launched: Launched) -> None:
    proc = launched.result("all_bad")
    the_error(proc, "no input could be read")
    assert len([ln for ln in lines(proc.stderr) if "a.jpg" in ln]) == 1
    assert len([ln for ln in lines(proc.stderr) if "b.png" in ln]) == 1
    no_leftovers(work / "allbad_out")


def test_unwritable_output_is_found_before_any_work(launched: Launched) -> None:
    proc = launched.result("unwritable")
    the_error(proc, "--output", "a_file", "is not a folder")
    assert "image(s)" not in proc.stdout


def test_debug_shows_the_traceback(launched: Launched) -> None:
    proc = launched.result("debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "debug.pth" in proc.stderr


# ------------------------------------------------------------------------------------------ checkpoints
class _Evil:
    """Unpickling this would run a shell command (it must not: weights_only)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _fake_dekr(width: int, rows: int) -> dict[str, Any]:
    """The keys and shapes an official DEKR file is recognised by (HRNet-W32/W48, COCO 18 / CrowdPose 15 rows)."""
    import torch

    channels = {32: 480, 48: 720}[width]
    return {
        "conv1.weight": torch.zeros(64, 3, 3, 3),
        "transition_heatmap.0.weight": torch.zeros(width, channels, 1, 1),
        "head_heatmap.1.weight": torch.zeros(rows, width, 1, 1),
        "offset_feature_layers.0.0.regular_matrix": torch.zeros(2, 9),
    }


def _ck_truncated_safetensors(work: Path, p: Path) -> None:
    raw = (work / "example.safetensors").read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _ck_truncated_pth(work: Path, p: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(work / "example.safetensors")), p)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _ck_evil_torch(work: Path, p: Path) -> None:
    import torch

    torch.save({"state_dict": _Evil(str(work / "PWNED_torch"))}, p)


def _ck_evil_pickle(work: Path, p: Path) -> None:
    with open(p, "wb") as f:
        pickle.dump({"state_dict": _Evil(str(work / "PWNED_pickle"))}, f, protocol=4)


def _ck_other_head(work: Path, p: Path) -> None:
    import torch

    from bupose.core.weights import save_safetensors

    save_safetensors(p, {"head.x": torch.zeros(1)}, {"head": "dekr", "backbone": "hrnet_w32", "layout": "coco17"})


def _ck_wrong_keys(work: Path, p: Path) -> None:
    from safetensors.torch import load_file

    from bupose.core.weights import save_safetensors

    sd = load_file(str(work / "example.safetensors"))
    keys = sorted(sd)
    renamed = {("old." + k if i % 3 == 0 else k): v for i, (k, v) in enumerate(sd.items())}
    renamed.update({f"extra.block{i}.weight": sd[keys[0]].clone() for i in range(20)})
    save_safetensors(p, renamed, {"head": "example", "backbone": "example_convnet", "layout": "coco17"})


def _torch_save(obj_fn: Callable[[], Any]) -> Callable[[Path, Path], None]:
    def make(work: Path, p: Path) -> None:
        import torch

        torch.save(obj_fn(), p)

    return make


@dataclass(frozen=True)
class CheckpointCase:
    name: str
    file: str
    make: Callable[[Path, Path], None] | None
    expect: tuple[str, ...]
    model: tuple[str, ...] = ("--head", "example", "--backbone", "example_convnet")
    needs_dekr: bool = False


CHECKPOINT_CASES = [
    CheckpointCase("missing", "absent.safetensors", None, ("absent.safetensors", "file not found")),
    CheckpointCase("empty", "empty.pth", lambda w, p: p.write_bytes(b""), ("empty.pth", "empty file")),
    CheckpointCase("random_bytes", "random.pth", lambda w, p: p.write_bytes(b"\x13" + os.urandom(4000)),
                   ("random.pth", "not a checkpoint")),
    CheckpointCase("json_named_pth", "config.pth", lambda w, p: p.write_text('{"lr": 0.1}'), ("config.pth", "not a checkpoint")),
    CheckpointCase("truncated_safetensors", "half.safetensors", _ck_truncated_safetensors,
                   ("half.safetensors", "not a readable safetensors file")),
    CheckpointCase("truncated_pth", "half.pth", _ck_truncated_pth, ("half.pth", "not a readable checkpoint")),
    CheckpointCase("malicious_torch_pickle", "evil.pth", _ck_evil_torch, ("evil.pth", "system", "not loaded", "--trust-checkpoint")),
    CheckpointCase("malicious_plain_pickle", "evil.pkl", _ck_evil_pickle, ("evil.pkl", "not loaded", "--trust-checkpoint")),
    CheckpointCase("other_head_bupose_file", "dekr.safetensors", _ck_other_head,
                   ("dekr.safetensors", "checkpoint is for head 'dekr'", "--head dekr")),
    CheckpointCase("wrong_keys_safetensors", "keys.safetensors", _ck_wrong_keys,
                   ("keys.safetensors", "missing keys: ", "unexpected keys: ", "in all)")),
    CheckpointCase("official_dekr_for_other_head", "pose_dekr_hrnetw32_coco.pth", _torch_save(lambda: _fake_dekr(32, 18)),
                   ("official dekr checkpoint", "--head dekr"), needs_dekr=True),
    CheckpointCase("w48_weights_for_w32", "pose_dekr_hrnetw48_coco.pth", _torch_save(lambda: _fake_dekr(48, 18)),
                   ("hrnet_w48 (width 48)", "--backbone hrnet_w32 (width 32)"),
                   ("--head", "dekr", "--backbone", "hrnet_w32"), needs_dekr=True),
    CheckpointCase("crowdpose_weights_coco_layout", "pose_dekr_hrnetw32_crowdpose.pth", _torch_save(lambda: _fake_dekr(32, 15)),
                   ("layout crowdpose14", "--layout coco17"),
                   ("--head", "dekr", "--backbone", "hrnet_w32", "--layout", "coco17"), needs_dekr=True),
    CheckpointCase("unknown_state_dict", "resnet.pth", _torch_save(lambda: {"conv1.weight": __import__("torch").zeros(2, 3, 1, 1)}),
                   ("resnet.pth", "not a known official key layout")),
]


def prepare_checkpoints(work: Path, submit: Submit) -> dict[str, Any]:
    for case in CHECKPOINT_CASES:
        if case.needs_dekr and not HAS_DEKR:
            continue
        folder = work / f"ck_{case.name}"
        folder.mkdir()
        path = folder / case.file
        if case.make is not None:
            case.make(work, path)
        args = run_args(work, folder / "out", work / "good.png", weights=path)
        args[1:5] = list(case.model)
        submit(f"ck_{case.name}", args)
    return {}


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c.name for c in CHECKPOINT_CASES])
def test_checkpoint_case(case: CheckpointCase, work: Path, launched: Launched) -> None:
    if case.needs_dekr and not HAS_DEKR:
        pytest.skip("needs bupose-dekr")
    the_error(launched.result(f"ck_{case.name}"), *case.expect)
    assert not (work / f"ck_{case.name}" / "out").exists()  # nothing written for a run that could not start
    assert not list(work.glob("PWNED*"))  # the pickled command never ran


# --------------------------------------------------------------------------------------- bupose eval
KP = [10.0, 12.0, 2.0] * 17
GT = {
    "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": KP, "num_keypoints": 17,
                     "area": 400.0, "bbox": [5.0, 5.0, 20.0, 20.0], "iscrowd": 0}],
    "categories": [{"id": 1, "name": "person"}],
}
GOOD = {"image_id": 1, "category_id": 1, "keypoints": KP, "score": 0.9}


def _res(*entries: dict[str, Any]) -> str:
    return json.dumps([GOOD, *entries])


EVAL_CASES: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    # name, results text, annotations text, fragments of the error line (None: evaluated, exit 0)
    ("malformed_results_json", '[{"image_id": 1,', json.dumps(GT), ("results.json", "not valid JSON", "line 1")),
    ("malformed_gt_json", _res(), '{"images": [', ("gt.json", "not valid JSON")),
    ("nan_keypoint", _res({**GOOD, "keypoints": [float("nan"), *KP[1:]]}), json.dumps(GT),
     ("results.json", "result #1", "'keypoints'", "NaN")),
    ("inf_score", _res({**GOOD, "score": float("inf")}), json.dumps(GT), ("result #1", "'score'")),
    ("wrong_keypoint_count", _res({**GOOD, "keypoints": KP[:-3]}), json.dumps(GT),
     ("result #1", "'keypoints' has 48 values, expected 51")),
    ("image_id_not_in_gt", _res({**GOOD, "image_id": 999}), json.dumps(GT), ("result #1", "image_id 999", "ground truth")),
    ("string_image_id", _res({**GOOD, "image_id": "a.png"}), json.dumps(GT), ("result #1", "'image_id'")),
    ("missing_score", _res({k: v for k, v in GOOD.items() if k != "score"}), json.dumps(GT), ("result #1", "'score'")),
    ("dict_instead_of_list", json.dumps(GOOD), json.dumps(GT), ("results.json", "expected a JSON array")),
    ("keypoints_as_dict", _res({**GOOD, "keypoints": {"nose": [1, 2]}}), json.dumps(GT), ("result #1", "'keypoints'")),
    ("entry_not_an_object", json.dumps([GOOD, [1, 2, 3]]), json.dumps(GT), ("result #1", "object")),
    ("gt_images_a_dict", _res(), json.dumps({**GT, "images": {"1": GT["images"][0]}}), ("gt.json", "'images'")),
    ("gt_without_annotations_key", _res(), json.dumps({"images": GT["images"]}), ("gt.json", "'annotations'")),
    ("gt_annotation_bad_keypoints", _res(), json.dumps({**GT, "annotations": [{**GT["annotations"][0], "keypoints": KP[:6]}]}),
     ("gt.json", "annotation id 1", "'keypoints' has 6 values")),
    ("empty_results", "[]", json.dumps(GT), None),
    ("gt_without_annotations", _res(), json.dumps({**GT, "annotations": []}), None),
]


def prepare_eval(work: Path, submit: Submit) -> dict[str, Any]:
    for name, results, gt, _ in EVAL_CASES:
        folder = work / f"eval_{name}"
        folder.mkdir()
        (folder / "results.json").write_text(results)
        (folder / "gt.json").write_text(gt)
        submit(f"eval_{name}", ["eval", "--results", str(folder / "results.json"), "--annotations",
                                str(folder / "gt.json"), "--output", str(folder / "metrics.json")])
    return {}


@pytest.mark.parametrize(("name", "results", "gt", "expect"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_case(name: str, results: str, gt: str, expect: tuple[str, ...] | None, work: Path,
                   launched: Launched) -> None:
    proc = launched.result(f"eval_{name}")
    folder = work / f"eval_{name}"
    metrics = folder / "metrics.json"
    if expect is None:  # valid, but says nothing about a model: evaluated, with one warning naming the file
        assert proc.returncode == 0, proc.stderr
        assert_clean(proc)
        warned = [ln for ln in lines(proc.stderr) if ln.startswith("warning:")]
        assert len(warned) == 1 and ("results.json" in warned[0] or "gt.json" in warned[0]), proc.stderr
        assert all(np.isfinite(v) for v in json.loads(metrics.read_text()).values())
        return
    the_error(proc, *expect)
    assert not metrics.exists()
    no_leftovers(folder)


# ------------------------------------------------------------------------------ bupose train / data
def make_dataset(root: Path) -> Path:
    from bupose.core.data.synth import generate

    generate(root, layout="coco17", num_images=2, size=64, seed=1, difficulty="easy")
    return root


TINY = ("--set", "input_size=64", "--set", "batch_size=2", "--set", "steps=1", "--set", "workers=0",
        "--set", "progress=false", "--set", "tensorboard=false")


def _edit(key: str, value: Any) -> Callable[[Path], str]:
    """The synthetic annotations with one field of the first image/annotation changed, as a new file."""

    def make(root: Path) -> str:
        data = json.loads((root / "annotations.json").read_text())
        if key == "file_name":
            data["images"][0]["file_name"] = value
        elif key == "keypoint0":
            data["annotations"][0]["keypoints"][0] = value
        elif key == "bbox_w":
            data["annotations"][0]["bbox"][2] = value
        else:
            data["annotations"][0][key] = value
        path = root / f"edited_{key}.json"
        path.write_text(json.dumps(data))
        return str(path)

    return make


TRAIN_CASES: list[tuple[str, Callable[[Path], str], tuple[str, ...], tuple[str, ...]]] = [
    ("missing_image_file", _edit("file_name", "gone.png"), (), ("image id 1", "gone.png", "is missing")),
    ("nan_keypoint", _edit("keypoint0", float("nan")), (), ("annotation id 1", "'keypoints'", "NaN")),
    ("negative_box", _edit("bbox_w", -5.0), (), ("annotation id 1", "'bbox'", "negative")),
    ("wrong_keypoint_count", _edit("keypoints", [1.0, 2.0, 2.0]), (), ("annotation id 1", "'keypoints' has 3 values")),
    ("unknown_layout", lambda root: str(root / "annotations.json"), ("--layout", "coco99"), ("unknown layout 'coco99'",)),
    ("bad_set_value", lambda root: str(root / "annotations.json"), ("--set", "steps=many"), ("steps", "'many'")),
    ("unknown_set_key", lambda root: str(root / "annotations.json"), ("--set", "stepz=3"), ("unknown key 'stepz'", "steps")),
    ("negative_lr", lambda root: str(root / "annotations.json"), ("--set", "lr=-1"), ("lr must be > 0",)),
    ("missing_annotations", lambda root: str(root / "nowhere.json"), (), ("nowhere.json", "not found")),
    ("malformed_annotations", lambda root: (root / "broken.json").write_text("{oops") and str(root / "broken.json"), (),
     ("broken.json", "not valid JSON")),
]


DATA_CASES = [
    ("negative_image_count", ("--images", "-1"), ("--images", "-1")),
    ("out_is_a_file", ("--out", "{file}"), ("--out", "is a file")),
]


def prepare_train(work: Path, submit: Submit) -> dict[str, Any]:
    dataset = make_dataset(work / "train_data")
    for name, data, extra, _ in TRAIN_CASES:
        submit(f"train_{name}", ["train", "--head", "example", "--backbone", "example_convnet", "--data", data(dataset),
                                 "--out", str(work / f"train_{name}"), *TINY, *extra])
    for name, args, _ in DATA_CASES:
        folder = work / f"data_{name}"
        folder.mkdir()
        (folder / "a_file").write_text("x")
        given = [a.replace("{file}", str(folder / "a_file")) for a in args]
        if "--out" not in given:
            given += ["--out", str(folder / "synth")]
        submit(f"data_{name}", ["data", "synth", "--size", "32", *given])
    return {}


@pytest.mark.parametrize(("name", "data", "extra", "expect"), TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_case(name: str, data: Any, extra: tuple[str, ...], expect: tuple[str, ...], work: Path,
                    launched: Launched) -> None:
    the_error(launched.result(f"train_{name}"), *expect)
    out = work / f"train_{name}"
    assert not out.exists() or not any(out.iterdir())  # refused before training: no log, no checkpoint


@pytest.mark.parametrize(("name", "args", "expect"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_case(name: str, args: tuple[str, ...], expect: tuple[str, ...], work: Path, launched: Launched) -> None:
    the_error(launched.result(f"data_{name}"), *expect)
    assert not (work / f"data_{name}" / "synth").exists()


# ------------------------------------------------------------------------- every command, concurrently
class Launched:
    """The commands of the whole corpus, started together (a few at a time) when the first test asks."""

    def __init__(self, work: Path) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)))
        self.futures: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        for group, prepare in (("images", prepare_images), ("misc", prepare_misc), ("checkpoints", prepare_checkpoints),
                               ("train", prepare_train), ("eval", prepare_eval)):
            self.info[group] = prepare(work, self.submit)

    def submit(self, key: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.futures[key] = self.pool.submit(bupose, *args, env=env)

    def result(self, key: str) -> subprocess.CompletedProcess[str]:
        return self.futures[key].result()


Submit = Callable[..., None]


@pytest.fixture(scope="module")
def launched(work: Path) -> Any:
    runs = Launched(work)
    yield runs
    runs.pool.shutdown(wait=True)
