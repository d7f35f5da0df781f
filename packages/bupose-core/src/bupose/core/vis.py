"""Drawing poses on images, overlay files and contact sheets (RGB uint8 everywhere)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .io import read_image
from .layouts import get_layout
from .poses import Poses
from .specs import LayoutSpec

__all__ = ["contact_sheet", "draw_poses", "save_image", "save_overlay"]

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")



def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"draw_poses expects a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3]).copy()


def draw_poses(
    image: np.ndarray,
    poses: Poses | np.ndarray,
    layout: LayoutSpec | str,
    score_threshold: float = 0.0,
    ids: bool = False,
    joint_threshold: float | None = None,
    thickness: int | None = None,
    track_ids: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with every pose drawn: skeleton edges in the layout's colours,
    joints as dots, optional person index labels (``ids``) or track-id labels (``track_ids`` (N,),
    ``-1`` = no label).

    ``poses`` is a :class:`Poses` or an ``(N, J, 3)`` array (x, y, v/score — ground truth or
    predictions). People whose score is below ``score_threshold`` are skipped; joints whose third
    value is ``<= joint_threshold`` are skipped (default: ``0`` for arrays — COCO v=0 — and
    no per-joint test for ``Poses``).
    """
    spec = get_layout(layout)
    out = _as_rgb(image)
    if isinstance(poses, Poses):
        kps, scores = poses.keypoints, poses.scores
        jthr = -math.inf if joint_threshold is None else joint_threshold
    else:
        kps = np.asarray(poses, dtype=np.float64)
        if kps.ndim != 3 or kps.shape[2] != 3:
            raise ValueError(f"poses must be (N, J, 3), got {kps.shape}")
        scores = np.ones(len(kps))
        jthr = 0.0 if joint_threshold is None else joint_threshold
    if len(kps) and kps.shape[1] != spec.num_keypoints:
        raise ValueError(f"poses have {kps.shape[1]} joints, layout {spec.name} has {spec.num_keypoints}")
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 300))
    colours = spec.colors or tuple((0, 255, 0) for _ in spec.skeleton)
    shift = 4
    mul = 1 << shift
    for n in range(len(kps)):
        if scores[n] < score_threshold:
            continue
        k = kps[n]
        ok = k[:, 2] > jthr
        ok &= np.isfinite(k[:, 0]) & np.isfinite(k[:, 1])
        pts = [(round(x * mul), round(y * mul)) if o else None for (x, y, _), o in zip(k, ok)]
        for (a, b), col in zip(spec.skeleton, colours):
            if pts[a] is not None and pts[b] is not None:
                cv2.line(out, pts[a], pts[b], tuple(int(c) for c in col), t + 1, cv2.LINE_AA, shift)
        for j, p in enumerate(pts):
            if p is None:
                continue
            name = spec.keypoints[j]
            col = (255, 128, 0) if name.startswith("left") else (51, 153, 255) if name.startswith("right") else (0, 200, 0)
            cv2.circle(out, p, (t + 1) * mul, (255, 255, 255), -1, cv2.LINE_AA, shift)
            cv2.circle(out, p, t * mul, col, -1, cv2.LINE_AA, shift)
        label = str(n) if ids else None
        if track_ids is not None:
            label = f"#{int(track_ids[n])}" if int(track_ids[n]) >= 0 else None
        if label is not None and ok.any():
            x = float(k[ok, 0].min())
            y = float(k[ok, 1].min())
            org = (int(max(0, x)), int(max(10, y - 3)))
            scale = max(0.35, min(h, w) / 700)
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def save_image(path: str | os.PathLike[str], image: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB uint8 image as PNG or JPEG (by extension), atomically."""
    from .weights import atomic_write

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _IMAGE_EXTS:
        raise ValueError(f"{path}: overlay images must be .png, .jpg or .jpeg")
    rgb = _as_rgb(image)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext != ".png" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"{path}: could not encode the image")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())

    return atomic_write(path, write)


def save_overlay(
    path: str | os.PathLike[str],
    image: np.ndarray,
    poses: Poses | np.ndarray,
    layout: LayoutSpec | str,
    **draw_kwargs: Any,
) -> Path:
    """Draw ``poses`` on ``image`` (see :func:`draw_poses`) and write a PNG/JPEG atomically."""
    return save_image(path, draw_poses(image, poses, layout, **draw_kwargs))


def contact_sheet(
    folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    columns: int = 6,
    cell: int = 256,
    limit: int = 60,
    labels: bool = True,
) -> Path:
    """Tile the images of ``folder`` (sorted by name, at most ``limit``) or a list of image paths
    into one PNG/JPEG grid of ``cell``-pixel squares (aspect kept, letterboxed)."""
    if isinstance(folder, (str, os.PathLike)):
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    else:
        files = [Path(p) for p in folder]
    files = files[:limit]
    if not files:
        raise ValueError(f"{folder}: no .png/.jpg images to put on a contact sheet")
    columns = max(1, min(columns, len(files)))
    rows = math.ceil(len(files) / columns)
    sheet = np.full((rows * cell, columns * cell, 3), 32, dtype=np.uint8)
    for i, f in enumerate(files):
        img = read_image(f)
        h, w = img.shape[:2]
        s = cell / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        r, c = divmod(i, columns)
        y0 = r * cell + (cell - nh) // 2
        x0 = c * cell + (cell - nw) // 2
        sheet[y0 : y0 + nh, x0 : x0 + nw] = small
        if labels:
            cv2.putText(sheet, f.name[-24:], (c * cell + 3, r * cell + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return save_image(out, sheet)
