"""Synthetic multi-person scenes with COCO-format keypoint annotations (``bupose data synth``).

Each image shows articulated stick-and-shape figures on a textured background: a head (circle), a
torso (quadrilateral, optionally striped), limbs as thick segments whose width and colour vary per
person, and a small disc on every joint. The figures are built to be *learnable*:

- the person's **left** limbs are drawn in a warm hue family (red/orange/yellow), the **right** limbs
  in a cool one (blue/cyan/violet); joint discs have one fixed colour per joint type (left joints
  warm, right joints cool, centre joints white/green), so a mirrored figure looks different and
  flip augmentation stays consistent;
- figures face the camera (left side on the image right) or away from it (left side on the image
  left; nose and eyes then unlabelled, as COCO annotates people seen from behind).

Annotations follow COCO conventions: ``keypoints`` x, y, v with v=2 visible, v=1 labelled but covered
by a later-drawn person or object, v=0 (and x=y=0) outside the image; ``num_keypoints`` = #(v>0);
``area`` = visible pixels of the person; ``bbox`` = visible extent; ``segmentation`` = polygons of
the visible region for people and an uncompressed RLE for crowd regions (``iscrowd=1``). People whose
joints all leave the image stay annotated with ``num_keypoints=0`` (ignored by evaluation, masked in
training, as in COCO). ``crowdpose14`` images carry a ``crowdIndex`` (CrowdPose definition: mean over
people of other people's joints inside the person's box / own joints, clipped to [0, 1]).

Difficulty:

- ``easy`` — 1-3 people, 0.55x to 0.95x the image tall (at least 64 px), little overlap, smooth low-contrast
  backgrounds, no crowd regions, no occluding objects. Meant for quick training runs (DEKR with a
  small HRNet on CPU for a few minutes).
- ``normal`` — 0-9 people from ~12 px (tiny) to 1.2x the image tall, overlaps and occlusions,
  truncation at borders, crowd regions in ~15 % of images, clutter objects, textured backgrounds.
- ``overlap`` — OCHuman-style: 2-4 people of similar size (0.5x to 0.85x the image tall) standing in
  one group, each figure's box overlapping another figure's box with IoU >= 0.5 (OCHuman's
  selection rule), so people occlude each other heavily; no crowd regions or occluding objects.

Image ids are 1..N, files ``images/<id:012d>.png`` (or ``.jpg``). Deterministic for a given
(seed, layout, size, difficulty, image index).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["DIFFICULTIES", "SYNTH_LAYOUTS", "generate", "render_scene"]

SYNTH_LAYOUTS = ("coco17", "crowdpose14")
DIFFICULTIES = ("easy", "normal", "overlap")

# body model joints (internal names); COCO / CrowdPose layouts are built from them
_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
    "top_head", "neck",
)  # fmt: skip
_IDX = {n: i for i, n in enumerate(_NAMES)}
_LAYOUT_JOINTS = {
    "coco17": _NAMES[:17],
    "crowdpose14": (
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "top_head", "neck",
    ),
}  # fmt: skip
_FACE = ("nose", "left_eye", "right_eye")

# joint disc colours (RGB): left warm, right cool, centre neutral
_JOINT_COLOURS = {
    "nose": (255, 255, 255), "top_head": (255, 255, 255), "neck": (60, 220, 60),
    "left_eye": (255, 60, 60), "right_eye": (60, 60, 255),
    "left_ear": (255, 150, 0), "right_ear": (0, 170, 255),
    "left_shoulder": (255, 0, 0), "right_shoulder": (0, 0, 255),
    "left_elbow": (255, 128, 0), "right_elbow": (0, 128, 255),
    "left_wrist": (255, 230, 0), "right_wrist": (0, 230, 230),
    "left_hip": (200, 0, 80), "right_hip": (80, 0, 200),
    "left_knee": (255, 90, 140), "right_knee": (120, 90, 255),
    "left_ankle": (255, 200, 120), "right_ankle": (150, 220, 255),
}  # fmt: skip


@dataclass(frozen=True)
class _Settings:
    people: tuple[int, int]
    people_p: tuple[float, ...]
    height: tuple[float, float]  # person height as a fraction of the image size (log-uniform)
    min_height_px: float
    crowd_prob: float
    clutter: tuple[int, int]
    occluders: tuple[int, int]
    lean_deg: float
    spread: float  # how far figures may be from the image (fraction of their height outside)
    background_contrast: float
    noise: float


_SETTINGS = {
    "easy": _Settings(
        people=(1, 3), people_p=(0.45, 0.35, 0.2), height=(0.55, 0.95), min_height_px=64,
        crowd_prob=0.0, clutter=(0, 2), occluders=(0, 0), lean_deg=8, spread=0.1,
        background_contrast=0.35, noise=2.0,
    ),
    "normal": _Settings(
        people=(0, 9), people_p=(0.04, 0.13, 0.16, 0.16, 0.14, 0.12, 0.09, 0.07, 0.05, 0.04),
        height=(0.05, 1.2), min_height_px=12, crowd_prob=0.15, clutter=(1, 6), occluders=(0, 2),
        lean_deg=15, spread=0.35, background_contrast=0.6, noise=5.0,
    ),
    "overlap": _Settings(
        people=(2, 4), people_p=(0.5, 0.35, 0.15), height=(0.5, 0.85), min_height_px=48,
        crowd_prob=0.0, clutter=(0, 2), occluders=(0, 0), lean_deg=8, spread=0.05,
        background_contrast=0.45, noise=3.0,
    ),
}  # fmt: skip

OVERLAP_MIN_IOU = 0.5
"""``overlap`` scenes: every figure's full box (before occlusion) has IoU >= this with another's."""


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _hsv_colour(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]) -> tuple[int, int, int]:
    h = rng.uniform(*hue) % 180
    px = np.uint8([[[h, rng.uniform(*sat), rng.uniform(*val)]]])
    r, g, b = cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _pose(rng: np.random.Generator, st: _Settings) -> tuple[np.ndarray, dict[str, float], bool]:
    """Joint positions (19, 2) of a unit-height figure, pelvis at the origin, y down."""
    lean = rng.normal(0, st.lean_deg)
    if st is _SETTINGS["normal"] and rng.random() < 0.05:
        lean += rng.choice([-1, 1]) * rng.uniform(40, 90)  # bending / lying
    up = _rot(np.array([0.0, -1.0]), lean)
    side = _rot(np.array([1.0, 0.0]), lean)  # image-right when upright
    facing_front = bool(rng.random() < 0.6)
    left_dir = side if facing_front else -side  # where the person's left side is
    width = rng.uniform(0.65, 1.15)
    j = np.zeros((len(_NAMES), 2))
    torso = rng.uniform(0.27, 0.33)
    neck = up * (torso + 0.03)
    sh_c = up * torso
    j[_IDX["neck"]] = neck
    sw, hw = 0.11 * width, 0.07 * width
    j[_IDX["left_shoulder"]] = sh_c + left_dir * sw
    j[_IDX["right_shoulder"]] = sh_c - left_dir * sw
    j[_IDX["left_hip"]] = left_dir * hw
    j[_IDX["right_hip"]] = -left_dir * hw
    head_tilt = rng.normal(0, 10)
    hup = _rot(up, head_tilt)
    hside = _rot(left_dir, head_tilt)
    head_r = rng.uniform(0.055, 0.07)
    head_c = neck + hup * (head_r + 0.015)
    j[_IDX["top_head"]] = head_c + hup * head_r
    j[_IDX["nose"]] = head_c - hup * head_r * 0.15
    j[_IDX["left_eye"]] = head_c + hup * head_r * 0.3 + hside * head_r * 0.4
    j[_IDX["right_eye"]] = head_c + hup * head_r * 0.3 - hside * head_r * 0.4
    j[_IDX["left_ear"]] = head_c + hside * head_r * 0.95
    j[_IDX["right_ear"]] = head_c - hside * head_r * 0.95
    down = -up
    arm_u, arm_f = rng.uniform(0.14, 0.17), rng.uniform(0.13, 0.16)
    leg_u, leg_l = rng.uniform(0.22, 0.26), rng.uniform(0.21, 0.25)
    for s, sgn in (("left", 1.0), ("right", -1.0)):
        # angles measured from "down", positive = away from the body on that side
        outward = sgn if facing_front else -sgn
        a_up = rng.uniform(-25, 160) if rng.random() < 0.8 else rng.uniform(-60, 180)
        a_fore = a_up + rng.choice([-1, 1]) * rng.uniform(0, 140)
        d1 = _rot(down, -outward * a_up)
        d2 = _rot(down, -outward * a_fore)
        elbow = j[_IDX[f"{s}_shoulder"]] + d1 * arm_u
        j[_IDX[f"{s}_elbow"]] = elbow
        j[_IDX[f"{s}_wrist"]] = elbow + d2 * arm_f
        t_up = rng.uniform(-12, 45) if rng.random() < 0.85 else rng.uniform(-30, 100)
        t_low = t_up - rng.uniform(0, 90) * rng.choice([-0.3, 1.0])
        e1 = _rot(down, -outward * t_up)
        e2 = _rot(down, -outward * t_low)
        knee = j[_IDX[f"{s}_hip"]] + e1 * leg_u
        j[_IDX[f"{s}_knee"]] = knee
        j[_IDX[f"{s}_ankle"]] = knee + e2 * leg_l
    return j, {"head_r": head_r, "width": width}, facing_front


@functools.lru_cache(maxsize=4)
def _noise_tile(size: int) -> np.ndarray:
    """A fixed N(0, 1) noise texture larger than the image; scenes use random crops of it."""
    n = max(512, 2 * size)
    return np.random.default_rng(20240607).standard_normal((n, n, 3), dtype=np.float32)


def _background(rng: np.random.Generator, size: int, st: _Settings) -> np.ndarray:
    g = int(rng.integers(2, 9))
    base = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
    mean = rng.uniform(60, 200, 3).astype(np.float32)
    base = mean + (base - 128) * st.background_contrast
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    kind = rng.integers(0, 4)
    if kind == 1:  # stripes
        period = rng.uniform(6, 40)
        ang = rng.uniform(0, math.pi)
        yy, xx = np.ogrid[0:size, 0:size]
        phase = (xx * math.cos(ang) + yy * math.sin(ang)).astype(np.float32) * np.float32(2 * math.pi / period)
        img += (np.sin(phase) * np.float32(rng.uniform(5, 25) * st.background_contrast))[..., None]
    elif kind == 2:  # checker / tiles
        t = int(rng.integers(8, 48))
        yy, xx = np.ogrid[0:size, 0:size]
        chk = ((xx // t + yy // t) % 2).astype(np.float32) * 2 - 1
        img += (chk * np.float32(rng.uniform(5, 20) * st.background_contrast))[..., None]
    tile = _noise_tile(size)
    oy, ox = (int(v) for v in rng.integers(0, tile.shape[0] - size + 1, 2))
    img += tile[oy : oy + size, ox : ox + size] * np.float32(st.noise)
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _clutter(rng: np.random.Generator, img: np.ndarray, idbuf: np.ndarray | None, count: int, occluder_id: int) -> None:
    size = img.shape[0]
    for _ in range(count):
        col = _hsv_colour(rng, (0, 180), (0, 120), (40, 220))
        cx, cy = (int(v) for v in rng.uniform(0, size, 2))
        w, h = (int(v) for v in rng.uniform(size * 0.04, size * 0.25, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), col, -1)
            if idbuf is not None:
                cv2.rectangle(idbuf, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), occluder_id, -1)
        else:
            ang = float(rng.uniform(0, 180))
            cv2.ellipse(img, (cx, cy), (max(1, w // 2), max(1, h // 2)), ang, 0, 360, col, -1, cv2.LINE_AA)
            if idbuf is not None:
                cv2.ellipse(idbuf, (cx, cy), (max(1, w // 2), max(1, h // 2)), ang, 0, 360, occluder_id, -1)


_LIMBS = (
    ("left_shoulder", "left_elbow", 0.070), ("left_elbow", "left_wrist", 0.055),
    ("right_shoulder", "right_elbow", 0.070), ("right_elbow", "right_wrist", 0.055),
    ("left_hip", "left_knee", 0.095), ("left_knee", "left_ankle", 0.075),
    ("right_hip", "right_knee", 0.095), ("right_knee", "right_ankle", 0.075),
)  # fmt: skip


def _draw_person(
    rng: np.random.Generator,
    img: np.ndarray,
    idbuf: np.ndarray,
    pid: int,
    pts: np.ndarray,
    height: float,
    info: dict[str, float],
    facing_front: bool,
    detail: bool,
) -> None:
    """Draw one figure (``pts`` in image pixels, 19 body-model joints) into ``img`` and ``idbuf``."""
    shift = 4
    mul = 1 << shift

    def P(p: np.ndarray) -> tuple[int, int]:
        return round(p[0] * mul), round(p[1] * mul)

    wscale = rng.uniform(0.8, 1.3) * info["width"]
    left_col = _hsv_colour(rng, (0, 28), (170, 255), (170, 255))
    right_col = _hsv_colour(rng, (95, 135), (170, 255), (150, 255))
    torso_col = _hsv_colour(rng, (0, 180), (40, 200), (60, 230))
    skin = _hsv_colour(rng, (5, 20), (60, 160), (90, 230))
    order = list(_LIMBS)
    # limbs behind the torso first, depending on facing; then torso, head, the rest
    back_side = "right" if facing_front else "left"
    behind = [limb for limb in order if limb[0].startswith(back_side) and rng.random() < 0.5]
    front = [limb for limb in order if limb not in behind]

    def limb(a: str, b: str, w: float) -> None:
        col = left_col if a.startswith("left") else right_col
        th = max(1, round(w * wscale * height))
        cv2.line(img, P(pts[_IDX[a]]), P(pts[_IDX[b]]), col, th, cv2.LINE_AA, shift)
        cv2.line(idbuf, P(pts[_IDX[a]]), P(pts[_IDX[b]]), pid, th, cv2.LINE_8, shift)

    for a, b, w in behind:
        limb(a, b, w)
    ls, rs = pts[_IDX["left_shoulder"]], pts[_IDX["right_shoulder"]]
    lh, rh = pts[_IDX["left_hip"]], pts[_IDX["right_hip"]]
    sh_w = (ls - rs) * 0.2
    hp_w = (lh - rh) * 0.45
    quad = np.array([ls + sh_w, rs - sh_w, rh - hp_w, lh + hp_w])
    poly = np.round(quad * mul).astype(np.int32)[None]
    cv2.fillPoly(img, poly, torso_col, cv2.LINE_AA, shift)
    cv2.fillPoly(idbuf, poly, pid, cv2.LINE_8, shift)
    if detail and rng.random() < 0.4:  # striped shirt
        stripe = _hsv_colour(rng, (0, 180), (0, 255), (30, 255))
        n = int(rng.integers(2, 5))
        for t in np.linspace(0.2, 0.8, n):
            a = ls + (lh - ls) * t
            b = rs + (rh - rs) * t
            cv2.line(img, P(a), P(b), stripe, max(1, int(height * 0.015)), cv2.LINE_AA, shift)
    # neck and head
    neck = pts[_IDX["neck"]]
    mid_sh = (ls + rs) / 2
    cv2.line(img, P(mid_sh), P(neck), skin, max(1, int(0.06 * height)), cv2.LINE_AA, shift)
    cv2.line(idbuf, P(mid_sh), P(neck), pid, max(1, int(0.06 * height)), cv2.LINE_8, shift)
    head_c = (pts[_IDX["left_ear"]] + pts[_IDX["right_ear"]]) / 2
    r = max(1.0, info["head_r"] * height)
    cv2.circle(img, P(head_c), round(r * mul), skin, -1, cv2.LINE_AA, shift)
    cv2.circle(idbuf, P(head_c), round(r * mul), pid, -1, cv2.LINE_8, shift)
    if not facing_front:  # hair covers the back of the head
        hair = _hsv_colour(rng, (0, 30), (50, 200), (20, 90))
        cv2.circle(img, P(head_c), round(r * 0.85 * mul), hair, -1, cv2.LINE_AA, shift)
    for a, b, w in front:
        limb(a, b, w)
    # joint discs
    jr = max(1.0, 0.022 * height)
    for name in _NAMES:
        if not facing_front and name in _FACE:
            continue
        if name == "top_head":
            continue
        col = _JOINT_COLOURS[name]
        rr = jr * (0.6 if name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear") else 1.0)
        cv2.circle(img, P(pts[_IDX[name]]), round(max(0.8, rr) * mul), col, -1, cv2.LINE_AA, shift)


def _polygons(mask: np.ndarray) -> list[list[int]]:
    """Outer contours of ``mask`` as COCO polygons (integer pixel corners, simplified to 0.7 px)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) > 8:
            c = cv2.approxPolyDP(c, 0.7, True)
        c = c.reshape(-1, 2)
        if len(c) < 3:  # degenerate: use a tiny box around it
            x0, y0 = c.min(axis=0)
            x1, y1 = c.max(axis=0) + 1
            c = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append([int(v) for v in c.reshape(-1)])
    return polys


