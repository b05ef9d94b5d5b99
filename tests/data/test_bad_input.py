"""Bad source images: a clear error naming file and reason, or a faithful conversion, noted."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jessl.data import ConversionError, Reader, convert
from jessl.data.encode import EncodeOptions, ImageError, encode_image
from tests.data.helpers import encode, natural_like


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge image (a decompression bomb) with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


JPEG = encode(natural_like(64, 80), "JPEG", quality=90)


def _corrupt_jpeg() -> bytes:
    """Scan data overwritten with a marker-like run: libjpeg reports corrupt data."""
    data = bytearray(JPEG)
    start = data.index(b"\xff\xda") + 20  # inside the entropy-coded scan
    data[start:start + 40] = b"\xff\xd0" * 20
    return bytes(data)


BAD = {
    "truncated.jpg": (JPEG[: len(JPEG) // 2], "truncated|Premature end"),
    "corrupt.jpg": (_corrupt_jpeg(), "corrupt"),
    "truncated.png": (encode(natural_like(40, 40), "PNG")[:200], "truncated|corrupt"),
    "notanimage.jpg": (b"this is text, not an image\n" * 4, "cannot identify|not an image"),
    "empty.png": (b"", "empty file"),
    "bomb.png": (_png_with_size(70_000, 70_000), "decompression bomb"),
    "transparent.png": (encode(np.dstack([natural_like(8, 8), np.full((8, 8), 7, np.uint8)]),
                               "PNG"), "transparent"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_file_fails_with_its_name_and_reason(tmp_path, name):
    data, reason = BAD[name]
    src = tmp_path / "src" / "cls"
    src.mkdir(parents=True)
    (src / "good.png").write_bytes(encode(natural_like(8, 8), "PNG"))
    (src / name).write_bytes(data)
    out = tmp_path / "out.jessl"
    with pytest.raises(ConversionError, match=rf"cls/{name}\): .*({reason})"):
        convert(tmp_path / "src", out, workers=1, progress=False)
    assert not out.exists()
    assert list(tmp_path.glob(".out.jessl*")) == []  # the temporary file went too


def test_skip_writes_the_rest_and_a_report_of_every_bad_file(tmp_path):
    src = tmp_path / "src" / "cls"
    src.mkdir(parents=True)
    for k in range(3):
        (src / f"good{k}.png").write_bytes(encode(natural_like(8, 8, seed=k), "PNG"))
    for name, (data, _) in BAD.items():
        (src / name).write_bytes(data)
    out = tmp_path / "out.jessl"
    result = convert(tmp_path / "src", out, on_error="skip", workers=2, progress=False)
    assert result.records == 3
    report = json.loads(result.report.read_text())
    assert sorted(s["name"] for s in report["skipped"]) == sorted(f"cls/{n}" for n in BAD)
    assert all(s["reason"] for s in report["skipped"])
    with Reader(out) as ds:
        assert [ds.read(k)["name"] for k in range(3)] == [f"cls/good{k}.png" for k in range(3)]
        assert ds.params["skipped"] == len(BAD)


CONVERTIBLE = {
    # name: (file bytes, expected pixels, a word of the note)
    "cmyk.jpg": lambda: (encode(Image.fromarray(natural_like(16, 16)).convert("CMYK"), "JPEG",
                                quality=95), None, "CMYK"),
    "palette.png": lambda: (encode(Image.fromarray(natural_like(16, 16)).quantize(8), "PNG"),
                            np.asarray(Image.fromarray(natural_like(16, 16)).quantize(8)
                                       .convert("RGB")), "palette"),
    "opaque.png": lambda: (encode(np.dstack([natural_like(9, 7), np.full((9, 7), 255, np.uint8)]),
                                  "PNG"), natural_like(9, 7), "alpha"),
    "sixteen.png": lambda: (encode(Image.fromarray(
        (natural_like(6, 5, 1)[:, :, 0].astype(np.uint16) * 257)), "PNG"),
        natural_like(6, 5, 1), "8-bit"),
    "onebit.png": lambda: (encode(Image.fromarray(natural_like(6, 5, 1)[:, :, 0] > 128), "PNG"),
                           (natural_like(6, 5, 1) > 128).astype(np.uint8) * 255, "1-bit"),
}


@pytest.mark.parametrize("name", sorted(CONVERTIBLE))
def test_unusual_modes_are_converted_faithfully_and_noted(name):
    data, expected, word = CONVERTIBLE[name]()
    stored = encode_image(data, EncodeOptions(format="raw"))
    assert word in stored.note
    if name == "cmyk.jpg":  # libjpeg-turbo cannot decode CMYK to RGB: Pillow converts it
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(stored.data, expected.reshape(stored.data.shape))


def test_greyscale_alpha_and_arrays(tmp_path):
    la = encode(Image.fromarray(np.dstack([natural_like(5, 5, 1)[:, :, 0],
                                           np.full((5, 5), 255, np.uint8)]), "LA"), "PNG")
    stored = encode_image(la, EncodeOptions())
    assert stored.channels == 1 and "alpha" in stored.note
    with pytest.raises(ImageError, match="zero-sized"):
        encode_image(np.zeros((0, 4, 3), np.uint8), EncodeOptions())
    with pytest.raises(ImageError, match="dtype float32"):
        encode_image(np.zeros((4, 4, 3), np.float32), EncodeOptions())


def test_max_pixels_guards_jpeg_too():
    with pytest.raises(ImageError, match="decompression bomb"):
        encode_image(JPEG, EncodeOptions(max_pixels=1000))


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "o.jessl"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert([(natural_like(4, 4), 0)], out, workers=1, progress=False)
    assert out.read_bytes() == b"precious"
    convert([(natural_like(4, 4), 0)], out, workers=1, progress=False, overwrite=True)
    assert len(Reader(out)) == 1


def test_a_failed_conversion_keeps_the_old_output(tmp_path):
    out = tmp_path / "o.jessl"
    convert([(natural_like(4, 4), 0)], out, workers=1, progress=False)
    before = out.read_bytes()
    with pytest.raises(ConversionError):
        convert([(natural_like(4, 4), 0), (b"junk", 1)], out, workers=1, progress=False,
                overwrite=True)
    assert out.read_bytes() == before
