"""Reading image files: untrusted input, checked before decoding.

Rules (``docs/reliability.md`` lists every case):

- the format is recognised from the file's first bytes (JPEG, PNG, GIF, BMP, TIFF, WebP, PPM/PGM;
  anything else is handed to OpenCV and refused when it cannot decode it); the file name's
  extension does not matter;
- the size in the header is read before decoding: an image over :func:`max_image_pixels`
  (default :data:`DEFAULT_MAX_IMAGE_PIXELS`, raised by ``BUPOSE_MAX_IMAGE_PIXELS`` or
  ``bupose run --max-image-pixels``) or with a zero width/height is refused without decoding;
- truncated JPEG (no end-of-image marker after the scan data) and PNG (no ``IEND`` chunk) files
  are refused instead of being decoded into partly grey images;
- every image becomes RGB uint8 (H, W, 3): grayscale is repeated over the channels, 16-bit samples
  are scaled to 8 bits, the alpha channel is dropped (not composited), palettes are expanded, CMYK
  JPEGs are converted to RGB;
- EXIF orientation is ignored: pixels are used as stored (as ``cv2.IMREAD_IGNORE_ORIENTATION`` and
  the official loaders do), so keypoints are in the stored image's coordinates, like COCO's;
- an animated GIF gives its first frame (GIF decoding needs OpenCV >= 4.11; older builds refuse
  GIFs with a line that says so);
- warnings that the native decoders print to the process's stderr (libjpeg's "Corrupt JPEG data",
  libpng's "iCCP: known incorrect sRGB profile", ...) name no file and are hidden; set
  ``BUPOSE_DEBUG=1`` (``bupose --debug`` does) to see them.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageHeader",
    "check_output_dir",
    "max_image_pixels",
    "quiet_native_stderr",
    "read_header",
    "read_image",
    "set_max_image_pixels",
]

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
"""Largest image (width x height) decoded unless raised: 100 megapixels (300 MB as RGB uint8)."""

MAX_PIXELS_ENV = "BUPOSE_MAX_IMAGE_PIXELS"
"""Environment variable that sets the pixel limit (a positive integer)."""

_max_pixels_override: int | None = None


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit of :func:`read_image` for this process (``None``: back to env/default)."""
    global _max_pixels_override
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"the image pixel limit must be a positive integer, got {limit!r}")
    _max_pixels_override = limit


def max_image_pixels() -> int:
    """The pixel limit in force: :func:`set_max_image_pixels`, else ``BUPOSE_MAX_IMAGE_PIXELS``, else the default."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive integer number of pixels") from None
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive integer number of pixels")
    return value


class ImageHeader:
    """What an image file's first bytes say: its format and, where the header gives it, its size."""

    __slots__ = ("format", "height", "width")

    def __init__(self, format: str, width: int | None = None, height: int | None = None) -> None:
        self.format = format
        self.width = width
        self.height = height

    def __repr__(self) -> str:
        return f"ImageHeader({self.format!r}, width={self.width}, height={self.height})"


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload start, payload length) of the JPEG segments before the first scan."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        yield marker, i + 4, length - 2
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        i += 2 + length


def _jpeg(data: bytes) -> ImageHeader:
    width = height = None
    scan_at = None
    for marker, start, length in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and length >= 5 and width is None:
            height, width = struct.unpack(">HH", data[start + 1 : start + 5])
        if marker == 0xDA:
            scan_at = start + length
    header = ImageHeader("JPEG", width, height)
    if scan_at is None or data.find(b"\xff\xd9", scan_at) < 0:
        raise _Truncated(header, "the data ends before the end-of-image marker")
    return header


def _png(data: bytes) -> ImageHeader:
    width = height = None
    if len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
    header = ImageHeader("PNG", width, height)
    if data.find(b"IEND", 8) < 0:
        raise _Truncated(header, "the data ends before the IEND chunk")
    return header


def _tiff(data: bytes) -> ImageHeader:
    order = "<" if data[:2] == b"II" else ">"
    width = height = None
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        for k in range(count):
            entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            value = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
            if tag == 256:
                width = value
            elif tag == 257:
                height = value
    except struct.error:
        pass  # a damaged IFD: OpenCV decides
    return ImageHeader("TIFF", width, height)


def _webp(data: bytes) -> ImageHeader:
    chunk = data[12:16]
    width = height = None
    try:
        if chunk == b"VP8 " and len(data) >= 30:
            w, h = struct.unpack("<HH", data[26:30])
            width, height = w & 0x3FFF, h & 0x3FFF
        elif chunk == b"VP8L" and len(data) >= 25:
            (bits,) = struct.unpack("<I", data[21:25])
            width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif chunk == b"VP8X" and len(data) >= 30:
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
    except struct.error:
        pass
    return ImageHeader("WebP", width, height)