def _rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, starting with a run of zeros)."""
    flat = mask.reshape(-1, order="F").astype(np.uint8)
    change = np.nonzero(np.diff(flat))[0] + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return [int(r) for r in runs]


def _crowd_index(keypoints: list[np.ndarray], boxes: list[tuple[float, float, float, float]]) -> float:
    total = []
    for i, (x, y, w, h) in enumerate(boxes):
        own = int((keypoints[i][:, 2] > 0).sum())
        if own == 0 or w <= 0 or h <= 0:
            continue
        other = 0
        for j, kp in enumerate(keypoints):
            if j == i:
                continue
            v = kp[:, 2] > 0
            inside = (kp[:, 0] >= x) & (kp[:, 0] <= x + w) & (kp[:, 1] >= y) & (kp[:, 1] <= y + h) & v
            other += int(inside.sum())
        total.append(other / own)
    return float(min(1.0, np.mean(total))) if total else 0.0


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _full_box(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _overlap_group(
    rng: np.random.Generator, people: list[tuple[float, np.ndarray, dict[str, float], bool]], size: int
) -> list[tuple[float, np.ndarray, dict[str, float], bool]]:
    """Move the figures into one group around the image centre: person k's box centre is a small
    random step from an earlier person's, shrunk until its box IoU with that person's is at least
    :data:`OVERLAP_MIN_IOU`."""
    out = []
    centre = np.array([size / 2, size / 2]) + rng.uniform(-0.1, 0.1, 2) * size
    for k, (h, pts, info, ff) in enumerate(people):
        box = _full_box(pts)
        mid = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        if k == 0:
            target = centre
        else:
            anchor_box = _full_box(out[int(rng.integers(0, k))][1])
            anchor = np.array([(anchor_box[0] + anchor_box[2]) / 2, (anchor_box[1] + anchor_box[3]) / 2])
            step = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3) * (box[2] - box[0] + box[3] - box[1]) / 2,
                             rng.uniform(-0.08, 0.08) * (box[3] - box[1])])
            for _ in range(20):
                moved = box + np.tile(anchor + step - mid, 2)
                if _box_iou(moved, anchor_box) >= OVERLAP_MIN_IOU:
                    break
                step *= 0.7
            else:
                step = np.zeros(2)
            target = anchor + step
        out.append((h, pts + (target - mid), info, ff))
    return out


def render_scene(
    seed: int | tuple[int, ...] | np.random.Generator,
    layout: str = "coco17",
    size: int = 256,
    difficulty: str = "normal",
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """One scene: ``(image RGB uint8 (size, size, 3), annotations (no ids), image fields)``."""
    if layout not in _LAYOUT_JOINTS:
        raise ValueError(f"synthetic scenes support layouts {SYNTH_LAYOUTS}, got {layout!r}")
    if difficulty not in _SETTINGS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    st = _SETTINGS[difficulty]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    img = _background(rng, size, st)
    _clutter(rng, img, None, int(rng.integers(st.clutter[0], st.clutter[1] + 1)), 0)
    idbuf = np.zeros((size, size), dtype=np.int32)
    anns: list[dict[str, Any]] = []
    joints_out = [_IDX[n] for n in _LAYOUT_JOINTS[layout]]

    # crowd region: a patch of tiny unannotated figures, annotated as one iscrowd RLE
    crowd_masks = []
    if rng.random() < st.crowd_prob:
        cw, ch = (int(v) for v in rng.uniform(0.2, 0.45, 2) * size)
        cx0, cy0 = int(rng.integers(0, size - cw)), int(rng.integers(0, size - ch))
        region = np.zeros((size, size), dtype=np.int32)
        for _ in range(int(rng.integers(8, 25))):
            h = rng.uniform(8, 22)
            pts, info, ff = _pose(rng, st)
            root = np.array([rng.uniform(cx0, cx0 + cw), rng.uniform(cy0 + h * 0.5, cy0 + ch)])
            _draw_person(rng, img, region, 1, pts * h + root, h, info, ff, detail=False)
        crowd = region > 0
        crowd[cy0 : cy0 + ch, cx0 : cx0 + cw] |= crowd[cy0 : cy0 + ch, cx0 : cx0 + cw].any()
        crowd_masks.append(crowd)

    lo, hi = st.people
    count = int(rng.choice(np.arange(lo, hi + 1), p=np.asarray(st.people_p) / np.sum(st.people_p)))
    people = []
    for _ in range(count):
        frac = math.exp(rng.uniform(math.log(st.height[0]), math.log(st.height[1])))
        h = max(st.min_height_px, frac * size)
        pts, info, ff = _pose(rng, st)
        span_lo = pts.min(axis=0) * h
        span_hi = pts.max(axis=0) * h
        margin = st.spread * h
        xr = (-span_lo[0] - margin, size - span_hi[0] + margin)
        yr = (-span_lo[1] - margin, size - span_hi[1] + margin)
        root = np.array([rng.uniform(min(xr), max(xr)), rng.uniform(min(yr), max(yr))])
        people.append((h, pts * h + root, info, ff))
    if difficulty == "easy" and len(people) > 1:  # spread people out horizontally
        slots = rng.permutation(len(people))
        for k, (h, pts, info, ff) in enumerate(people):
            centre_x = (slots[k] + 0.5) * size / len(people)
            dx = centre_x - (pts[:, 0].min() + pts[:, 0].max()) / 2
            people[k] = (h, pts + np.array([dx, 0.0]), info, ff)
    if difficulty == "overlap" and people:
        people = _overlap_group(rng, people, size)
    # draw far (small) people first so larger ones occlude them, with some randomness
    order = sorted(range(len(people)), key=lambda k: people[k][0] * rng.uniform(0.7, 1.3))
    occluder_id = len(people) + 1
    for rank, k in enumerate(order):
        h, pts, info, ff = people[k]
        _draw_person(rng, img, idbuf, k + 1, pts, h, info, ff, detail=difficulty != "easy")
        if rank == len(order) // 2 and st.occluders[1] > 0:
            _clutter(rng, img, idbuf, int(rng.integers(st.occluders[0], st.occluders[1] + 1)), occluder_id)

    kps_all, boxes = [], []
    for k, (_h, pts, _info, ff) in enumerate(people):
        mask = idbuf == k + 1
        kp = np.zeros((len(joints_out), 3))
        for out_j, body_j in enumerate(joints_out):
            x, y = pts[body_j]
            if not (0 <= x < size and 0 <= y < size):
                continue
            if not ff and _NAMES[body_j] in _FACE:
                continue
            xi, yi = int(x), int(y)
            kp[out_j] = (round(float(x), 2), round(float(y), 2), 2 if idbuf[yi, xi] == k + 1 else 1)
        area = float(mask.sum())
        if area == 0 and not (kp[:, 2] > 0).any():
            continue  # entirely outside the image or hidden: not annotated
        if area > 0:
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
            seg = _polygons(mask)
        else:  # fully covered person with labelled (occluded) joints: box of its joints
            v = kp[:, 2] > 0
            x0, y0 = kp[v, :2].min(axis=0)
            x1, y1 = kp[v, :2].max(axis=0)
            box = (float(x0), float(y0), float(max(1.0, x1 - x0)), float(max(1.0, y1 - y0)))
            area = box[2] * box[3]
            seg = [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3], box[0], box[1] + box[3]]]
        kps_all.append(kp)
        boxes.append(box)
        anns.append(
            {
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": [float(v) if i % 3 != 2 else int(v) for i, v in enumerate(kp.reshape(-1))],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "area": area,
                "bbox": [round(b, 2) for b in box],
                "segmentation": seg,
            }
        )
    for crowd in crowd_masks:
        ys, xs = np.nonzero(crowd)
        anns.append(
            {
                "category_id": 1,
                "iscrowd": 1,
                "keypoints": [0] * (3 * len(joints_out)),
                "num_keypoints": 0,
                "area": float(crowd.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                "segmentation": {"counts": _rle_counts(crowd), "size": [size, size]},
            }
        )
    fields: dict[str, Any] = {"width": size, "height": size}
    if layout == "crowdpose14":
        fields["crowdIndex"] = round(_crowd_index(kps_all, boxes), 4)
    return img, anns, fields


def _categories(layout: str) -> list[dict[str, Any]]:
    from ..layouts import COCO17, CROWDPOSE14

    spec = COCO17 if layout == "coco17" else CROWDPOSE14
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(spec.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],
        }
    ]


def generate(
    out_dir: str | os.PathLike[str],
    layout: str = "coco17",
    num_images: int = 100,
    size: int = 256,
    seed: int = 0,
    *,
    difficulty: str = "normal",
    image_format: str = "png",
    progress: bool = True,
) -> Path:
    """Write ``out_dir/images/<id:012d>.<fmt>`` and ``out_dir/annotations.json``; returns the json path."""
    if layout not in _LAYOUT_JOINTS:
        raise ValueError(f"synthetic scenes support layouts {SYNTH_LAYOUTS}, got {layout!r}")
    if difficulty not in _SETTINGS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    if num_images < 0 or size < 32:
        raise ValueError("num_images must be >= 0 and size >= 32")
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    layout_code = {"coco17": 0, "crowdpose14": 1}[layout]
    diff_code = DIFFICULTIES.index(difficulty)
    params = (
        [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        if image_format == "png"
        else [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    for i in tqdm(range(num_images), desc=f"synth {layout}", disable=not progress, unit="img"):
        image_id = i + 1
        img, anns, fields = render_scene((seed, layout_code, diff_code, size, i), layout, size, difficulty)
        name = f"{image_id:012d}.{image_format}"
        ok, buf = cv2.imencode(f".{image_format}", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"could not encode {name}")
        (out / "images" / name).write_bytes(buf.tobytes())
        images.append({"id": image_id, "file_name": name, **fields})
        for a in anns:
            annotations.append({"id": ann_id, "image_id": image_id, **a})
            ann_id += 1
    info = {"description": f"bupose synthetic scenes ({layout}, {difficulty})", "seed": seed, "size": size,
            "difficulty": difficulty}  # fmt: skip
    return _write_coco(out / "annotations.json", info, images, annotations, layout)


def _write_coco(path: Path, info: dict[str, Any], images: list[Any], annotations: list[Any], layout: str) -> Path:
    """Write a COCO keypoints json (atomically)."""
    from ..weights import atomic_write

    data = {"info": info, "images": images, "annotations": annotations, "categories": _categories(layout)}

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)

    return atomic_write(path, write)


def generate_video(
    out_path: str | os.PathLike[str],
    layout: str = "coco17",
    frames: int = 48,
    size: int = 192,
    seed: int = 0,
    *,
    fps: float = 25.0,
    difficulty: str = "normal",
) -> tuple[Path, Path]:
    """A synthetic video: a camera panning smoothly over one synthetic scene, so its people move smoothly.

    Writes ``out_path`` (MP4, ``size`` x ``size``, ``fps``) and next to it ``<stem>.json``: COCO-format
    ground truth with one image per frame, ``file_name`` ``"<video name>#<frame>"`` (the image ids
    ``bupose run`` gives video frames, so ``bupose run --annotations`` and ``bupose eval`` pair with it).
    People are the scene's annotated people; joints that leave the frame get ``v = 0``; crowd regions
    of the scene are not annotated. Returns ``(video path, annotations path)``.
    """
    if layout not in _LAYOUT_JOINTS:
        raise ValueError(f"synthetic scenes support layouts {SYNTH_LAYOUTS}, got {layout!r}")
    if frames < 1 or size < 32 or not fps > 0:
        raise ValueError("frames must be >= 1, size >= 32 and fps > 0")
    out = Path(out_path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"{out}: the synthetic video is written as .mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    scene_size = size * 3 // 2
    layout_code = {"coco17": 0, "crowdpose14": 1}[layout]
    img, anns, _ = render_scene((seed, layout_code, DIFFICULTIES.index(difficulty), scene_size, 0), layout,
                                scene_size, difficulty)  # fmt: skip
    people = [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in anns if not a.get("iscrowd")]
    span = scene_size - size
    images, annotations = [], []
    writer = cv2.VideoWriter(str(out) + ".tmp.mp4", cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"{out}: OpenCV cannot write MP4 here")
    try:
        for k in range(frames):
            phase = 2 * math.pi * k / max(frames, 2)
            x0 = round(span / 2 * (1 + math.sin(phase)))
            y0 = round(span / 2 * (1 + 0.5 * math.sin(2 * phase)))
            writer.write(cv2.cvtColor(np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size]), cv2.COLOR_RGB2BGR))
            images.append({"id": k + 1, "file_name": f"{out.name}#{k}", "width": size, "height": size})
            for kp in people:
                shifted = kp.copy()
                shifted[:, 0] -= x0
                shifted[:, 1] -= y0
                inside = (shifted[:, 0] >= 0) & (shifted[:, 0] < size) & (shifted[:, 1] >= 0) & (shifted[:, 1] < size)
                shifted[~(inside & (shifted[:, 2] > 0))] = 0.0
                vis = shifted[:, 2] > 0
                if vis.sum() < 2:
                    continue
                lo, hi = shifted[vis, :2].min(0), shifted[vis, :2].max(0)
                box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                    "keypoints": [round(float(v), 2) for v in shifted.reshape(-1)], "num_keypoints": int(vis.sum()),
                    "bbox": box, "area": max(box[2] * box[3], 1.0),
                })  # fmt: skip
    finally:
        writer.release()
    os.replace(str(out) + ".tmp.mp4", out)
    info = {"description": f"bupose synthetic video ({layout}, {difficulty}, panning)", "seed": seed, "fps": fps}
    return out, _write_coco(out.with_suffix(".json"), info, images, annotations, layout)
