"""One source image -> one stored image: validate, convert faithfully, downscale, encode.

The writer calls `encode_image` once per record in its worker processes. A JPEG that needs no
resize is stored byte for byte (after a check that it decodes); everything else is decoded once,
converted to 8-bit grey or RGB where that is faithful, shrunk with area interpolation if asked,
and stored raw or re-encoded. Every refusal is an `ImageError` whose message says why.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from jessl.data.format import JPEG, MAX_SIDE, RAW
from jessl.errors import UserError

FORMATS = ("auto", "raw", "jpeg")
DEFAULT_QUALITY = 90  # JPEG quality when re-encoding; FFCV's default `jpeg_quality`
DEFAULT_MAX_PIXELS = 16_384 * 16_384  # decompression-bomb guard: 268 Mpx, 16k a side still fits


class ImageError(UserError, ValueError):
    """A source image that cannot be stored faithfully; the message says why."""


@dataclass(frozen=True)
class EncodeOptions:
    format: str = "auto"  # raw | jpeg | auto: keep each source's kind (JPEG stays JPEG, rest raw)
    quality: int = DEFAULT_QUALITY  # 1..100, used only when (re-)encoding
    max_side: int | None = None  # px: shrink the longer side to this, keeping the aspect ratio
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse larger images before decoding them
    verify_jpeg: bool = True  # decode pass-through JPEGs once so corrupt ones are caught

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {self.format!r}")
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"quality must be in 1..100, not {self.quality}")
        if self.max_side is not None and not 1 <= int(self.max_side) <= MAX_SIDE:
            raise ValueError(f"max_side must be in 1..{MAX_SIDE}, not {self.max_side}")
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be positive, not {self.max_pixels}")


@dataclass
class EncodedImage:
    data: bytes | np.ndarray  # JPEG bytes, or the raw uint8 HxWxC pixels
    height: int
    width: int
    channels: int
    encoding: int  # format.RAW or format.JPEG
    note: str | None = None  # what was done to store it faithfully, e.g. "CMYK -> RGB"
    crc: int = 0  # CRC32 of `data`, filled in by the writer


def encode_image(src, opts: EncodeOptions) -> EncodedImage:
    """Encode one source: encoded file bytes, a uint8 array (HxW[xC]) or a PIL image."""
    if isinstance(src, np.ndarray):
        pixels, note = _from_array(src)
        return _store_pixels(pixels, opts, note, source_is_jpeg=False)
    if isinstance(src, Image.Image):
        pixels, note = _from_pillow(src, opts)
        return _store_pixels(pixels, opts, note, source_is_jpeg=False)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError("empty file (0 bytes)")
        if data[:2] == b"\xff\xd8":
            encoded = _from_jpeg(data, opts)
            if encoded is not None:
                return encoded
        # not a JPEG, or a JPEG libjpeg-turbo cannot take as grey/RGB (CMYK): Pillow reads it
        with _pillow_unlimited():
            try:
                image = Image.open(io.BytesIO(data))
            except Image.UnidentifiedImageError:
                raise ImageError("not an image file Pillow can identify") from None
            except (OSError, SyntaxError, ValueError) as err:
                raise ImageError(f"unreadable image: {err}") from None
            pixels, note = _from_pillow(image, opts)
        return _store_pixels(pixels, opts, note, source_is_jpeg=image.format == "JPEG")
    raise ImageError(f"unsupported image object of type {type(src).__name__}")


# --- JPEG sources: libjpeg-turbo through simplejpeg -------------------------------------------

def _from_jpeg(data: bytes, opts: EncodeOptions) -> EncodedImage | None:
    """Pass through or decode a JPEG; None when only Pillow can convert it (CMYK/YCCK)."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None  # a header libjpeg-turbo rejects: let Pillow try, and name the error
    if colorspace not in ("Gray", "YCbCr", "RGB"):
        return None
    _check_size(height, width, opts)
    channels = 1 if colorspace == "Gray" else 3
    scale = _dct_scale(height, width, opts.max_side)
    if scale is None and opts.format != "raw":
        note = _check_jpeg_decodes(data, height, width, channels) if opts.verify_jpeg else None
        return EncodedImage(data, height, width, channels, JPEG, note)
    pixels = _decode_jpeg(data, channels, height, width, scale or 1)
    return _store_pixels(pixels, opts, None, source_is_jpeg=True)


def _decode_jpeg(data: bytes, channels: int, height: int, width: int, scale: int) -> np.ndarray:
    """Decode at 1/scale size (libjpeg-turbo's DCT scaling); strict: corrupt data raises."""
    colorspace = "GRAY" if channels == 1 else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=True,
                                        min_height=math.ceil(height / scale),
                                        min_width=math.ceil(width / scale))
    except ValueError as err:
        raise ImageError(f"corrupt or truncated JPEG: {err}") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def _check_jpeg_decodes(data: bytes, height: int, width: int, channels: int) -> str | None:
    """Decode once at 1/8 scale (the entropy decoding, where corruption shows, is all done)."""
    try:
        _decode_jpeg(data, channels, height, width, 8)
    except ImageError as err:
        # libjpeg's "extraneous bytes before marker" is junk between segments, not pixel
        # damage: such files (a few in ImageNet) decode identically, so keep them with a note
        if "extraneous bytes" not in str(err):
            raise
        return "JPEG has extraneous bytes between markers (pixels intact); stored as is"
    return None


