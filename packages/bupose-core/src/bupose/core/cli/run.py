"""``bupose run``: pose estimation on images, folders and videos with any registered head.

Writes ``DIR/results.json`` (COCO keypoint results, written atomically) and overlays under
``DIR/overlays/`` (one JPEG per image, one MP4 per video). ``image_id`` is the file name for
plain inputs (``<video>#<frame>`` for video frames) or the ground-truth id when
``--annotations GT.json`` is given.

Test-time options are the head's declared options (``HeadSpec.options``): ``--option KEY=VALUE``
(repeatable) sets any of them; ``--flip/--no-flip``, ``--scales``, ``--input-size``, ``--amp`` and
``--rescore-weights`` are short forms of the options ``flip``, ``scales``, ``input_size``, ``amp`` and
``rescore_weights``, accepted only for heads that declare them. ``bupose run --head H --help`` lists
them with defaults and meaning.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..io import check_output_dir, quiet_native_stderr, read_image, set_max_image_pixels
from ..io import max_image_pixels as image_pixel_limit

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "InputItem", "collect_inputs", "head_options", "iter_frames",
    "parse_options", "run_command",
]  # fmt: skip

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
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

    with quiet_native_stderr():  # FFmpeg's messages name no file
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot be opened as a video (unknown or corrupt video data)")
    try:
        index = 0
        while True:
            with quiet_native_stderr():
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


def head_options(
    spec: Any,
    items: Sequence[str] | Mapping[str, Any] = (),
    aliases: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Validate a head's test-time options from ``--option KEY=VALUE`` items and short flags.

    ``items`` are ``KEY=VALUE`` strings or a mapping of values (strings as typed, or Python values);
    ``aliases`` maps option names to the values their short flags gave (``None`` = not given).
    Returns ``(options, {})`` with the validated instance of the head's options dataclass, or, for a
    head that declares none, ``(None, raw)`` with the values to pass through as keywords. Raises
    :class:`~bupose.core.cli.BuposeError` with one line for an unknown key, a bad value or a short
    flag the head has no option for.
    """
    from ..options import OptionError, build_options, option_names, split_option_items
    from . import BuposeError
    from .components import OPTION_ALIASES

    given = {k: v for k, v in (aliases or {}).items() if v is not None}
    try:
        values: dict[str, Any] = dict(items) if isinstance(items, Mapping) else split_option_items(items)
    except OptionError as exc:
        raise BuposeError(str(exc)) from None
    try:
        options_cls = spec.load_options()
    except Exception as exc:  # a broken plugin module
        raise BuposeError(f"head {spec.name!r}: cannot import its options class {spec.options}: {exc}") from exc
    if options_cls is None:  # a head without declared options: values pass through as keywords
        if isinstance(given.get("scales"), str):
            try:
                given["scales"] = tuple(float(x) for x in given["scales"].split(",") if x.strip())
            except ValueError:
                raise BuposeError(f"--scales expects comma-separated numbers like 0.5,1,2, got {given['scales']!r}") from None
        raw = {k: _json_or_text(v) if isinstance(v, str) else v for k, v in values.items()}
        return None, {**given, **raw}
    names = option_names(options_cls)
    for key, value in given.items():
        flag = OPTION_ALIASES.get(key, f"--{key.replace('_', '-')}")
        if key not in names:
            raise BuposeError(
                f"{flag}: head {spec.name!r} has no {key!r} option (its options: {', '.join(names) or 'none'}; "
                f"see `bupose run --head {spec.name} --help`)"
            )
        if key in values:
            raise BuposeError(f"{flag} and --option {key}=... both set {key!r}; give one")
        values[key] = value
    try:
        return build_options(options_cls, values, context=f"head {spec.name!r}"), {}
    except OptionError as exc:
        raise BuposeError(str(exc)) from None


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _peek(args: Sequence[str], name: str) -> str | None:
    """The value of option ``name`` in raw command-line ``args`` (for help before parsing)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class HeadHelpCommand(click.Command):
    """A command whose ``--help`` lists the installed heads (and, with ``--head H``, H's options)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["bupose.help_head"] = _peek(args, "--head")
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from .components import heads_help_lines

        formatter.write_paragraph()
        for line in heads_help_lines(ctx.meta.get("bupose.help_head")):
            formatter.write(line + "\n")


def _video_settings(
    track: bool, tracker: str, smooth: str, min_cutoff: float, beta: float, d_cutoff: float,
    track_score: float | None = None,
) -> Any:
    """The video options as :class:`~bupose.core.video.VideoSettings` (one-line errors for bad values)."""
    from ..video import OneEuroSettings, TrackerUnavailableError, VideoSettings, check_tracker
    from . import BuposeError

    try:
        one_euro = OneEuroSettings(min_cutoff, beta, d_cutoff)
    except ValueError as exc:
        raise BuposeError(f"--smooth-min-cutoff/--smooth-beta/--smooth-d-cutoff: {exc}") from None
    try:
        check_tracker(tracker)
    except (TrackerUnavailableError, ValueError) as exc:
        raise BuposeError(str(exc)) from None
    return VideoSettings(
        track=track or smooth != "none", tracker=tracker, smooth=smooth, one_euro=one_euro, track_score=track_score
    )


def _onnx_target(
    backend: str, onnx_model: str | None, head: str | None, backbone: str | None, layout: str | None,
    weights: str | None,
) -> tuple[str, str, str]:
    """Head, backbone and layout of ``--model FILE.onnx`` (checked against any given)."""
    from ..export import ExportError, onnx_run_target
    from . import BuposeError

    if backend != "onnxruntime":
        raise BuposeError("--model FILE.onnx runs only with --backend onnxruntime (--weights is the torch backend's)")
    if onnx_model is None:
        raise BuposeError("--backend onnxruntime needs --model FILE.onnx (written by `bupose export`)")
    if weights is not None:
        raise BuposeError("--weights is for the torch backend; the onnxruntime backend reads --model FILE.onnx")
    if not os.path.isfile(onnx_model):
        raise BuposeError(f"--model {onnx_model}: file not found")
    try:
        return onnx_run_target(onnx_model, head, backbone, layout)
    except ExportError as exc:
        raise BuposeError(str(exc)) from None


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


class _Writer:
    """Collects results and writes overlays."""

    def __init__(
        self, output: Path, layout: str, overlays: bool, vis_threshold: float, video: Any = None
    ) -> None:
        from ..video import VideoFrameLog

        self.frames_log = VideoFrameLog(output, layout, video)
        self._fps: dict[Path, float] = {}
        self.output = output
        self.layout = layout
        self.overlays = overlays
        self.vis_threshold = vis_threshold
        self.results: list[dict[str, Any]] = []
        self._videos: dict[Path, Any] = {}

    def add(self, image_id: Any, poses: Any, image: np.ndarray, item: InputItem, frame: int | None) -> None:
        ids = None
        if frame is not None:  # video frames: tracked / smoothed, one JSON line each
            if item.path not in self._fps:
                self._fps[item.path] = _video_fps(item.path)
            fps = self._fps[item.path]
            poses, ids = self.frames_log.add(item.path, frame, fps, poses, image_id)
        entries = poses.to_coco(image_id)
        if ids is not None:
            for entry, tid in zip(entries, ids):
                entry["track_id"] = int(tid) if tid >= 0 else None
        self.results.extend(entries)
        if not self.overlays:
            return
        from ..vis import draw_poses, save_image

        drawn = draw_poses(image, poses, self.layout, score_threshold=self.vis_threshold, track_ids=ids)
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
        self.frames_log.close()
        for w in self._videos.values():
            w.release()
        self._videos.clear()
        from ..weights import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(self.results, f)

        return atomic_write(self.output / "results.json", write)


@click.command("run", cls=HeadHelpCommand)
@click.option("--head", "head", default=None,
              help="Registered head (installed ones are listed below); with --model: from the file.")
@click.option("--backbone", "backbone", default=None,
              help="Registered backbone (`bupose list backbones`); with --model: from the file.")
@click.option("--backend", "backend", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
              help="Run the network in PyTorch (--weights) or in onnxruntime (--model FILE.onnx from `bupose export`).")
@click.option("--model", "onnx_model", type=click.Path(dir_okay=False), default=None,
              help="ONNX file written by `bupose export` (--backend onnxruntime; the head's own pre/post-processing).")
@click.option("--weights", "weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint: bupose .safetensors or an official file (detected and converted).")
@click.option("--rescore-weights", "rescore_weights", type=click.Path(dir_okay=False), default=None,
              help="Short for --option rescore_weights=FILE (heads with that option, e.g. DEKR's rescoring net).")
@click.option("--layout", "layout", default=None, help="Keypoint layout (default: from the checkpoint, else the head's first).")
@click.option("--annotations", "annotations", type=click.Path(dir_okay=False, exists=True), default=None,
              help="COCO json whose image ids are used for inputs named in it.")
@click.option("--output", "-o", "output", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", "device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--flip/--no-flip", "flip", default=None,
              help="Short for --option flip=true/false (heads with a flip test; default: the head's).")
@click.option("--scales", "scales", default=None,
              help="Short for --option scales=0.5,1,2 (heads with multi-scale testing; default: the head's).")
@click.option("--amp", "amp", is_flag=True, default=None,
              help="Short for --option amp=true: mixed precision (heads with that option).")
@click.option("--input-size", "input_size", type=click.IntRange(min=32), default=None,
              help="Short for --option input_size=N: network input size at scale 1 (default: the head's rule).")
@click.option("--grouper", "grouper", default=None,
              help="Registered grouper for heads that group keypoint candidates (default: the head's).")
@click.option("--trust-checkpoint", "trust", is_flag=True,
              help="Allow arbitrary pickled objects in the checkpoint (only for files you trust).")
@click.option("--overlays/--no-overlays", "overlays", default=True, show_default=True,
              help="Write overlay images/videos under OUTPUT/overlays.")
@click.option("--vis-threshold", "vis_threshold", type=float, default=0.0, show_default=True,
              help="Person score below which overlays skip a pose.")
@click.option("--option", "pipeline_options", multiple=True, metavar="KEY=VALUE",
              help="Test-time option of the head (repeatable); `bupose run --head H --help` lists H's.")
@click.option("--max-image-pixels", "max_image_pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images whose header says more pixels than this (default 100000000; env BUPOSE_MAX_IMAGE_PIXELS).")
@click.option("--track", "track", is_flag=True,
              help="Videos: give each person a track id (results.json 'track_id', OUTPUT/<video>.frames.jsonl).")
@click.option("--tracker", "tracker", type=click.Choice(["oks", "bytetrack", "sort"]), default="oks", show_default=True,
              help="oks: core's keypoint-similarity tracker; bytetrack/sort: the optional `trackers` package on keypoint boxes.")
@click.option("--track-score", "track_score", type=click.FloatRange(min=0), default=None,
              help="Person score from which a person starts a track (default: the tracker's, 0.3 for oks).")
@click.option("--smooth", "smooth", type=click.Choice(["none", "one-euro"]), default="none", show_default=True,
              help="Videos: smooth keypoints along tracks with the 1-euro filter (implies --track).")
@click.option("--smooth-min-cutoff", "smooth_min_cutoff", type=float, default=1.0, show_default=True,
              help="1-euro cut-off at rest, Hz (lower: smoother, more lag).")
@click.option("--smooth-beta", "smooth_beta", type=float, default=0.1, show_default=True,
              help="1-euro speed coefficient, per px/s (higher: less lag on fast motion).")
@click.option("--smooth-d-cutoff", "smooth_d_cutoff", type=float, default=1.0, show_default=True,
              help="1-euro cut-off of the speed estimate, Hz.")
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
    flip: bool | None,
    scales: str | None,
    amp: bool | None,
    input_size: int | None,
    trust: bool,
    overlays: bool,
    vis_threshold: float,
    inputs: tuple[str, ...],
    pipeline_options: tuple[str, ...] = (),
    grouper: str | None = None,
    max_image_pixels: int | None = None,
    backend: str = "torch",
    onnx_model: str | None = None,
    track: bool = False,
    tracker: str = "oks",
    smooth: str = "none",
    smooth_min_cutoff: float = 1.0,
    smooth_beta: float = 0.1,
    smooth_d_cutoff: float = 1.0,
    track_score: float | None = None,
) -> None:
    """Estimate poses on INPUT images, folders and videos; write OUTPUT/results.json (+ overlays)."""
    import torch
    from tqdm import tqdm

    from ..export import ExportError, load_onnx_estimator
    from ..grouping import GroupingError, resolve_grouper
    from ..inference import Checkpoint, load_model
    from ..options import OptionError
    from ..plugins import get_registry
    from . import BuposeError

    registry = get_registry()
    video = _video_settings(track, tracker, smooth, smooth_min_cutoff, smooth_beta, smooth_d_cutoff, track_score)
    if backend == "onnxruntime" or onnx_model is not None:
        head, backbone, layout = _onnx_target(backend, onnx_model, head, backbone, layout, weights)
    elif head is None or backbone is None:
        raise BuposeError("--head and --backbone are required (or --backend onnxruntime --model FILE.onnx)")
    head_spec = registry.get("heads", head)
    registry.get("backbones", backbone)
    aliases = {"flip": flip, "scales": scales, "amp": amp, "input_size": input_size, "rescore_weights": rescore_weights}
    options, passthrough = head_options(head_spec, pipeline_options, aliases)
    if onnx_model is not None:
        weights = onnx_model  # the network's weights are inside the ONNX file
    if weights is None:
        raise BuposeError(_weights_hint(registry, head))
    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BuposeError(f"--device {device}: CUDA is not available in this PyTorch build/machine")
    items, problems = collect_inputs(inputs)
    if not items:
        raise BuposeError("; ".join(problems) if problems else "no readable inputs were given")
    for msg in problems:
        click.echo(f"warning: {msg}; skipped", err=True)
    try:
        check_output_dir(output, "--output")  # before any work
        set_max_image_pixels(max_image_pixels)
        image_pixel_limit()  # a bad BUPOSE_MAX_IMAGE_PIXELS is one error now, not one per image
    except ValueError as exc:
        raise BuposeError(str(exc)) from None
    gt_ids = _gt_ids(annotations) if annotations else {}
    checkpoint = None if onnx_model else Checkpoint.read(weights, trust=trust)  # read once, for layout and model
    if layout is None and checkpoint is not None:
        layout = checkpoint.layout(registry)
    try:
        resolve_grouper(head_spec, grouper, layout or head_spec.layouts[0], registry=registry)
        if onnx_model is not None:
            estimator = load_onnx_estimator(onnx_model, device=device, options=options, grouper=grouper, **passthrough)
        else:
            estimator = load_model(
                head, backbone, weights, layout=layout, device=device, trust=trust, options=options,
                grouper=grouper, checkpoint=checkpoint, **passthrough,
            )  # fmt: skip
    except ExportError as exc:
        raise BuposeError(str(exc)) from None
    except (OptionError, GroupingError) as exc:
        raise BuposeError(str(exc)) from exc
    except TypeError as exc:
        if passthrough:
            raise BuposeError(
                f"--option {', '.join(sorted(passthrough))}: not accepted by head {head!r}: {exc}"
            ) from exc
        raise
    pipeline = estimator.pipeline
    estimator.model.eval()
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, estimator.model.layout.name, overlays, vis_threshold, video)

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
    if done == 0:
        raise BuposeError("no input could be read")
    if problems:
        raise BuposeError(f"{len(problems)} input problem(s) reported above; the other inputs' results are in {path}")
