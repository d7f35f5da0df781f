"""Reading image files."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read_image"]


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image file at ``path`` as RGB uint8 (H, W, 3); EXIF orientation ignored (as
    ``cv2.IMREAD_IGNORE_ORIENTATION``, like the official loaders).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` naming the file for a
    directory, an empty file or data that is not a readable image.
    """
    import cv2

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: image file not found")
    if not os.path.isfile(p):
        raise ValueError(f"{p}: not a file (expected an image file)")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the image file ({exc})") from exc
    if data.size == 0:
        raise ValueError(f"{p}: the image file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ValueError(f"{p}: not a readable image (unknown or corrupt image data)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
