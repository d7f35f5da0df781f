"""``bupose run`` as a daily tool (issue 18), through the real command line (subprocesses, real files):
results saved as they come (SIGINT / SIGKILL midway keep what was done, ``--resume`` does the rest),
ids that never collide, run -> eval on a dataset spec, head/backbone inferred, thresholds, the
contact sheet page, device rule, flags, file modes, inputs (recursive, globs, formats, EXIF, video,
webcam)."""

from __future__ import annotations

import html.parser
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bupose.core.model import build_model
from bupose.core.weights import save_safetensors

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def bupose(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bupose.core", *args], capture_output=True, text=True,
                          env=env or ENV, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("daily")
    proc = bupose("data", "synth", "--images", "4", "--size", "64", "-o", str(root / "synth"), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    torch.manual_seed(0)
    example = build_model("example", "example_convnet")
    save_safetensors(root / "example.safetensors", example.state_dict(), example.metadata())
    torch.manual_seed(0)
    dekr = build_model("dekr", "hrnet_w18_small")
    with torch.no_grad():
        dekr.head.head_heatmap[1].bias[-1] = 0.5  # centre channel above threshold: candidates found
    save_safetensors(root / "dekr.safetensors", dekr.state_dict(), dekr.metadata())
    return {"root": root, "synth": root / "synth", "example": root / "example.safetensors",
            "dekr": root / "dekr.safetensors"}


def _images(folder: Path, names: list[str], size: tuple[int, int] = (48, 64), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(p.suffix, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        assert ok, name
        buf.tofile(str(p))


def _lines(path: Path, header: bool = False) -> list[dict]:  # type: ignore[type-arg]
    """The JSON lines of a file (``results.jsonl``: without its first ``{"run": ...}`` line unless ``header``)."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return lines if header else [x for x in lines if "run" not in x]


def test_run_on_a_dataset_spec_then_eval_on_it(base: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = bupose("run", "--weights", str(base["example"]), str(base["synth"]), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "inferred --head example --backbone example_convnet" in run.stderr and "bupose metadata" in run.stderr
    gt = json.loads((base["synth"] / "annotations.json").read_text())
    images = json.loads((out / "images.json").read_text())
    assert sorted(im["image_id"] for im in images) == sorted(im["id"] for im in gt["images"])
    assert all(isinstance(r["image_id"], int) for r in json.loads((out / "results.json").read_text()))
    ev = bupose("eval", "--results", str(out / "results.json"), "--data", str(base["synth"]), "-o", str(tmp_path / "m"))
    assert ev.returncode == 0, ev.stderr
    assert "Average Precision  (AP) @[ OKS=0.50:0.95" in ev.stdout
    assert set(json.loads((tmp_path / "m" / "metrics.json").read_text())) >= {"AP", "AR"}
    # the images alone give file-name ids: eval says how to get dataset ids
    plain = bupose("run", "--weights", str(base["example"]), str(base["synth"] / "images"), "-o", str(tmp_path / "p"))
    assert plain.returncode == 0, plain.stderr
    ev = bupose("eval", "--results", str(tmp_path / "p" / "results.json"), "--data", str(base["synth"]))
    assert ev.returncode == 1 and "is a file name" in ev.stderr and "bupose run --annotations" in ev.stderr
    assert len(ev.stderr.strip().splitlines()) == 1


def test_ids_are_unique_relative_paths_with_recursive_globs_and_skips(base: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "shots"
    _images(root, ["cam1/frame.png", "cam2/frame.png", "a.png", "a.jpg", "deep/x/y.webp", "g.gif", "t.tiff"])
    (root / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = bupose("run", "--weights", str(base["example"]), "--recursive", str(root), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"skipped: {root / 'notes.txt'}" in proc.stderr
    images = json.loads((out / "images.json").read_text())
    keys = {im["key"]: im for im in images}
    assert set(keys) == {"cam1/frame.png", "cam2/frame.png", "a.png", "a.jpg", "deep/x/y.webp", "g.gif", "t.tiff"}
    assert {im["image_id"] for im in images} == set(keys)  # no ground truth: the id is the relative path
    assert keys["cam1/frame.png"]["file"] == str(root / "cam1" / "frame.png")
    overlays = [im["overlay"] for im in images]
    assert len(set(overlays)) == len(overlays)
    assert {"overlays/cam1/frame.jpg", "overlays/cam2/frame.jpg", "overlays/a.png.jpg", "overlays/a.jpg.jpg"} <= set(overlays)
    for o in overlays:
        assert cv2.imread(str(out / o)) is not None, o
    # without --recursive the sub-folders are not read, and the message says so
    flat = bupose("run", "--weights", str(base["example"]), str(root / "deep"), "-o", str(tmp_path / "flat"))
    assert flat.returncode == 1 and "--recursive looks into sub-folders" in flat.stderr
    # two folders with the same file name, and a glob over them: ids relative to their common folder
    for args in ([str(root / "cam1"), str(root / "cam2")], [str(root / "cam*" / "*.png")]):
        o = tmp_path / f"two{len(args)}"
        proc = bupose("run", "--weights", str(base["example"]), *args, "-o", str(o))
        assert proc.returncode == 0, proc.stderr
        assert {im["key"] for im in json.loads((o / "images.json").read_text())} == {"cam1/frame.png", "cam2/frame.png"}


def _wait_lines(path: Path, n: int, proc: subprocess.Popen[str], limit: float = 300.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"bupose run ended (rc {proc.returncode}) before {n} images were done: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("bupose run did not progress")


def _check_complete_files(out: Path) -> None:
    """Every visible file is whole: JSON parses, overlays decode, no temp / partial file is visible."""
    for p in out.rglob("*"):
        if p.is_file():
            assert not p.name.startswith("."), f"temp file left visible: {p}"
            if p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                _lines(p)
            elif p.suffix == ".jpg":
                assert cv2.imread(str(p)) is not None, p


N_INTERRUPT = 40
"""Images of the interrupted run: enough that a fast machine is still midway when the signal arrives."""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["sigint", "sigterm", "sigkill"])
def test_interrupted_run_keeps_done_images_and_resumes(base: dict[str, Path], tmp_path: Path, sig: int) -> None:
    folder = tmp_path / "imgs"
    _images(folder, [f"im{i:02d}.png" for i in range(N_INTERRUPT)], size=(96, 128))
    out = tmp_path / "out"
    args = ["run", "--weights", str(base["dekr"]), "--input-size", "128", str(folder), "-o", str(out)]
    # Ctrl-C as at a terminal: a test runner started in the background (`cmd &` in a script) hands its
    # children SIGINT ignored, and Python then installs no KeyboardInterrupt handler; restore the default.
    proc = subprocess.Popen([sys.executable, "-m", "bupose.core", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_lines(out / "results.jsonl", 3, proc)  # the run's header line + 2 images
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    done = _lines(out / "results.jsonl")
    assert 2 <= len(done) < N_INTERRUPT, "the run should have been stopped midway"
    if sig != signal.SIGKILL:  # Ctrl-C, or `timeout` / `kill`: the final files are written
        assert proc.returncode == 130, err
        assert "--resume" in err
        images = json.loads((out / "images.json").read_text())
        assert [im["key"] for im in images] == [d["key"] for d in done]
        results = json.loads((out / "results.json").read_text())
        assert len(results) == sum(len(d["poses"]) for d in done)
        assert (out / "index.html").is_file()
    else:
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "results.json").exists()  # never half-written: it is only renamed into place
    for d in done:
        assert (out / d["overlay"]).is_file()
    _check_complete_files(out)
    if sig == signal.SIGINT:  # resuming with other settings would mix two runs' results: refused
        other = bupose(*args, "--resume", "--option", "keypoint_threshold=0.05")
        assert other.returncode == 1 and "written by a different run (options:" in other.stderr, other.stderr
    again = bupose(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"--resume: {len(done)} input(s) already done" in again.stderr
    lines = _lines(out / "results.jsonl")
    assert len(lines) == N_INTERRUPT and len({d["key"] for d in lines}) == N_INTERRUPT  # nothing done twice
    head = _lines(out / "results.jsonl", header=True)[0]["run"]
    assert head["head"] == "dekr" and head["backbone"] == "hrnet_w18_small" and head["options"]["input_size"] == 128
    assert lines[: len(done)] == done
    images = json.loads((out / "images.json").read_text())
    assert [im["key"] for im in images] == [f"im{i:02d}.png" for i in range(N_INTERRUPT)]
    _check_complete_files(out)


def test_failures_are_one_line_each_and_fail_the_run(base: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _images(folder, ["ok1.png", "ok2.jpg"])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    proc = bupose("run", "--weights", str(base["example"]), str(folder), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("empty.jpg" in e for e in errors)
    assert "2 input(s) failed" in proc.stderr
    keys = {im["key"] for im in json.loads((tmp_path / "out" / "images.json").read_text())}
    assert keys == {"ok1.png", "ok2.jpg"}
    page = (tmp_path / "out" / "index.html").read_text()
    assert "2 failed" in page and "broken.png" in page


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.figures: list[str] = []
        self._fig: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("img", "video") and a.get("src"):
            self.srcs.append(str(a["src"]))
        if tag == "figure":
            self._fig = [str(a.get("data-key"))]

    def handle_data(self, data: str) -> None:
        if self._fig is not None:
            self._fig.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self._fig is not None:
            self.figures.append("".join(self._fig))
            self._fig = None


def test_index_html_shows_every_overlay_with_counts_and_thresholds(base: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = bupose("run", "--weights", str(base["dekr"]), "--input-size", "64", "--no-flip",
                  str(base["synth"] / "images"), "-o", str(out), "--score-threshold", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert "overlays draw poses scoring >= 0.2" in proc.stderr  # dekr's documented default
    page = _Page()
    page.feed((out / "index.html").read_text())
    images = json.loads((out / "images.json").read_text())
    assert len(page.srcs) == len(images) == 4
    from urllib.parse import unquote

    for src in page.srcs:
        assert cv2.imread(str(out / unquote(src))) is not None, src
    lines = {d["key"]: d for d in _lines(out / "results.jsonl")}
    for fig, im in zip(page.figures, images):
        scores = [p["score"] for p in lines[im["key"]]["poses"]]
        shown = sum(1 for s in scores if round(s, 4) >= 0.2)
        assert fig.startswith(im["key"]) and f"{shown} pose(s) shown" in fig and f"{len(scores)} candidate(s)" in fig
    results = json.loads((out / "results.json").read_text())
    assert all(r["score"] >= 0.05 for r in results)
    assert len(results) == sum(1 for d in lines.values() for p in d["poses"] if p["score"] >= 0.05)
    assert len(results) < sum(len(d["poses"]) for d in lines.values()), "the test needs candidates below 0.05"
    for p in [out / "results.json", out / "index.html", *(out / "overlays").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    if _check_in_a_browser(out / "index.html", total=4, loaded=4):
        (out / images[1]["overlay"]).unlink()  # the page shows a missing overlay as missing
        _check_in_a_browser(out / "index.html", total=4, loaded=3)


def _check_in_a_browser(page: Path, total: int, loaded: int) -> bool:
    """Open the page in headless Chromium (Debian's chromium / chromium-headless-shell, when
    installed): its script counts the overlays that really loaded and marks missing ones."""
    import re
    import shutil

    exe = shutil.which("chromium-headless-shell") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return False  # parsing the page and decoding every image it references (above) is the check then
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    assert f'data-images="{total}"' in body.group(0) and f'data-loaded="{loaded}"' in body.group(0), body.group(0)
    assert dom.count('class="missing"') == total - loaded
    return True


def test_weights_inferred_from_a_detected_official_file(base: dict[str, Path], tmp_path: Path) -> None:
    """An installed plugin's official format (here a fake one for the example head) names head and backbone."""
    site = tmp_path / "site"
    (site / "fakeofficial").mkdir(parents=True)
    (site / "fakeofficial" / "__init__.py").write_text(textwrap.dedent('''
        from bupose.core import WeightsSpec, hookimpl

        class Converter:
            def detect(self, sd):
                return bool(sd) and all(k.startswith("official.") for k in sd)

            def convert(self, sd):
                return {k[len("official."):]: v for k, v in sd.items()}

        CONVERTER = Converter()

        @hookimpl
        def bupose_register_weights(register):
            register(WeightsSpec(name="example_official", factory="fakeofficial:CONVERTER", head="example",
                                 backbone="example_convnet", layout="coco17", file_names=("example_official.pth",),
                                 summary="fake official file"))
    '''))
    info = site / "fakeofficial-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeofficial\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bupose]\nfakeofficial = fakeofficial\n")
    (info / "RECORD").write_text("")
    torch.manual_seed(0)
    model = build_model("example", "example_convnet")
    torch.save({f"official.{k}": v for k, v in model.state_dict().items()}, tmp_path / "example_official.pth")
    _images(tmp_path / "imgs", ["a.png"])
    env = {**ENV, "PYTHONPATH": str(site)}
    proc = bupose("run", "--weights", str(tmp_path / "example_official.pth"), str(tmp_path / "imgs"),
                  "-o", str(tmp_path / "out"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "inferred --head example --backbone example_convnet" in proc.stderr and "official example_official" in proc.stderr
    bad = bupose("run", "--weights", str(tmp_path / "example_official.pth"), str(tmp_path / "imgs"),
                 "-o", str(tmp_path / "out2"))  # without the plugin nothing says what the file is
    assert bad.returncode == 1 and "--head and --backbone not given" in bad.stderr


def _jpeg_with_orientation(path: Path, image: np.ndarray, orientation: int) -> None:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    data = buf.tobytes()
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    seg = b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + data[2:])


def test_exif_orientation_video_webcam_and_formats(base: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _jpeg_with_orientation(folder / "phone.jpg", np.full((32, 64, 3), 128, np.uint8), 6)
    rng = np.random.default_rng(1)
    vw = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for _ in range(3):
        vw.write(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    vw.release()
    out = tmp_path / "out"
    proc = bupose("run", "--weights", str(base["example"]), str(folder), "-o", str(out), "--max-frames", "2",
                  "--video-format", "webm")
    assert proc.returncode == 0, proc.stderr
    assert "phone.jpg: EXIF orientation 6 applied" in proc.stderr
    lines = {d.get("key") or d.get("video_done"): d for d in _lines(out / "results.jsonl")}
    assert (lines["phone.jpg"]["width"], lines["phone.jpg"]["height"]) == (32, 64)  # upright: rotated
    assert {"clip.avi#0", "clip.avi#1"} <= set(lines) and "clip.avi#2" not in lines
    cap = cv2.VideoCapture(str(out / "overlays" / "clip.webm"))
    assert cap.isOpened() and cap.read()[0]
    cap.release()
    kept = bupose("run", "--weights", str(base["example"]), str(folder / "phone.jpg"), "-o", str(tmp_path / "raw"),
                  "--ignore-exif-orientation")
    rec = _lines(tmp_path / "raw" / "results.jsonl")[0]
    assert kept.returncode == 0 and (rec["width"], rec["height"]) == (64, 32)
    url = (folder / "clip.avi").resolve().as_uri()  # a stream URL OpenCV opens (file://), read as a stream
    stream = bupose("run", "--weights", str(base["example"]), url, "-o", str(tmp_path / "stream"), "--max-frames", "2")
    assert stream.returncode == 0, stream.stderr
    keys = [d["key"] for d in _lines(tmp_path / "stream" / "results.jsonl") if "key" in d]
    assert len(keys) == 2 and keys[0].startswith("file_") and keys[0].endswith("clip.avi#0")
    cam = bupose("run", "--weights", str(base["example"]), "7", "-o", str(tmp_path / "cam"))
    assert cam.returncode == 1 and "7: cannot be opened as a video / webcam / stream" in cam.stderr


def test_device_rule_flags_and_listing(base: dict[str, Path], tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        for cmd in (["run", "--weights", str(base["example"]), str(base["synth"]), "-o", str(tmp_path / "o"), "--device", "cuda"],
                    ["train", "--head", "example", "--backbone", "example_convnet", "--data", str(base["synth"]),
                     "-o", str(tmp_path / "t"), "--device", "cuda", "--check"]):
            proc = bupose(*cmd)
            assert proc.returncode == 1 and "--device cuda: CUDA is not available" in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    ok = bupose("train", "--head", "example", "--backbone", "example_convnet", "--data", str(base["synth"]),
                "--output", str(tmp_path / "t"), "--check")
    assert ok.returncode == 0 and "device: " in ok.stdout and "images: all read and decoded" in ok.stdout, ok.stderr
    # a missing image is found by the check, not by a DataLoader traceback later
    broken = tmp_path / "broken"
    broken.mkdir()
    gt = json.loads((base["synth"] / "annotations.json").read_text())
    (broken / "annotations.json").write_text(json.dumps(gt))
    (broken / "images").mkdir()
    first = gt["images"][0]["file_name"]
    for im in gt["images"][1:]:
        (broken / "images" / im["file_name"]).write_bytes((base["synth"] / "images" / im["file_name"]).read_bytes())
    proc = bupose("train", "--head", "example", "--backbone", "example_convnet", "--data", str(broken),
                  "--out", str(tmp_path / "t2"), "--check")
    assert proc.returncode == 1 and first in proc.stderr and "missing" in proc.stderr, proc.stderr
    listing = bupose("list", "head")
    assert listing.returncode == 0 and "example" in listing.stdout and "dekr" in listing.stdout
    helptext = bupose("run", "--help").stdout
    assert "--option keys: input_size, max_candidates" in helptext and "--recursive" in helptext
    top = bupose("--help").stdout
    assert "Installed heads:" in top and "example" in top


def test_eval_model_mode_writes_into_its_output_folder_and_detects_crowdpose(base: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    proc = bupose("eval", "--weights", str(base["example"]), "--data", str(base["synth"]), "-o", str(tmp_path / "ev"),
                  cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "inferred --head example --backbone example_convnet" in proc.stderr
    assert (tmp_path / "ev" / "results.json").is_file() and (tmp_path / "ev" / "metrics.json").is_file()
    assert list(work.iterdir()) == [], "eval must not write into the current folder"
    crowd = tmp_path / "crowd"
    assert bupose("data", "synth", "--layout", "crowdpose14", "--images", "2", "--size", "64", "-o", str(crowd)).returncode == 0
    gt = json.loads((crowd / "annotations.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"]]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    proc = bupose("eval", "--results", str(tmp_path / "perfect.json"), "--annotations", str(crowd / "annotations.json"))
    assert proc.returncode == 0, proc.stderr
    assert "(crowdpose14)" in proc.stdout and "APE" in proc.stdout
