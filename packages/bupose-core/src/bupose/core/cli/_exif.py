"""EXIF orientation of JPEG / TIFF / WebP files, and turning a decoded image upright.

:func:`bupose.core.io.read_image` keeps the stored pixel order (as the official loaders and COCO
ground truth do); ``bupose run`` applies the orientation of plain photos (``--exif-orientation``)
with these two functions. Only the orientation tag (0x0112 of IFD0) is read.
"""

from __future__ import annotations

import os
import struct

import numpy as np

__all__ = ["apply_orientation", "exif_orientation"]

_ORIENTATION_TAG = 0x0112


def _tiff_orientation(tiff: bytes) -> int | None:
    """The orientation in a TIFF-structured EXIF block (``II*\\0`` / ``MM\\0*`` header)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    end = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(end + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(end + "H", tiff[offset : offset + 2])
    for i in range(count):
        at = offset + 2 + 12 * i
        if at + 12 > len(tiff):
            return None
        tag, typ, _n = struct.unpack(end + "HHI", tiff[at : at + 8])
        if tag == _ORIENTATION_TAG and typ == 3:  # SHORT
            (value,) = struct.unpack(end + "H", tiff[at + 8 : at + 10])
            return int(value) if 1 <= value <= 8 else None
    return None


def exif_orientation(path: str | os.PathLike[str]) -> int | None:
    """The EXIF orientation (1-8) stored in an image file, or ``None`` when it has none (or the file
    is not JPEG / TIFF / WebP). Never raises for unreadable or malformed files."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)  # EXIF sits at the start (APP1 is at most 64 KiB)
    except OSError:
        return None
    try:
        if head[:2] == b"\xff\xd8":  # JPEG: walk the markers up to the image data
            i = 2
            while i + 4 <= len(head) and head[i] == 0xFF:
                marker = head[i + 1]
                if marker in (0xD9, 0xDA):  # end of image / start of scan
                    return None
                (size,) = struct.unpack(">H", head[i + 2 : i + 4])
                seg = head[i + 4 : i + 2 + size]
                if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
                    return _tiff_orientation(seg[6:])
                i += 2 + size
            return None
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_orientation(head)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            i = 12
            while i + 8 <= len(head):
                fourcc = head[i : i + 4]
                (size,) = struct.unpack("<I", head[i + 4 : i + 8])
                if fourcc == b"EXIF":
                    data = head[i + 8 : i + 8 + size]
                    return _tiff_orientation(data[6:] if data[:6] == b"Exif\x00\x00" else data)
                i += 8 + size + (size & 1)
    except struct.error:
        return None
    return None


def apply_orientation(image: np.ndarray, orientation: int | None) -> np.ndarray:
    """``image`` (H, W, C) turned as EXIF ``orientation`` says a viewer shows it (1/None: as is)."""
    if orientation is None or orientation == 1:
        return image
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    op = ops.get(int(orientation))
    return image if op is None else np.ascontiguousarray(op(image))
