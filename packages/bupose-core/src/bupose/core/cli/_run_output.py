"""What ``bupose run`` writes, as it goes: ``OUTPUT/results.jsonl`` (one JSON line per image or video
frame, appended as each completes), overlays under ``OUTPUT/overlays`` (each image written
atomically; a video is written to a hidden ``.part`` file and renamed when it ends), and at the end
(also after Ctrl-C) ``results.json`` (COCO results), ``images.json`` (id -> file) and ``index.html``
(a contact sheet), each written atomically (temp file + rename).
"""

from __future__ import annotations

import html
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ._run_inputs import InputItem

__all__ = ["JSONL_NAME", "OverlayWriter", "ResultsLog", "write_index_html"]

JSONL_NAME = "results.jsonl"


class ResultsLog:
    """The per-image JSON lines of a run folder: appended line by line (one ``write`` per line, so
    an interrupted run leaves whole lines), read back for ``--resume``."""

    def __init__(self, output: Path, *, resume: bool, header: Mapping[str, Any] | None = None) -> None:
        """``header`` (model, weights, options) is the file's first line; ``resume`` keeps an
        existing file, which must have been written with the same header (ValueError otherwise)."""
        self.path = output / JSONL_NAME
        self.records: dict[str, dict[str, Any]] = {}  # key -> record (images and video frames)
        self.videos_done: dict[str, dict[str, Any]] = {}  # video key -> its closing record
        self.replaced = 0
        self.header = json.loads(json.dumps(dict(header or {}), default=str))
        found: dict[str, Any] | None = None
        if self.path.exists() and resume:
            found = self._read()
            if found is not None and self.header and found != self.header:
                diff = sorted(k for k in set(found) | set(self.header) if found.get(k) != self.header.get(k))
                detail = "; ".join(f"{k}: {found.get(k)!r} then, {self.header.get(k)!r} now" for k in diff)
                raise ValueError(
                    f"{self.path}: written by a different run ({detail}); drop --resume to replace it, "
                    "or choose another -o"
                )
        elif self.path.exists():
            self.replaced = sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip())
            self.path.unlink()
        output.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        if found is None and self.header:
            self._write({"run": self.header})

    def _read(self) -> dict[str, Any] | None:
        """Load the records of an earlier run; returns its header line (``None`` when it has none)."""
        header = None
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1  # a line cut by SIGKILL mid-write (not expected) is dropped
        if good != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
        for line in data[:good].decode("utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "run" in rec and header is None:
                header = rec["run"]
            elif rec.get("video_done"):
                self.videos_done[str(rec["video_done"])] = rec
            elif "key" in rec and "error" not in rec:
                self.records[str(rec["key"])] = rec
        return header

    def done(self, item: InputItem) -> bool:
        """Whether ``item`` completed in an earlier run (a video: every frame, and it was closed)."""
        if item.kind == "image":
            return item.key in self.records
        return item.key in self.videos_done

    def forget_video(self, item: InputItem) -> None:
        """Drop the frames of a video that an earlier run did not finish (it is redone)."""
        prefix = item.key + "#"
        for k in [k for k in self.records if k.startswith(prefix)]:
            del self.records[k]

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one line now; images and frames are kept for the final files."""
        self._write(record)
        if record.get("video_done"):
            self.videos_done[str(record["video_done"])] = dict(record)
        elif "error" not in record:
            self.records[str(record["key"])] = dict(record)

    def _write(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        os.write(self._fd, line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _h264_available() -> bool:
    """Whether this OpenCV can write H.264 (``avc1``) MP4s; probed once with FFmpeg's noise muted."""
    global _H264
    if _H264 is None:
        import tempfile

        import cv2

        with tempfile.TemporaryDirectory() as d:
            saved = os.dup(2)
            try:
                with open(os.devnull, "w") as null:
                    os.dup2(null.fileno(), 2)
                    w = cv2.VideoWriter(os.path.join(d, "probe.mp4"), cv2.VideoWriter_fourcc(*"avc1"), 5, (32, 32))
                    _H264 = bool(w.isOpened())
                    w.release()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    return _H264


_H264: bool | None = None


class OverlayWriter:
    """Draws poses and writes overlays: JPEG per image, one video per video / stream."""

    def __init__(self, output: Path, layout: str, vis_threshold: float, *, enabled: bool, video_format: str = "mp4") -> None:
        self.root = output / "overlays"
        self.layout = layout
        self.vis_threshold = vis_threshold
        self.enabled = enabled
        self.video_format = video_format
        self._videos: dict[str, tuple[Any, Path, Path]] = {}
        self.notes: list[str] = []

    def image(self, item: InputItem, image: np.ndarray, poses: Any) -> str | None:
        """Write ``item``'s overlay; returns its path relative to the output folder."""
        if not self.enabled or item.overlay is None:
            return None
        from ..vis import draw_poses, save_image

        drawn = draw_poses(image, poses, self.layout, score_threshold=self.vis_threshold)
        save_image(self.root / item.overlay, drawn)
        return f"overlays/{item.overlay}"

    def _fourcc(self) -> tuple[str, str]:
        if self.video_format == "webm":
            return "VP90", ".webm"
        if _h264_available():
            return "avc1", ".mp4"
        note = (
            "this OpenCV build has no H.264 (avc1) encoder: video overlays are MPEG-4 part 2 (mp4v), "
            "which most browsers do not play; --video-format webm writes VP9 WebM, which they do"
        )
        if note not in self.notes:
            self.notes.append(note)
            print(f"note: {note}", file=sys.stderr)
        return "mp4v", ".mp4"

    def frame(
        self, item: InputItem, image: np.ndarray, poses: Any, fps: float, track_ids: Any = None
    ) -> str | None:
        """Append a frame to ``item``'s overlay video (opened on its first frame); ``track_ids``
        (one per pose, -1: none) are drawn beside the people."""
        if not self.enabled or item.overlay is None:
            return None
        import cv2

        from ..vis import draw_poses

        drawn = draw_poses(image, poses, self.layout, score_threshold=self.vis_threshold, track_ids=track_ids)
        entry = self._videos.get(item.key)
        if entry is None:
            fourcc, ext = self._fourcc()
            final = (self.root / item.overlay).with_suffix(ext)
            final.parent.mkdir(parents=True, exist_ok=True)
            part = final.with_name(f".{final.name}.part{ext}")
            h, w = drawn.shape[:2]
            writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
            if not writer.isOpened():
                raise OSError(f"{item.display}: OpenCV cannot write a {fourcc} video to {part}")
            entry = (writer, part, final)
            self._videos[item.key] = entry
        entry[0].write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        return entry[2].relative_to(self.root.parent).as_posix()

    def end_video(self, item: InputItem) -> str | None:
        """Finish ``item``'s video: close it and move it to its final name (0644)."""
        entry = self._videos.pop(item.key, None)
        if entry is None:
            return None
        writer, part, final = entry
        writer.release()
        from ..weights import _umask

        os.chmod(part, 0o666 & ~_umask())
        os.replace(part, final)
        return final.relative_to(self.root.parent).as_posix()

    def abort(self) -> None:
        """Close unfinished videos and remove their partial files (an interrupted run)."""
        for writer, part, _ in self._videos.values():
            writer.release()
            if part.exists():
                part.unlink()
        self._videos.clear()


def _atomic_text(path: Path, text: str) -> Path:
    from ..weights import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def write_final(
    output: Path,
    items: Iterable[InputItem],
    log: ResultsLog,
    score_threshold: float | None,
) -> tuple[Path, int, list[dict[str, Any]]]:
    """``results.json`` (COCO results of the poses scoring ``>= score_threshold``, all when it is
    ``None``, in input order)
    and ``images.json`` (one entry per image / frame: id, key, file, frame, size, pose count,
    overlay); returns the results path, the number of poses written and the image entries."""
    poses: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    order = {it.key: n for n, it in enumerate(items)}

    def rank(rec: dict[str, Any]) -> tuple[int, int]:
        base = str(rec.get("video") or rec["key"])
        return order.get(base, len(order)), int(rec.get("frame") or 0)

    for rec in sorted(log.records.values(), key=rank):
        kept = [p for p in rec["poses"] if score_threshold is None or float(p["score"]) >= score_threshold]
        poses.extend(kept)
        images.append({k: rec.get(k) for k in ("image_id", "key", "file", "frame", "width", "height", "overlay")}
                      | {"poses": len(kept), "candidates": len(rec["poses"]),
                         "scores": [round(float(p["score"]), 4) for p in rec["poses"]]})
    for rec in log.videos_done.values():
        images.append({"key": rec["video_done"], "file": rec.get("file"), "video": True,
                       "frames": rec.get("frames"), "overlay": rec.get("overlay")})
    path = _atomic_text(output / "results.json", json.dumps(poses))
    _atomic_text(output / "images.json", json.dumps(images, indent=1))
    return path, len(poses), images


def write_index_html(
    output: Path,
    images: list[dict[str, Any]],
    failures: Mapping[str, str],
    *,
    vis_threshold: float,
    title: str,
) -> Path:
    """``OUTPUT/index.html``: a grid of the overlays (videos as players) with each image's pose
    count (at the overlay threshold), candidate count and best scores; failed inputs listed."""
    cells = []
    lazy = ' loading="lazy"' if len(images) > 200 else ""  # big sheets load as they scroll into view
    for im in images:
        if im.get("frame") is not None:
            continue  # video frames: the video is shown once
        overlay = im.get("overlay")
        name = html.escape(str(im.get("key")))
        if im.get("video"):
            media = (f'<video src="{quote(overlay)}" controls muted preload="metadata"></video>' if overlay
                     else "<div class=none>no overlay</div>")
            facts = f"video, {im.get('frames')} frame(s)"
        else:
            media = (f'<a href="{quote(overlay)}"><img src="{quote(overlay)}"{lazy} alt="{name}"></a>'
                     if overlay else "<div class=none>no overlay</div>")
            scores = im.get("scores") or []
            shown = sum(1 for s in scores if s >= vis_threshold)
            best = ", ".join(f"{s:.2f}" if abs(s) >= 0.005 else "0.00" for s in sorted(scores, reverse=True)[:3]) or "-"
            facts = (f"<b class=poses>{shown}</b> pose(s) shown (score &ge; {vis_threshold:g}), "
                     f"{len(scores)} candidate(s); best: <span class=scores>{best}</span>")
        ident = html.escape(str(im.get("image_id")))
        cells.append(f'<figure data-key="{name}">{media}<figcaption><code>{name}</code> (id {ident})<br>{facts}</figcaption></figure>')
    fails = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in failures.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1em; background: #fafafa; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }}
figure {{ margin: 0; background: #fff; border: 1px solid #ddd; padding: 6px; }}
figure img, figure video {{ width: 100%; height: auto; display: block; }}
figcaption {{ margin-top: 4px; }} .none {{ color: #999; }} .fail {{ color: #a00; }}
figure.missing {{ border-color: #a00; }} figure.missing figcaption::after {{ content: " (overlay file missing)"; color: #a00; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(cells)} input(s); results: <a href="results.json">results.json</a>, per image:
<a href="images.json">images.json</a>, <a href="{JSONL_NAME}">{JSONL_NAME}</a>.</p>
{f'<h2 class=fail>{len(failures)} failed</h2><ul class=fail>{fails}</ul>' if failures else ''}
<div class="grid">
{chr(10).join(cells)}
</div>
<script>
window.addEventListener("load", () => {{
  const imgs = [...document.querySelectorAll("figure img")];
  imgs.filter(i => !(i.complete && i.naturalWidth > 0)).forEach(i => i.closest("figure").classList.add("missing"));
  document.body.dataset.images = imgs.length;
  document.body.dataset.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
    return _atomic_text(output / "index.html", page)