def _bmp(data: bytes) -> ImageHeader:
    width = height = None
    try:
        (dib,) = struct.unpack("<I", data[14:18])
        if dib == 12:
            width, height = struct.unpack("<HH", data[18:22])
        elif dib >= 40:
            w, h = struct.unpack("<ii", data[18:26])
            width, height = abs(w), abs(h)
    except struct.error:
        pass
    return ImageHeader("BMP", width, height)


_PNM = re.compile(rb"^P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def _pnm(data: bytes) -> ImageHeader:
    m = _PNM.match(data[:1024])
    if m is None:
        return ImageHeader("PPM/PGM")
    return ImageHeader("PPM/PGM", int(m.group(1)), int(m.group(2)))


class _Truncated(Exception):
    def __init__(self, header: ImageHeader, why: str) -> None:
        super().__init__(why)
        self.header = header
        self.why = why


def read_header(data: bytes) -> ImageHeader | None:
    """The format and header size of encoded image ``data`` (``None``: not a format known here).

    Raises ``ValueError`` (without the file name) for a JPEG/PNG whose data is cut short.
    """
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
    except _Truncated as exc:
        raise ValueError(f"truncated {exc.header.format}: {exc.why}") from None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else (None, None)
        return ImageHeader("GIF", w, h)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return _pnm(data)
    return None


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _native_output_shown() -> bool:
    return os.environ.get("BUPOSE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what native libraries (OpenCV, libjpeg, libpng, FFmpeg) write to file descriptor 2.

    Those warnings name no file, so they only confuse; with ``BUPOSE_DEBUG=1`` they are shown.
    Python-level writes to ``sys.stderr`` inside the block are not affected once flushed before it.
    """
    if _native_output_shown():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _check_size(p: str, header: ImageHeader) -> None:
    w, h = header.width, header.height
    if w is None or h is None:
        return
    if w == 0 or h == 0:
        raise ValueError(f"{p}: not a readable image ({header.format} header says {w}x{h} pixels)")
    limit = max_image_pixels()
    if w * h > limit:
        raise ValueError(
            f"{p}: {header.format} header says {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
            f"pixels; not decoded (raise it with --max-image-pixels N or {MAX_PIXELS_ENV}=N if the file is trusted)"
        )


def _to_rgb(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.dtype != np.uint8:  # 16-bit / float data that IMREAD_COLOR kept (e.g. float TIFF)
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:
            img = np.clip(np.nan_to_num(img.astype(np.float64)) * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image file at ``path`` as RGB uint8 (H, W, 3), by the rules of this module's docstring.

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` naming the file (one line) for
    a directory, an empty, truncated, oversized or undecodable file.
    """
    import cv2

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: image file not found")
    if not os.path.isfile(p):
        raise ValueError(f"{p}: not a file (expected an image file)")
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the image file ({exc.strerror or exc})") from exc
    if not raw:
        raise ValueError(f"{p}: the image file is empty (0 bytes)")
    try:
        header = read_header(raw)
    except ValueError as exc:
        raise ValueError(f"{p}: not a readable image ({exc})") from None
    if header is not None:
        _check_size(p, header)
    data = np.frombuffer(raw, dtype=np.uint8)
    with quiet_native_stderr():
        try:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error as exc:
            raise ValueError(f"{p}: not a readable image (OpenCV: {str(exc).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        if header is None:
            what = "the file holds text, not image data" if _looks_like_text(raw) else "unknown image format"
        elif header.format == "GIF":
            what = f"GIF decoding needs OpenCV >= 4.11 (this is {cv2.__version__}); convert it to PNG"
        else:
            what = f"corrupt {header.format} data"
        raise ValueError(f"{p}: not a readable image ({what})")
    return _to_rgb(img)


def check_output_dir(path: str | os.PathLike[str], flag: str = "--output") -> None:
    """Raise ``ValueError`` (one line naming ``flag`` and ``path``) unless ``path`` is, or can be
    created as, a folder this process can write files in. Creates nothing (a probe file is written
    and removed in the nearest existing folder)."""
    p = os.fspath(path)
    existing = os.path.abspath(p)
    while not os.path.exists(existing):  # the folder is made later, by the writer: nothing is left on failure
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        where = "exists and is not a folder" if existing == os.path.abspath(p) else f"{existing} is not a folder"
        raise ValueError(f"{flag} {p}: {where}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bupose-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{flag} {p}: output folder is not writable ({exc.strerror or exc})") from None
