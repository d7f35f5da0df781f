"""``bupose run``: pose estimation on images, folders, globs, datasets, videos and streams with any
registered head.

Writes, as it goes, ``OUTPUT/results.jsonl`` (one JSON line per image / video frame) and overlays
under ``OUTPUT/overlays/``; at the end (and after Ctrl-C) ``OUTPUT/results.json`` (COCO keypoint
results), ``OUTPUT/images.json`` (id -> file) and ``OUTPUT/index.html`` (a contact sheet), each
written atomically. ``--resume`` skips what ``results.jsonl`` already holds. Ids, inputs and
defaults: docs/run.md.

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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..io import check_output_dir, quiet_native_stderr, set_max_image_pixels
from ..io import max_image_pixels as image_pixel_limit
from ._device import DEVICE_HELP
from ._run_inputs import IMAGE_EXTS, VIDEO_EXTS, InputItem, collect_inputs

__all__ = [
    "IMAGE_EXTS", "OVERLAY_THRESHOLDS", "VIDEO_EXTS", "InputItem", "collect_inputs", "head_options",
    "infer_model", "iter_frames", "overlay_threshold", "parse_options", "run_command",
]  # fmt: skip

OVERLAY_THRESHOLDS: dict[str, float] = {
    "dekr": 0.2,
    "logocap": 0.2,
    "centergroup": 0.2,
    "grouppose": 0.3,
    "simplepose": 0.5,
}
"""Default person score from which overlays draw a pose, per head (docs/run.md says why); a head's
options class may declare its own as a ``overlay_threshold`` class attribute. Others: 0.2."""


def overlay_threshold(head_spec: Any) -> float:
    """The default ``--vis-threshold`` of a head (its options' ``overlay_threshold``, the table, 0.2)."""
    try:
        cls = head_spec.load_options()
    except Exception:  # noqa: BLE001 - a broken options module is reported elsewhere
        cls = None
    value = getattr(cls, "overlay_threshold", None) if cls is not None else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return OVERLAY_THRESHOLDS.get(head_spec.name, 0.2)


def open_video(source: str | Path) -> tuple[Any, float, int | None]:
    """An opened ``cv2.VideoCapture`` of a video file, webcam index (``"0"``) or stream URL, with
    its frames per second (25 when it does not say) and frame count (``None`` when unknown);
    ValueError when OpenCV cannot open it."""
    import cv2

    raw = str(source)
    is_path = Path(raw).exists()
    with quiet_native_stderr():  # FFmpeg's messages name no file
        cap = cv2.VideoCapture(int(raw)) if raw.isdigit() and not is_path else cv2.VideoCapture(raw)
    if not cap.isOpened():
        raise ValueError(
            f"{raw}: cannot be opened as a video"
            + (" (unknown or corrupt video data)" if is_path else " / webcam / stream")
        )
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if is_path else 0
    return cap, (float(fps) if fps and 0 < fps < 1000 else 25.0), (count if count > 0 else None)


def iter_frames(
    source: str | Path | Any, max_frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) of a video file, webcam index (``"0"``), stream URL or an
    opened capture (released at the end); ValueError when it cannot be opened or gives no frame."""
    import cv2

    cap = source if hasattr(source, "read") else open_video(source)[0]
    try:
        index = 0
        while max_frames is None or index < max_frames:
            with quiet_native_stderr():
                ok, frame = cap.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise ValueError(f"{source if not hasattr(source, 'read') else 'video'}: video has no readable frames")
    finally:
        cap.release()


def _frame_count(item: InputItem, max_frames: int | None) -> int | None:
    """Frames a video will give (for the progress bar's total); ``None`` for streams / unknown."""
    if item.kind != "video" or item.path is None:
        return None
    try:
        cap, _, count = open_video(item.path)
    except ValueError:
        return 0  # reported when it is read
    cap.release()
    return min(count, max_frames) if count is not None and max_frames else count


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


def infer_model(
    checkpoint: Any, head: str | None, backbone: str | None, registry: Any
) -> tuple[str, str, str | None]:
    """``(head, backbone, note)``: the names given, else those the checkpoint states (bupose
    metadata) or implies (a detected official file); ``note`` says what was inferred from where."""
    from . import BuposeError

    if head is not None and backbone is not None:
        return head, backbone, None
    found: dict[str, Any] = {}
    where = ""
    if checkpoint.meta:
        found = {"head": checkpoint.meta.get("head"), "backbone": checkpoint.meta.get("backbone")}
        where = "its bupose metadata"
    else:
        spec = checkpoint.official(registry)
        if spec is not None:
            found = {"head": spec.head, "backbone": spec.backbone}
            where = f"its key layout (official {spec.name})"
    inferred = []
    if head is None:
        head = found.get("head")
        inferred.append(f"--head {head}")
    if backbone is None:
        backbone = found.get("backbone")
        inferred.append(f"--backbone {backbone}")
    if not head or not backbone:
        missing = " and ".join(f for f, v in (("--head", head), ("--backbone", backbone)) if not v)
        raise BuposeError(
            f"--weights {checkpoint.path}: {missing} not given, and the file does not say "
            "(not a bupose .safetensors with metadata, not a known official layout); give them"
        )
    return str(head), str(backbone), f"inferred {' '.join(inferred)} from {checkpoint.path} ({where})"


Predictor = Callable[[Sequence[np.ndarray]], list[Any]]
"""Images (RGB uint8) -> one :class:`~bupose.core.poses.Poses` per image."""


def torch_predictor(pipeline: Any) -> Predictor:
    """The predictor of the torch path: the head's pipeline under ``torch.inference_mode``."""
    import torch

    def predict(images: Sequence[np.ndarray]) -> list[Any]:
        with torch.inference_mode():
            return list(pipeline.predict_batch(list(images)))

    return predict


def _sigterm_as_interrupt() -> Any:
    """Make SIGTERM (``timeout``, ``kill``) stop the run as Ctrl-C does, so the final files are
    written; returns the previous handler (``None`` outside the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _clean_stale(out: Path) -> None:
    """Remove hidden temp files an interrupted run left (``.name.XXXX.tmp``, ``.clip.mp4.part.mp4``)."""
    for folder in (out, out / "overlays"):
        if not folder.is_dir():
            continue
        for q in folder.rglob(".*"):
            if q.is_file() and (q.name.endswith(".tmp") or ".part." in q.name):
                q.unlink()


class _Run:
    """The per-item loop: read, predict in batches, write a JSON line and an overlay per image."""

    def __init__(self, *, predict: Predictor, log: Any, overlays: Any, batch_size: int, exif: bool,
                 annotations: Mapping[str, Any], max_frames: int | None, bar: Any,
                 frames_log: Any = None) -> None:
        self.predict = predict
        self.frames_log = frames_log
        self.log = log
        self.overlays = overlays
        self.batch_size = batch_size
        self.exif = exif
        self.annotations = annotations
        self.max_frames = max_frames
        self.bar = bar
        self.failures: dict[str, str] = {}
        self.done = 0
        self._batch: list[tuple[InputItem, np.ndarray, dict[str, Any]]] = []

    def fail(self, item: InputItem, message: str, key: str | None = None) -> None:
        key = key or item.key
        self.failures[key] = message
        click.echo(f"error: {message}; skipped", err=True)
        self.log.append({"key": key, "file": item.display, "error": message})
        if item.kind == "image":
            self.bar.update(1)  # counted in the total

    def _predict(self, images: list[np.ndarray]) -> list[Any | Exception]:
        try:
            return self.predict(images)
        except Exception:
            if len(images) == 1:
                raise
        out: list[Any | Exception] = []
        for img in images:
            try:
                out.append(self.predict([img])[0])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            results = self._predict([b[1] for b in batch])
        except Exception as exc:  # noqa: BLE001 - a single image whose prediction fails
            results = [exc]
        for (item, img, rec), poses in zip(batch, results):
            if isinstance(poses, Exception):
                self.fail(item, f"{item.display}: prediction failed ({type(poses).__name__}: {poses})")
                continue
            try:
                rec["overlay"] = self.overlays.image(item, img, poses)
            except (OSError, ValueError) as exc:
                click.echo(f"warning: {item.display}: overlay not written ({exc})", err=True)
            rec["poses"] = poses.to_coco(item.image_id)
            self.log.append(rec)
            self.done += 1
            self.bar.update(1)

    def image(self, item: InputItem) -> None:
        from ..io import read_image

        assert item.path is not None
        try:
            img = read_image(item.path)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is this image's failure
            self.fail(item, str(exc) if str(item.path) in str(exc) else f"{item.display}: {exc}")
            return
        rec: dict[str, Any] = {"key": item.key, "image_id": item.image_id, "file": item.display, "frame": None}
        if self.exif and not item.ground_truth:
            from ._exif import apply_orientation, exif_orientation

            orientation = exif_orientation(item.path)
            if orientation not in (None, 1):
                img = apply_orientation(img, orientation)
                rec["exif_orientation"] = orientation
                click.echo(f"note: {item.display}: EXIF orientation {orientation} applied "
                           "(poses are in the upright image; --ignore-exif-orientation keeps stored pixels)", err=True)
        rec["height"], rec["width"] = int(img.shape[0]), int(img.shape[1])
        self._batch.append((item, img, rec))
        if len(self._batch) >= self.batch_size:
            self.flush()

    def video(self, item: InputItem) -> None:
        """All frames of a video / stream, batched; its overlay video is finished at the end. A
        video that fails midway is one failure (its frames so far stay in results.jsonl; --resume
        redoes it)."""
        self.flush()
        self.log.forget_video(item)
        frames = 0
        base = item.path.name if item.path is not None else item.key
        try:
            cap, fps, _ = open_video(item.path if item.path is not None else item.source)
            for k, frame in iter_frames(cap, self.max_frames):
                key = f"{item.key}#{k}"
                image_id = self.annotations.get(key, self.annotations.get(f"{base}#{k}", key))
                rec = {"key": key, "image_id": image_id, "file": item.display, "frame": k, "video": item.key,
                       "height": int(frame.shape[0]), "width": int(frame.shape[1])}
                self._batch.append((item, frame, rec))
                frames += 1
                if len(self._batch) >= self.batch_size:
                    self._flush_frames(item, fps)
            self._flush_frames(item, fps)
        except Exception as exc:  # noqa: BLE001 - any failure is this video's: the other inputs go on
            self._batch.clear()
            self.overlays.abort()
            text = str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}"
            self.fail(item, text if item.display in text else f"{item.display}: {text}")
            return
        overlay = self.overlays.end_video(item)
        self.log.append({"video_done": item.key, "file": item.display, "frames": frames, "overlay": overlay})

    def _flush_frames(self, item: InputItem, fps: float) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        poses_list = self.predict([b[1] for b in batch])
        for (_, frame, rec), poses in zip(batch, poses_list):
            ids = None
            if self.frames_log is not None:  # tracked / smoothed, OUTPUT/<video>.frames.jsonl
                video = item.path if item.path is not None else Path(str(item.key))
                poses, ids = self.frames_log.add(video, rec["frame"], fps, poses, rec["image_id"])
            rec["overlay"] = self.overlays.frame(item, frame, poses, fps, track_ids=ids)
            rec["poses"] = poses.to_coco(rec["image_id"])
            if ids is not None:
                for entry, tid in zip(rec["poses"], ids):
                    entry["track_id"] = int(tid) if tid >= 0 else None
            self.log.append(rec)
            self.done += 1
            self.bar.update(1)


@click.command("run", cls=HeadHelpCommand)
@click.option("--head", "head", default=None,
              help="Registered head (installed ones are listed below); default: what --weights says.")
@click.option("--backbone", "backbone", default=None,
              help="Registered backbone (`bupose list backbones`); default: what --weights says.")
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
              help="COCO json whose image ids are used for inputs named in it (a dataset given as INPUT needs none).")
@click.option("--output", "-o", "--out", "output", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", "device", default="auto", show_default=True, help=DEVICE_HELP)
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
              help="Write overlay images/videos under OUTPUT/overlays (and OUTPUT/index.html).")
@click.option("--vis-threshold", "--overlay-threshold", "vis_threshold", type=float, default=None,
              help="Person score from which overlays draw a pose (default: the head's own; docs/run.md lists them).")
@click.option("--score-threshold", "score_threshold", type=float, default=None,
              help="Keep only poses scoring at least this in results.json (default: every candidate, as evaluation wants).")
@click.option("--recursive", "-r", "recursive", is_flag=True, help="Look for images and videos in sub-folders too.")
@click.option("--resume", "resume", is_flag=True,
              help="Keep the images OUTPUT/results.jsonl already holds and do the rest (else they are replaced).")
@click.option("--exif-orientation/--ignore-exif-orientation", "exif", default=True, show_default=True,
              help="Turn photos upright as their EXIF orientation says (never for dataset images).")
@click.option("--video-format", "video_format", type=click.Choice(["mp4", "webm"]), default="mp4", show_default=True,
              help="Overlay videos: mp4 (H.264 when OpenCV has it, else mp4v) or webm (VP9, plays in browsers).")
@click.option("--max-frames", "max_frames", type=click.IntRange(min=1), default=None,
              help="At most N frames per video / webcam / stream (a webcam otherwise runs until Ctrl-C).")
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
    head: str | None,
    backbone: str | None,
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
    vis_threshold: float | None,
    inputs: tuple[str, ...],
    pipeline_options: tuple[str, ...] = (),
    grouper: str | None = None,
    score_threshold: float | None = None,
    recursive: bool = False,
    resume: bool = False,
    exif: bool = True,
    video_format: str = "mp4",
    max_frames: int | None = None,
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
    """Estimate poses on INPUTS (images, folders, globs, COCO-format datasets, videos, webcam
    indices, stream URLs); write OUTPUT/results.json, results.jsonl, overlays and index.html."""
    from tqdm import tqdm

    from ..export import ExportError
    from ..grouping import GroupingError, resolve_grouper
    from ..inference import Checkpoint, load_model
    from ..options import OptionError
    from ..plugins import get_registry
    from ..video import VideoFrameLog
    from . import BuposeError
    from ._device import resolve_device
    from ._run_output import OverlayWriter, ResultsLog, write_final, write_index_html

    registry = get_registry()
    video = _video_settings(track, tracker, smooth, smooth_min_cutoff, smooth_beta, smooth_d_cutoff, track_score)
    onnx = backend == "onnxruntime" or onnx_model is not None
    if onnx:
        head, backbone, layout = _onnx_target(backend, onnx_model, head, backbone, layout, weights)
        assert onnx_model is not None
        weights = onnx_model  # the network's weights are inside the ONNX file
    aliases = {"flip": flip, "scales": scales, "amp": amp, "input_size": input_size, "rescore_weights": rescore_weights}
    named_options = None
    if head is not None:  # a head given by name has its options checked before anything is read
        named_options = head_options(registry.get("heads", head), pipeline_options, aliases)
    if backbone is not None:
        registry.get("backbones", backbone)
    if weights is None:
        raise BuposeError(_weights_hint(registry, head) if head else
                          "--weights FILE is required (a bupose .safetensors or an official checkpoint; "
                          "see `bupose list weights`)")
    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    dev, dev_note = resolve_device(device)
    out_dir = Path(output)
    gt_ids = _gt_ids(annotations) if annotations else {}
    items, problems, skipped = collect_inputs(
        inputs, recursive=recursive, exclude=out_dir / "overlays", annotations=gt_ids
    )
    if not items:
        raise BuposeError("; ".join([*problems, *skipped]) if problems or skipped else "no readable inputs were given")
    for msg in skipped:
        click.echo(f"skipped: {msg}", err=True)
    for msg in problems:
        click.echo(f"error: {msg}", err=True)
    try:
        check_output_dir(output, "--output")  # before any work
        set_max_image_pixels(max_image_pixels)
        image_pixel_limit()  # a bad BUPOSE_MAX_IMAGE_PIXELS is one error now, not one per image
    except ValueError as exc:
        raise BuposeError(str(exc)) from None
    checkpoint = None
    if not onnx:  # a CheckpointError is one line at the top level (a traceback with --debug)
        checkpoint = Checkpoint.read(weights, trust=trust)  # read and recognised once: names, layout, model
        head, backbone, inferred = infer_model(checkpoint, head, backbone, registry)
        if inferred:
            click.echo(inferred, err=True)
    assert head is not None and backbone is not None
    head_spec = registry.get("heads", head)
    registry.get("backbones", backbone)
    options, passthrough = named_options or head_options(head_spec, pipeline_options, aliases)  # inferred head
    if layout is None and checkpoint is not None:
        layout = checkpoint.layout(registry)
    click.echo(f"loading {head} + {backbone} from {weights} on {dev_note} ...", err=True)
    t0 = time.perf_counter()
    try:
        resolve_grouper(head_spec, grouper, layout or head_spec.layouts[0], registry=registry)
        if onnx:
            from ..export import load_onnx_estimator

            estimator = load_onnx_estimator(weights, device=dev, options=options, grouper=grouper, **passthrough)
        else:
            estimator = load_model(
                head, backbone, weights, layout=layout, device=dev, trust=trust, options=options,
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
    click.echo(f"model ready in {time.perf_counter() - t0:.1f} s", err=True)
    estimator.model.eval()
    layout_name = estimator.model.layout.name
    vis = overlay_threshold(head_spec) if vis_threshold is None else vis_threshold

    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(out_dir)
    from ..options import options_as_dict

    header = {
        "head": head, "backbone": backbone, "layout": layout_name, "weights": os.path.abspath(weights),
        "weights_bytes": os.path.getsize(weights), "grouper": grouper,
        "options": {**(options_as_dict(options) if options is not None else {}), **passthrough},
    }  # fmt: skip
    try:
        log = ResultsLog(out_dir, resume=resume, header=header)
    except ValueError as exc:
        raise BuposeError(str(exc)) from None
    if log.replaced:
        click.echo(f"note: {out_dir / 'results.jsonl'} held {log.replaced} line(s) of an earlier run; "
                   "replaced (--resume keeps them)", err=True)
    writer = OverlayWriter(out_dir, layout_name, vis, enabled=overlays, video_format=video_format)
    todo = [it for it in items if not (resume and log.done(it))]
    if resume:
        click.echo(f"--resume: {len(items) - len(todo)} input(s) already done in {log.path}", err=True)
    total: int | None = 0
    for it in todo:
        n = 1 if it.kind == "image" else _frame_count(it, max_frames)
        total = None if (total is None or n is None) else total + n
    interrupted = False
    previous_term = _sigterm_as_interrupt()
    with tqdm(total=total, desc="bupose run", unit="img", disable=None, file=sys.stderr, dynamic_ncols=True) as bar:
        loop = _Run(predict=torch_predictor(estimator.pipeline), log=log, overlays=writer, batch_size=batch_size,
                    exif=exif, annotations=gt_ids, max_frames=max_frames, bar=bar,
                    frames_log=VideoFrameLog(out_dir, layout_name, video))
        try:
            for it in todo:
                if it.kind == "image":
                    loop.image(it)
                else:
                    loop.video(it)
            loop.flush()
        except KeyboardInterrupt:
            interrupted = True
            writer.abort()
        finally:
            _restore_sigterm(previous_term)
    log.close()
    if loop.frames_log is not None:
        loop.frames_log.close()
    path, n_poses, images = write_final(out_dir, items, log, score_threshold)
    failures = dict(loop.failures)
    for msg in problems:
        failures[msg.split(":", 1)[0]] = msg
    index = None
    if overlays:
        index = write_index_html(out_dir, images, failures, vis_threshold=vis,
                                 title=f"bupose run: {head} + {backbone} ({Path(weights).name})")
    n_images = sum(1 for im in images if not im.get("video"))
    kept = f" (score >= {score_threshold:g})" if score_threshold is not None else ""
    now = f" ({loop.done} done in this run)" if loop.done != n_images else ""
    click.echo(f"{n_images} image(s), {n_poses} pose(s){kept} -> {path}{now}")
    click.echo(f"device: {dev_note}; overlays draw poses scoring >= {vis:g}"
               + (f"; contact sheet: {index}" if index else ""), err=True)
    if interrupted:
        click.echo(f"interrupted: {loop.done} image(s) of this run are saved; "
                   "rerun the same command with --resume to do the rest", err=True)
        raise click.exceptions.Exit(130)
    if failures and n_images == 0:
        raise BuposeError(f"no input could be read: {len(failures)} input(s) failed (named above)")
    if failures:
        raise BuposeError(f"{len(failures)} input(s) failed (named above); the others are in {path}")
