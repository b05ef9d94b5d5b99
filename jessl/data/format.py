"""The jessl dataset file: one file, memory-mapped, random access to any record.

Layout (all integers little-endian)::

    [header 128 B]  magic, version, record count, where the three regions lie, their CRC32s
    [data       ]   every record's variable-size blobs back to back (image bytes, bytes/str/json)
    [meta       ]   UTF-8 JSON: schema (field names and types) and the write parameters
    [index      ]   one fixed-size row per record (a NumPy structured array): blob offsets,
                    sizes and CRC32s, image height/width/channels/encoding, and the scalar fields

The index and meta sit after the data so the writer can stream records without knowing their
sizes in advance, then write the tables and finally the header. Unlike FFCV's .beton there are
no pages: a record is as large as it needs to be, and the write parameters are kept.

`validate` checks the header, the meta and *every* index row (offsets inside the data region,
sizes consistent with the image shape, known encodings, labels within the classes) before
anyone touches the data; the numba kernels downstream do no bounds checks and rely on it.

Every stored byte is under a checksum: the header, meta and index each carry a CRC32 checked
on open, and from version 2 on every blob (image, bytes, str, json) has its own CRC32 in the
index, checked by `Reader.verify`. Version 1 files, whose bytes/str/json blobs have no CRC
column, are still read; their verify says which fields it could only check to decode.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from jessl.errors import UserError

MAGIC = b"JESSL\x00\r\n"  # NUL and CRLF catch text-mode transfers, as PNG's signature does
VERSION = 2  # what the writer writes; v2 added a CRC32 column to bytes/str/json fields
READABLE_VERSIONS = (1, 2)
# magic, version, header size, record count, data/meta/index (offset, size), meta CRC, index CRC
HEADER = struct.Struct("<8sIIQQQQQQQII")
HEADER_SIZE = 128  # HEADER, zero padding (room for later versions), then the header's CRC32
INDEX_ALIGN = 64  # the index starts on a cache line so the structured view is aligned

# Image encodings, one per record (a file may mix them: `--format auto` keeps each source's).
RAW, JPEG = 0, 1
ENCODINGS = {RAW: "raw", JPEG: "jpeg"}

MAX_SIDE = 65_535  # px: width and height are stored as uint32, but nothing real is larger
FIELD_TYPES = ("image", "int", "float", "bytes", "str", "json")

# The per-type columns of the index. Blob fields point into the data region.
_BLOB = [("offset", "<u8"), ("nbytes", "<u8")]
_CRC = [("crc", "<u4")]  # CRC32 (zlib) of the blob's stored bytes
_COLUMNS = {
    "image": _BLOB + _CRC + [("height", "<u4"), ("width", "<u4"),
                             ("channels", "u1"), ("encoding", "u1")],
    "int": [("value", "<i8")],
    "float": [("value", "<f8")],
    "bytes": _BLOB + _CRC,
    "str": _BLOB + _CRC,
    "json": _BLOB + _CRC,
}
BLOB_TYPES = ("image", "bytes", "str", "json")


class FormatError(UserError, ValueError):
    """A dataset file that is truncated, corrupted or not a jessl file; names the file."""


@dataclass(frozen=True)
class Header:
    version: int
    num_records: int
    data_offset: int
    data_size: int
    meta_offset: int
    meta_size: int
    index_offset: int
    index_size: int
    meta_crc: int
    index_crc: int

    def pack(self) -> bytes:
        body = HEADER.pack(MAGIC, self.version, HEADER_SIZE, self.num_records,
                           self.data_offset, self.data_size, self.meta_offset, self.meta_size,
                           self.index_offset, self.index_size, self.meta_crc, self.index_crc)
        # the header's own CRC takes its last 4 bytes and covers the padding too
        body = body.ljust(HEADER_SIZE - 4, b"\0")
        return body + struct.pack("<I", zlib.crc32(body))


def index_dtype(schema: list[dict], version: int = VERSION) -> np.dtype:
    """The structured dtype of one index row for a schema: `{field}.{column}` names, packed."""
    names, formats = [], []
    for field in schema:
        for col, fmt in _COLUMNS[field["type"]]:
            if col == "crc" and version < 2 and field["type"] != "image":
                continue  # version 1 checksummed only images
            names.append(f"{field['name']}.{col}")
            formats.append(fmt)
    return np.dtype({"names": names, "formats": formats})


def check_schema(schema) -> list[dict]:
    """Return the schema if it is a list of {name, type} with unique names and known types."""
    if not isinstance(schema, list) or not schema:
        raise ValueError("schema must be a non-empty list of fields")
    seen = set()
    for field in schema:
        if not isinstance(field, dict) or set(field) < {"name", "type"}:
            raise ValueError(f"schema field {field!r} needs a name and a type")
        name, kind = field["name"], field["type"]
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"field name {name!r} must be a non-empty string without '.'")
        if kind not in FIELD_TYPES:
            raise ValueError(f"field {name!r} has unknown type {kind!r} (known: {FIELD_TYPES})")
        if name in seen:
            raise ValueError(f"field {name!r} appears twice in the schema")
        seen.add(name)
    return schema


def parse_header(buf, path, file_size: int) -> Header:
    """Read and check the fixed header; every region must lie inside the file, in order."""
    if file_size < HEADER_SIZE:
        raise FormatError(f"{path}: {file_size} bytes is too short for a jessl file "
                          f"(the header alone is {HEADER_SIZE}); truncated?")
    raw = bytes(buf[:HEADER_SIZE])
    if raw[:8] != MAGIC:
        raise FormatError(f"{path}: not a jessl dataset file (bad magic number {raw[:8]!r})")
    (stored_crc,) = struct.unpack("<I", raw[-4:])
    if zlib.crc32(raw[:-4]) != stored_crc:
        raise FormatError(f"{path}: header checksum mismatch: the header is corrupted")
    (_, version, header_size, n, d_off, d_size, m_off, m_size, i_off, i_size,
     m_crc, i_crc) = HEADER.unpack(raw[:HEADER.size])
    if version not in READABLE_VERSIONS:
        raise FormatError(f"{path}: format version {version} is not supported by this jessl "
                          f"(it reads versions {READABLE_VERSIONS}); upgrade jessl or rewrite "
                          f"the file")
    if header_size != HEADER_SIZE:
        raise FormatError(f"{path}: header size {header_size} != {HEADER_SIZE}")
    regions = [("data", d_off, d_size), ("meta", m_off, m_size), ("index", i_off, i_size)]
    end = HEADER_SIZE
    for name, off, size in regions:
        if off < end or size > file_size or off > file_size - size:
            raise FormatError(f"{path}: the {name} region [{off}, {off}+{size}) lies outside the "
                              f"file of {file_size} bytes or overlaps another region: "
                              f"truncated or corrupted file")
        end = off + size
    if end != file_size:
        raise FormatError(f"{path}: file is {file_size} bytes but its regions end at {end}: "
                          f"truncated or has trailing data")
    return Header(version, n, d_off, d_size, m_off, m_size, i_off, i_size, m_crc, i_crc)


def parse_meta(buf, header: Header, path) -> dict:
    """Decode and check the JSON meta block (schema + write parameters)."""
    raw = bytes(buf[header.meta_offset:header.meta_offset + header.meta_size])
    if zlib.crc32(raw) != header.meta_crc:
        raise FormatError(f"{path}: meta block checksum mismatch: the schema or write "
                          f"parameters are corrupted")
    try:
        meta = json.loads(raw.decode("utf-8"))
        check_schema(meta["schema"])
        if not isinstance(meta.get("params", {}), dict):
            raise ValueError("params must be an object")
        classes = meta.get("classes")
        if classes is not None and not isinstance(classes, list):
            raise ValueError("classes must be a list or null")
    except (ValueError, KeyError, TypeError) as err:
        raise FormatError(f"{path}: invalid meta block: {err}") from None
    return meta


def parse_index(buf, header: Header, meta: dict, path) -> np.ndarray:
    """The index as a read-only structured array over the map, checked row by row."""
    schema = meta["schema"]
    dtype = index_dtype(schema, header.version)
    if header.index_size != header.num_records * dtype.itemsize:
        raise FormatError(f"{path}: index holds {header.index_size} bytes but "
                          f"{header.num_records} records of {dtype.itemsize} bytes need "
                          f"{header.num_records * dtype.itemsize}")
    raw = np.frombuffer(buf, dtype=np.uint8, count=header.index_size, offset=header.index_offset)
    if zlib.crc32(raw) != header.index_crc:
        raise FormatError(f"{path}: index checksum mismatch: the record table is corrupted")
    index = raw.view(dtype)
    check_index(index, schema, header.data_size, path, meta.get("classes"))
    return index


def check_index(index: np.ndarray, schema: list[dict], data_size: int, path,
                classes: list | None = None) -> None:
    """Every blob inside the data region; every image shape, size and encoding sane; labels
    within the classes when the file names them."""
    for field in schema:
        name, kind = field["name"], field["type"]
        if name == "label" and kind == "int" and classes is not None:
            values = index["label.value"]
            _fail_rows((values < 0) | (values >= len(classes)), path,
                       f"field 'label': label outside the {len(classes)} classes 0..."
                       f"{len(classes) - 1}")
        if kind in ("int", "float"):
            continue  # any other value is one a user may have stored (NaN included)
        off, nbytes = index[f"{name}.offset"], index[f"{name}.nbytes"]
        # written as nbytes <= size and off <= size - nbytes so uint64 cannot overflow
        bad = (nbytes > data_size) | (off > np.uint64(data_size) - np.minimum(nbytes, data_size))
        _fail_rows(bad, path, f"field {name!r}: blob lies outside the data region")
        if kind != "image":
            continue
        h, w = index[f"{name}.height"], index[f"{name}.width"]
        c, enc = index[f"{name}.channels"], index[f"{name}.encoding"]
        _fail_rows((h < 1) | (w < 1) | (h > MAX_SIDE) | (w > MAX_SIDE), path,
                   f"field {name!r}: image size out of range 1..{MAX_SIDE}")
        _fail_rows((c != 1) & (c != 3), path, f"field {name!r}: channels must be 1 or 3")
        _fail_rows((enc != RAW) & (enc != JPEG), path, f"field {name!r}: unknown encoding")
        expected = h.astype(np.uint64) * w.astype(np.uint64) * c.astype(np.uint64)
        _fail_rows((enc == RAW) & (nbytes != expected), path,
                   f"field {name!r}: raw image size does not match height x width x channels")
        _fail_rows((enc == JPEG) & (nbytes < 4), path, f"field {name!r}: JPEG blob too small")


def _fail_rows(bad: np.ndarray, path, what: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
        raise FormatError(f"{path}: {what} in {len(rows)} record(s): {shown}")
