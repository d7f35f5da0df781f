"""``bupose run``: pose estimation on images, folders and videos with any registered head.

Writes ``DIR/results.json`` (COCO keypoint results, written atomically) and overlays under
``DIR/overlays/`` (one JPEG per image, one MP4 per video). ``image_id`` is the file name for
plain inputs (``<video>#<frame>`` for video frames) or the ground-truth id when
``--annotations GT.json`` is given.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..io import read_image

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "InputItem", "collect_inputs", "iter_frames", "parse_options", "run_command"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class InputItem:
    """One input file: an image or a video."""

    path: Path
    kind: str  # "image" | "video"


def collect_inputs(inputs: Sequence[str]) -> tuple[list[InputItem], list[str]]:
    """Expand files and folders (sorted, non-recursive) into image/video items; returns problems too."""
    items: list[InputItem] = []
    problems: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
            if not found:
                problems.append(f"{p}: folder has no images or videos")
            for q in found:
                items.append(InputItem(q, "video" if q.suffix.lower() in VIDEO_EXTS else "image"))
        elif p.is_file():
            items.append(InputItem(p, "video" if p.suffix.lower() in VIDEO_EXTS else "image"))
        else:
            problems.append(f"{p}: no such file or folder")
    return items, problems


def iter_frames(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) of a video; ValueError when it cannot be opened."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot be opened as a video")
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise ValueError(f"{path}: video has no readable frames")
    finally:
        cap.release()


def _video_fps(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and fps > 0 else 25.0


def _gt_ids(annotations: str) -> dict[str, Any]:
    """file name (and base name) -> image id from a COCO-format annotation file."""
    try:
        with open(annotations) as f:
            gt = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{annotations}: cannot read COCO annotations ({exc})") from exc
    images = gt.get("images") if isinstance(gt, dict) else None
    if not isinstance(images, list):
        raise click.BadParameter(f"{annotations}: expected a COCO json with an 'images' list")
    ids: dict[str, Any] = {}
    for im in images:
        if not isinstance(im, dict) or "file_name" not in im or "id" not in im:
            raise click.BadParameter(f"{annotations}: every image needs 'file_name' and 'id'")
        ids[str(im["file_name"])] = im["id"]
        ids.setdefault(Path(str(im["file_name"])).name, im["id"])
    return ids


def parse_options(items: Sequence[str], flag: str = "--option") -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a dict of head pipeline options; values are read as JSON when they
    parse (``true``, ``3``, ``0.5``, ``null``), else kept as plain strings."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{flag} {item!r}: expected KEY=VALUE, e.g. match_hmp=true")
        raw = raw.strip()
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--scales expects comma-separated numbers like 0.5,1,2, got {text!r}") from exc
    if not scales or any(s <= 0 for s in scales):
        raise click.BadParameter(f"--scales expects positive numbers, got {text!r}")
    return scales


def _weights_hint(registry: Any, head: str) -> str:
    from ..specs import WeightsSpec

    specs = [
        s
        for s in registry.components["weights"].values()
        if isinstance(s, WeightsSpec) and s.head == head and s.role == "model"
    ]
    if not specs:
        return (
            f"--weights FILE is required: no official checkpoints are registered for head {head!r}; "
            "train one with `bupose train` or see `bupose list weights`."
        )
    lines = [f"--weights FILE is required. Official checkpoints that work with --head {head}:"]
    for s in sorted(specs, key=lambda s: s.name):
        where = f" (get it from: {s.source})" if s.source else ""
        lines.append(f"  {', '.join(s.file_names)}: --backbone {s.backbone} --layout {s.layout}{where}")
    lines.append("See `bupose list weights` for every known checkpoint.")
    return "\n".join(lines)


def _infer_layout(weights: str, registry: Any, trust: bool) -> str | None:
    """The layout a checkpoint was made for (bupose metadata or the detected official format)."""
    from ..weights import detect_official, read_checkpoint

    raw, meta = read_checkpoint(weights, trust=trust)
    if meta.get("layout"):
        return str(meta["layout"])
    spec = detect_official(raw, registry=registry, role="model")
    return spec.layout if spec is not None and spec.layout else None


class _Writer:
    """Collects results and writes overlays."""

    def __init__(self, output: Path, layout: str, overlays: bool, vis_threshold: float) -> None:
        self.output = output
        self.layout = layout
        self.overlays = overlays
        self.vis_threshold = vis_threshold
        self.results: list[dict[str, Any]] = []
        self._videos: dict[Path, Any] = {}

    def add(self, image_id: Any, poses: Any, image: np.ndarray, item: InputItem, frame: int | None) -> None:
        self.results.extend(poses.to_coco(image_id))
        if not self.overlays:
            return
        from ..vis import draw_poses, save_image

        drawn = draw_poses(image, poses, self.layout, score_threshold=self.vis_threshold)
        if frame is None:
            save_image(self.output / "overlays" / f"{item.path.stem}.jpg", drawn)
            return
        import cv2

        writer = self._videos.get(item.path)
        if writer is None:
            (self.output / "overlays").mkdir(parents=True, exist_ok=True)
            h, w = drawn.shape[:2]
            writer = cv2.VideoWriter(
                str(self.output / "overlays" / f"{item.path.stem}.mp4"),
                cv2.VideoWriter_fourcc(*"mp4v"),
                _video_fps(item.path),
                (w, h),
            )
            self._videos[item.path] = writer
        writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))

    def close(self) -> Path:
        for w in self._videos.values():
            w.release()
        self._videos.clear()
        from ..weights import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(self.results, f)

        return atomic_write(self.output / "results.json", write)


@click.command("run")
@click.option("--head", "head", required=True, help="Registered head, e.g. dekr.")
@click.option("--backbone", "backbone", required=True, help="Registered backbone, e.g. hrnet_w32.")
@click.option("--weights", "weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint: bupose .safetensors or an official file (detected and converted).")
@click.option("--rescore-weights", "rescore_weights", type=click.Path(dir_okay=False), default=None,
              help="Rescoring-net file for heads that support one (DEKR).")
@click.option("--layout", "layout", default=None, help="Keypoint layout (default: from the checkpoint, else the head's first).")
@click.option("--annotations", "annotations", type=click.Path(dir_okay=False, exists=True), default=None,
              help="COCO json whose image ids are used for inputs named in it.")
@click.option("--output", "-o", "output", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", "device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--flip/--no-flip", "flip", default=True, show_default=True, help="Flip test.")
@click.option("--scales", "scales", default="1", show_default=True, help="Test scales, e.g. 0.5,1,2.")
@click.option("--amp", "amp", is_flag=True, help="Mixed precision (bf16 on CPU, fp16 on CUDA).")
@click.option("--input-size", "input_size", type=click.IntRange(min=32), default=None,
              help="Network input size at scale 1 (default: the head's rule).")
@click.option("--trust-checkpoint", "trust", is_flag=True,
              help="Allow arbitrary pickled objects in the checkpoint (only for files you trust).")
@click.option("--overlays/--no-overlays", "overlays", default=True, show_default=True,
              help="Write overlay images/videos under OUTPUT/overlays.")
@click.option("--vis-threshold", "vis_threshold", type=float, default=0.0, show_default=True,
              help="Person score below which overlays skip a pose.")
@click.option("--option", "pipeline_options", multiple=True, metavar="KEY=VALUE",
              help="Test-time option of the head's pipeline/decoder, e.g. match_hmp=true for DEKR (repeatable).")
@click.argument("inputs", nargs=-1, required=True)
def run_command(
    head: str,
    backbone: str,
    weights: str | None,
    rescore_weights: str | None,
    layout: str | None,
    annotations: str | None,
    output: str,
    batch_size: int,
    device: str,
    flip: bool,
    scales: str,
    amp: bool,
    input_size: int | None,
    trust: bool,
    overlays: bool,
    vis_threshold: float,
    inputs: tuple[str, ...],
    pipeline_options: tuple[str, ...] = (),
) -> None:
    """Estimate poses on INPUT images, folders and videos; write OUTPUT/results.json (+ overlays)."""
    import torch
    from tqdm import tqdm

    from ..inference import load_model
    from ..plugins import get_registry
    from . import BuposeError

    registry = get_registry()
    registry.get("heads", head)
    registry.get("backbones", backbone)
    if weights is None:
        raise BuposeError(_weights_hint(registry, head))
    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    if rescore_weights is not None and not os.path.isfile(rescore_weights):
        raise BuposeError(f"--rescore-weights {rescore_weights}: file not found")
    scale_tuple = _parse_scales(scales)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BuposeError(f"--device {device}: CUDA is not available in this PyTorch build/machine")
    items, problems = collect_inputs(inputs)
    for msg in problems:
        click.echo(f"warning: {msg}; skipped", err=True)
    if not items:
        raise BuposeError("no readable inputs were given")
    gt_ids = _gt_ids(annotations) if annotations else {}
    if layout is None:
        layout = _infer_layout(weights, registry, trust)

    extra = parse_options(pipeline_options)
    options: dict[str, Any] = {"flip": flip, "scales": scale_tuple, "amp": amp}
    if input_size is not None:
        options["input_size"] = input_size
    if rescore_weights is not None:
        options["rescore_weights"] = rescore_weights
    options.update(extra)
    try:
        estimator = load_model(head, backbone, weights, layout=layout, device=device, trust=trust, **options)
    except TypeError as exc:
        if rescore_weights is not None and "rescore_weights" in str(exc):
            raise BuposeError(f"head {head!r} does not support --rescore-weights") from exc
        if extra:
            raise BuposeError(f"--option {', '.join(sorted(extra))}: not accepted by head {head!r}: {exc}") from exc
        raise
    pipeline = estimator.pipeline
    estimator.model.eval()
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, estimator.model.layout.name, overlays, vis_threshold)

    def frames() -> Iterator[tuple[Any, np.ndarray, InputItem, int | None]]:
        for item in items:
            try:
                if item.kind == "image":
                    img = read_image(item.path)
                    yield gt_ids.get(item.path.name, item.path.name), img, item, None
                else:
                    for k, frame in iter_frames(item.path):
                        name = f"{item.path.name}#{k}"
                        yield gt_ids.get(name, name), frame, item, k
            except (OSError, ValueError) as exc:
                problems.append(str(exc))
                click.echo(f"warning: {exc}; skipped", err=True)

    done = 0
    batch: list[tuple[Any, np.ndarray, InputItem, int | None]] = []

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        with torch.inference_mode():
            poses = pipeline.predict_batch([b[1] for b in batch])
        for (image_id, img, item, frame), p in zip(batch, poses):
            writer.add(image_id, p, img, item, frame)
        done += len(batch)
        bar.update(len(batch))
        batch.clear()

    with tqdm(desc="bupose run", unit="img", disable=None, file=sys.stderr) as bar:
        for entry in frames():
            batch.append(entry)
            if len(batch) >= batch_size:
                flush()
        flush()
    path = writer.close()
    click.echo(f"{done} image(s), {len(writer.results)} pose(s) -> {path}")
    if problems:
        click.echo(f"{len(problems)} input problem(s) reported above", err=True)
    if done == 0:
        raise BuposeError("no input could be read")
