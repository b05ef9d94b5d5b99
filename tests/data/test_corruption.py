"""Damaged dataset files: every truncation and flipped byte in header, meta or index is a
clear FormatError naming the file; damage in the data region is caught by verify."""

import subprocess
import sys
import zlib

import numpy as np
import pytest

from jessl.data import FormatError, Reader, RecordError, convert
from jessl.data.format import HEADER_SIZE, INDEX_ALIGN, MAGIC, Header, index_dtype
from tests.data.helpers import natural_like


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.jessl"
    records = [(natural_like(6 + k, 5, 1 + 2 * (k % 2), seed=k), k % 3, {"note": f"r{k}"})
               for k in range(12)]
    convert(records[:6], path, format="raw", workers=1, progress=False)
    jpeg_path = path.with_name("jpeg.jessl")
    convert(records, jpeg_path, format="jpeg", workers=1, progress=False)
    return path, jpeg_path


def _flipped(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x5A
    return bytes(out)


def _expect_format_error(tmp_path, data: bytes, match: str = ""):
    bad = tmp_path / "bad.jessl"
    bad.write_bytes(data)
    with pytest.raises(FormatError, match=rf"bad.jessl: .*({match})" if match else "bad.jessl: "):
        Reader(bad)


def _regions(path):
    with Reader(path) as ds:
        h = ds.header
    return h


def test_every_header_byte_flip_is_caught(tmp_path, good_file):
    data = good_file[0].read_bytes()
    for pos in range(HEADER_SIZE):
        _expect_format_error(tmp_path, _flipped(data, pos))


def test_every_meta_and_index_byte_flip_is_caught(tmp_path, good_file):
    path = good_file[1]
    data = path.read_bytes()
    h = _regions(path)
    positions = list(range(h.meta_offset, h.meta_offset + h.meta_size, 3)) + list(
        range(h.index_offset, h.index_offset + h.index_size))
    for pos in positions:
        _expect_format_error(tmp_path, _flipped(data, pos))


def test_every_truncation_is_caught(tmp_path, good_file):
    data = good_file[1].read_bytes()
    h = _regions(good_file[1])
    cuts = [0, 1, 7, 8, HEADER_SIZE - 1, HEADER_SIZE, h.meta_offset, h.index_offset,
            len(data) - 1] + list(range(9, len(data), max(1, len(data) // 300)))
    for cut in cuts:
        _expect_format_error(tmp_path, data[:cut])
    _expect_format_error(tmp_path, data + b"\0", "trailing data|outside")


def test_wrong_magic_and_version(tmp_path, good_file):
    data = good_file[0].read_bytes()
    _expect_format_error(tmp_path, b"PK\x03\x04" + data[4:], "not a jessl dataset file")
    h = _regions(good_file[0])
    newer = Header(**{**h.__dict__, "version": 99}).pack()
    _expect_format_error(tmp_path, newer + data[HEADER_SIZE:], "format version 99")


def _rewrite_index(data: bytes, path, edit) -> bytes:
    """A file whose index was edited and every checksum recomputed: only the structural
    checks stand between it and the kernels."""
    with Reader(path) as ds:
        h, schema = ds.header, ds.schema
        index = np.array(ds.index)
    edit(index)
    raw = index.astype(index_dtype(schema)).tobytes()
    header = Header(**{**h.__dict__, "index_crc": zlib.crc32(raw)}).pack()
    return header + data[HEADER_SIZE:h.index_offset] + raw


@pytest.mark.parametrize("edit, match", [
    (lambda ix: ix.__setitem__("image.offset", ix["image.offset"] + 10**9), "outside the data"),
    (lambda ix: ix.__setitem__("image.nbytes", np.uint64(2**64 - 1)), "outside the data"),
    (lambda ix: ix.__setitem__("note.offset", np.uint64(2**64 - 2)), "outside the data"),
    (lambda ix: ix.__setitem__("image.height", 0), "size out of range"),
    (lambda ix: ix.__setitem__("image.width", ix["image.width"] + 1), "does not match"),
    (lambda ix: ix.__setitem__("image.channels", 4), "channels must be 1 or 3"),
    (lambda ix: ix.__setitem__("image.encoding", 7), "unknown encoding"),
])
def test_consistent_checksums_do_not_hide_bad_offsets(tmp_path, good_file, edit, match):
    data = good_file[0].read_bytes()
    _expect_format_error(tmp_path, _rewrite_index(data, good_file[0], edit), match)


def test_data_damage_is_found_by_verify(tmp_path, good_file):
    for path in good_file:
        data = path.read_bytes()
        with Reader(path) as ds:
            off = ds.header.data_offset + int(ds.index["image.offset"][2]) + 3
        bad = tmp_path / "bad.jessl"
        bad.write_bytes(_flipped(data, off))
        with Reader(bad) as ds:
            ds.verify(1)
            with pytest.raises(RecordError, match="record 2: image checksum mismatch"):
                ds.verify(2)


def test_inspect_verify_reports_the_bad_record(tmp_path, good_file):
    data = good_file[1].read_bytes()
    with Reader(good_file[1]) as ds:
        off = ds.header.data_offset + int(ds.index["image.offset"][4]) + 30
    bad = tmp_path / "bad.jessl"
    bad.write_bytes(_flipped(data, off))
    run = subprocess.run([sys.executable, "-m", "jessl", "inspect", str(bad), "--verify",
                          "--workers", "1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "11 of 12 records" in run.stdout and "record 4" in run.stdout


def test_not_a_file_and_empty(tmp_path):
    _expect_format_error(tmp_path, b"", "empty file")
    _expect_format_error(tmp_path, MAGIC, "too short")
    with pytest.raises(FileNotFoundError, match="no such dataset file"):
        Reader(tmp_path / "missing.jessl")


def test_index_is_aligned(good_file):
    with Reader(good_file[1]) as ds:
        assert ds.header.index_offset % INDEX_ALIGN == 0
