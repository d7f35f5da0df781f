"""What ``bupose run`` works on: files, folders (``--recursive``), globs, COCO-format dataset specs,
webcam indices and stream URLs, each with a unique id and a unique overlay path.

Ids (the results' ``image_id`` unless ground truth gives one): a file given by name -> its file name;
a file found in a folder -> its path relative to that folder (``cam1/frame.png``); when two inputs
would get the same id, every plain input's id becomes its path relative to the deepest folder
holding them all. Images of a dataset spec keep the dataset's integer ids (their ``file_name`` is the
key). Video frames are ``<id>#<frame index>``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "DATASET_PREFIXES", "IMAGE_EXTS", "VIDEO_EXTS", "InputItem", "collect_inputs", "is_dataset_spec",
]  # fmt: skip

IMAGE_EXTS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".jp2", ".avif",
)  # fmt: skip
"""Image suffixes picked up in folders and globs (decoded by OpenCV; a GIF gives its first frame)."""
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DATASET_PREFIXES = ("coco:", "crowdpose:", "ochuman:")
RUN_FILES = ("results.json", "results.jsonl", "images.json", "index.html")
"""What ``bupose run`` writes beside ``overlays/``; never read as inputs (``-o`` inside an input folder)."""
_STREAM_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class InputItem:
    """One input: an image file, a video file, or a live stream (webcam index / URL).

    ``key`` is the unique id string, ``image_id`` the id written to the results (the dataset's or
    ``--annotations``' id when known, else ``key``), ``overlay`` the overlay's path under
    ``OUTPUT/overlays`` (``None`` for a stream: it is named from its key), ``source`` what to open;
    ``from_dataset``: the image belongs to a dataset given as input, ``ground_truth``: its id comes
    from ground truth (a dataset or ``--annotations``), whose coordinates are in stored pixels."""

    path: Path | None
    kind: str  # "image" | "video" | "stream"
    key: str
    image_id: Any = None
    overlay: str | None = None
    source: str = ""
    from_dataset: bool = False
    ground_truth: bool = False

    @property
    def display(self) -> str:
        """How messages name the input."""
        return self.source or (str(self.path) if self.path is not None else self.key)


def is_dataset_spec(raw: str) -> bool:
    """Whether an input names a COCO-format dataset (``coco:ROOT:SPLIT``..., a ``.json`` file or a
    folder holding ``annotations.json``)."""
    if raw.startswith(DATASET_PREFIXES):
        return True
    p = Path(raw)
    return (p.is_file() and p.suffix.lower() == ".json") or (p.is_dir() and (p / "annotations.json").is_file())


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTS else "image"


def _safe_key(name: str) -> str:
    parts = [("__" if part == ".." else part) for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("/", ".")]
    return "/".join(parts) or "image"


def _dataset_items(raw: str, problems: list[str]) -> list[InputItem]:
    from ..data.dataset import DatasetError, load_dataset

    try:
        dataset = load_dataset(raw)
    except (DatasetError, ValueError, OSError) as exc:
        problems.append(f"{raw}: cannot open as a COCO-format dataset ({exc})")
        return []
    items = []
    for iid in dataset.image_ids:
        info = dataset._images[iid]
        path = dataset.image_path(iid)
        key = _safe_key(str(info["file_name"]))
        items.append(InputItem(path, _kind(path), key, image_id=iid, source=str(path), from_dataset=True,
                               ground_truth=True))
    if not items:
        problems.append(f"{raw}: dataset has no images")
    return items


def _folder_files(folder: Path, recursive: bool, exclude: Path | None, skipped: list[str]) -> list[Path]:
    found: list[Path] = []
    walker = sorted(folder.rglob("*")) if recursive else sorted(folder.iterdir())
    for q in walker:
        if exclude is not None:
            qr = q.resolve()
            if qr == exclude or exclude in qr.parents or (qr.parent == exclude.parent and q.name in RUN_FILES):
                continue
        if any(part.startswith(".") for part in q.relative_to(folder).parts):
            continue  # hidden files and folders (.DS_Store, .git, our own temp files)
        if not q.is_file():
            continue
        if q.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
            found.append(q)
        elif not is_dataset_spec(str(q)):
            skipped.append(f"{q}: not an image or video suffix ({', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
    return found


def collect_inputs(
    inputs: Sequence[str],
    *,
    recursive: bool = False,
    exclude: str | os.PathLike[str] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> tuple[list[InputItem], list[str], list[str]]:
    """Expand ``inputs`` into items with unique ids; returns ``(items, problems, skipped)``.

    ``problems`` are inputs that name nothing usable (missing paths, empty folders, unopenable
    datasets); ``skipped`` names each file in a folder that is not an image or video. Nothing in
    the folder ``exclude`` (the run's own overlays) nor its sibling :data:`RUN_FILES` is read from
    folders. ``annotations`` maps file names (and base names)
    to ground-truth ids (``--annotations``)."""
    items: list[InputItem] = []
    problems: list[str] = []
    skipped: list[str] = []
    excl = Path(exclude).resolve() if exclude is not None else None
    plain: list[tuple[Path, str, Path]] = []  # (file, key relative to what was given, anchor folder)
    seen: set[Path] = set()

    def add_plain(q: Path, key: str, anchor: Path) -> None:
        r = q.resolve()
        if r in seen:
            return
        seen.add(r)
        plain.append((q, key, anchor))

    for raw in inputs:
        p = Path(raw)
        if is_dataset_spec(raw):
            items.extend(_dataset_items(raw, problems))
        elif p.is_dir():
            found = _folder_files(p, recursive, excl, skipped)
            if not found:
                problems.append(f"{p}: folder has no images or videos" + ("" if recursive else " (--recursive looks into sub-folders)"))
            for q in found:
                add_plain(q, q.relative_to(p).as_posix(), p)
        elif p.is_file():
            add_plain(p, p.name, p.parent)
        elif raw.isdigit() or _STREAM_RE.match(raw):
            key = f"webcam{raw}" if raw.isdigit() else _safe_key(re.sub(r"[^A-Za-z0-9._-]+", "_", raw))
            items.append(InputItem(None, "stream", key, image_id=key, source=raw))
        elif any(c in raw for c in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                problems.append(f"{raw}: the pattern matches no files")
            for q in files:
                if q.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
                    add_plain(q, q.name, q.parent)
                else:
                    skipped.append(f"{q}: not an image or video suffix")
        else:
            problems.append(f"{p}: no such file or folder")

    keys = [k for _, k, _ in plain]
    if len(set(keys)) != len(keys):  # e.g. cam1/frame.png and cam2/frame.png given as two folders
        root = Path(os.path.commonpath([str(q.resolve().parent) for q, _, _ in plain]))
        plain = [(q, q.resolve().relative_to(root).as_posix(), a) for q, _, a in plain]
    for q, key, _ in plain:
        image_id: Any = key
        known = False
        if annotations:
            for name in (key, q.name):
                if name in annotations:
                    image_id, known = annotations[name], True
                    break
        items.append(InputItem(q, _kind(q), key, image_id=image_id, source=str(q), ground_truth=known))
    return _with_overlays(_unique_keys(items)), problems, skipped


def _unique_keys(items: list[InputItem]) -> list[InputItem]:
    """Number repeated keys (``x.png``, ``x.png~2``): two datasets naming the same file name."""
    used: set[str] = set()
    out = []
    for item in items:
        key, n = item.key, 1
        while key in used:
            n += 1
            key = f"{item.key}~{n}"
        used.add(key)
        out.append(item if key == item.key else replace(item, key=key, image_id=item.image_id if item.ground_truth else key))
    return out


def _with_overlays(items: list[InputItem]) -> list[InputItem]:
    """Give each item a unique overlay path: ``<key without suffix>.jpg`` (``.mp4`` for videos), or
    ``<key>.jpg`` where two keys differ only in their suffix (``a.png`` and ``a.jpg``)."""

    def stem_name(item: InputItem) -> str:
        pp = PurePosixPath(item.key)
        ext = ".mp4" if item.kind in ("video", "stream") else ".jpg"
        return str(pp.with_suffix(ext)) if pp.suffix else str(pp) + ext

    names = [stem_name(i) for i in items]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = []
    used: set[str] = set()
    for item, name in zip(items, names):
        if counts[name] > 1:
            name = item.key + (".mp4" if item.kind in ("video", "stream") else ".jpg")
        base, n = name, 1
        while name in used:  # same key twice (two datasets): number them
            n += 1
            stem, _dot, ext = base.rpartition(".")
            name = f"{stem}-{n}.{ext}"
        used.add(name)
        out.append(replace(item, overlay=name))
    return out