def _dct_scale(height: int, width: int, max_side: int | None) -> int | None:
    """The largest power-of-two DCT reduction (1, 2, 4, 8) that keeps the longer side >= max_side;
    None when no resize is needed. Non-power-of-two scales are slower in libjpeg-turbo."""
    longer = max(height, width)
    if max_side is None or longer <= max_side:
        return None
    scale = 1
    while scale < 8 and longer // (scale * 2) >= max_side:
        scale *= 2
    return scale


# --- Everything else: Pillow and arrays -------------------------------------------------------

class _pillow_unlimited:
    """Pillow's own bomb check stops at 179 Mpx, below a 16k x 16k image: we check the size
    from the header ourselves (before any decoding) against `max_pixels` instead."""

    def __enter__(self):
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)

    def __exit__(self, *exc):
        Image.MAX_IMAGE_PIXELS = self.saved


def _from_pillow(image: Image.Image, opts: EncodeOptions) -> tuple[np.ndarray, str | None]:
    """Decode a PIL image to uint8 HxWxC with C in (1, 3), converting only what is faithful."""
    width, height = image.size
    _check_size(height, width, opts)
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"first of {image.n_frames} frames kept")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"corrupt or truncated {image.format or 'image'}: {err}") from None
    mode = image.mode
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette expanded to RGB")
    elif mode == "1":
        image = image.convert("L")
        notes.append("1-bit converted to 8-bit grey")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("RGB")
        notes.append(f"{mode} converted to RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        notes.append(f"{image.mode} scaled to 8-bit")
        return _from_array(_sixteen_to_eight(np.asarray(image), image.mode), notes)
    if image.mode == "F":
        raise ImageError("32-bit float image: no faithful 8-bit conversion")
    if image.mode not in ("L", "RGB", "LA", "RGBA"):
        raise ImageError(f"unsupported image mode {image.mode!r}")
    return _from_array(np.asarray(image), notes)


def _sixteen_to_eight(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit samples to 8 bits (v / 257, rounded: 65535 -> 255, exact on 8-bit data)."""
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65_535):
        raise ImageError(f"{mode} image with values outside 0..65535: no faithful 8-bit form")
    return np.rint(values / 257.0).astype(np.uint8)


def _from_array(array: np.ndarray, notes=None) -> tuple[np.ndarray, str | None]:
    """Check a uint8 HxW / HxWx{1,3,4} array; drop an alpha channel only if fully opaque."""
    notes = list(notes or [])
    if array.dtype == np.uint16:
        array = _sixteen_to_eight(array, "16-bit")
        notes.append("16-bit scaled to 8-bit")
    if array.dtype != np.uint8:
        raise ImageError(f"array of dtype {array.dtype}: images must be uint8 (or uint16)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"array of shape {array.shape}: expected HxW or HxWxC, C in 1..4")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"zero-sized image ({array.shape[0]}x{array.shape[1]})")
    if array.shape[2] in (2, 4):
        alpha = array[:, :, -1]
        if not (alpha == 255).all():
            raise ImageError("image has transparent pixels: no faithful grey/RGB form "
                             "(flatten it onto a background first)")
        array = array[:, :, :-1]
        notes.append("opaque alpha channel dropped")
    return np.ascontiguousarray(array), "; ".join(notes) or None


def _check_size(height: int, width: int, opts: EncodeOptions) -> None:
    if height < 1 or width < 1:
        raise ImageError(f"zero-sized image ({height}x{width})")
    if height * width > opts.max_pixels:
        raise ImageError(f"{width}x{height} = {height * width / 1e6:.0f} Mpx exceeds the "
                         f"{opts.max_pixels / 1e6:.0f} Mpx limit (decompression bomb?); "
                         f"raise --max-pixels if it is genuine")
    if max(height, width) > MAX_SIDE:
        raise ImageError(f"{width}x{height}: a side exceeds {MAX_SIDE} px")


# --- Common tail: resize, then raw or JPEG ----------------------------------------------------

def _store_pixels(pixels: np.ndarray, opts: EncodeOptions, note: str | None,
                  source_is_jpeg: bool) -> EncodedImage:
    height, width, channels = pixels.shape
    if opts.max_side is not None and max(height, width) > opts.max_side:
        pixels = shrink(pixels, opts.max_side)
        height, width, channels = pixels.shape
    as_jpeg = opts.format == "jpeg" or (opts.format == "auto" and source_is_jpeg)
    if not as_jpeg:
        return EncodedImage(pixels, height, width, channels, RAW, note)
    data = simplejpeg.encode_jpeg(pixels, quality=int(opts.quality),
                                  colorspace="GRAY" if channels == 1 else "RGB",
                                  colorsubsampling="Gray" if channels == 1 else "420")
    return EncodedImage(data, height, width, channels, JPEG, note)


def shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is `max_side`, keeping the aspect ratio (area interpolation)."""
    height, width, channels = pixels.shape
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))  # cv2 takes (w, h)
    out = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return out.reshape(size[1], size[0], channels)
