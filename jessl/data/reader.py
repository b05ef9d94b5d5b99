"""Open a dataset file: memory map, full validation up front, then random access by record.

`Reader(path)` checks the header, the meta block and every index row before it returns, so
that everything downstream (the loader's numba kernels do no bounds checks) can trust offsets
and sizes. Reading a record touches only that record's pages.
"""

from __future__ import annotations

import json
import mmap
import os
import zlib
from pathlib import Path

import numpy as np
import simplejpeg

from jessl.data.format import (BLOB_TYPES, RAW, FormatError, parse_header, parse_index,
                               parse_meta)
from jessl.errors import UserError


class RecordError(UserError, ValueError):
    """A record that cannot be read back (a corrupt JPEG, a checksum mismatch); names it."""


class Reader:
    """A validated, memory-mapped dataset file. Picklable: workers reopen it by path."""

    def __init__(self, path):
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise FormatError(f"{self.path}: empty file (0 bytes)")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no such dataset file") from None
        except IsADirectoryError:
            raise FormatError(f"{self.path}: a folder, not a dataset file") from None
        self.file_size = size
        self.header = parse_header(self._map, self.path, size)
        self.meta = parse_meta(self._map, self.header, self.path)
        self.schema = self.meta["schema"]
        self.index = parse_index(self._map, self.header, self.meta, self.path)
        self._data = np.frombuffer(self._map, np.uint8, self.header.data_size,
                                   self.header.data_offset)
        self.fields = {f["name"]: f["type"] for f in self.schema}

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._open()

    def __len__(self) -> int:
        return self.header.num_records

    def __repr__(self) -> str:
        return f"Reader({str(self.path)!r}, records={len(self)}, fields={self.fields})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Drop this reader's views; the map closes once no array returned by it is alive."""
        self.index = self._data = None
        try:
            self._map.close()
        except BufferError:
            pass  # a caller still holds a raw view: the map closes when that is freed

    # --- whole-file properties ------------------------------------------------------------

    @property
    def params(self) -> dict:
        """The parameters the file was written with (source, format, quality, max_side ...)."""
        return self.meta.get("params", {})

    @property
    def classes(self) -> list | None:
        return self.meta.get("classes")

    @property
    def labels(self) -> np.ndarray | None:
        """(N,) int64 labels, or None for an unlabeled file."""
        labeled = self.fields.get("label") == "int"  # a label of another type is no class
        return np.asarray(self.index["label.value"]) if labeled else None

    def image_shapes(self, field: str = "image") -> np.ndarray:
        """(N, 3) height, width, channels of every image, straight from the index."""
        return np.stack([self.index[f"{field}.height"], self.index[f"{field}.width"],
                         self.index[f"{field}.channels"]], axis=1).astype(np.int64)

    # --- one record ------------------------------------------------------------------------

    def _row(self, i: int):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: record {i} out of range (file has {n} records)")
        return self.index[i % n]

    @property
    def data(self) -> np.ndarray:
        """The whole blob region as one read-only uint8 view (a blob is data[offset:offset +
        nbytes] of its index row): the loader slices a gathered chunk's blobs from it directly."""
        return self._data

    def blob(self, i: int, field: str = "image") -> np.ndarray:
        """The stored bytes of a blob field of record i, as a read-only uint8 view (no copy)."""
        row = self._row(i)
        off, size = int(row[f"{field}.offset"]), int(row[f"{field}.nbytes"])
        return self._data[off:off + size]

    @property
    def unchecked_fields(self) -> list[str]:
        """Blob fields without a CRC32 (bytes/str/json of a version 1 file): `verify` can only
        check that they decode, not that they are the bytes written."""
        return [name for name, kind in self.fields.items()
                if kind in BLOB_TYPES and f"{name}.crc" not in self.index.dtype.names]

    def read_image(self, i: int, field: str = "image", verify: bool = False) -> np.ndarray:
        """Record i's image as uint8 (H, W, C), C = 1 (grey) or 3 (RGB); JPEGs are decoded.

        `verify` also checks the blob's CRC32 and decodes strictly (libjpeg warnings raise)."""
        row = self._row(i)
        h, w, c = (int(row[f"{field}.{k}"]) for k in ("height", "width", "channels"))
        blob = self.blob(i, field)
        if verify:
            self._check_crc(i, field, blob)
        if int(row[f"{field}.encoding"]) == RAW:
            return blob.reshape(h, w, c)
        # the JPEG's own header, against the index, before a decoder allocates what it says
        jpeg_h, jpeg_w = jpeg_size(blob, f"{self.path}: record {i}", RecordError)
        if (jpeg_h, jpeg_w) != (h, w):
            raise RecordError(f"{self.path}: record {i}: JPEG is {jpeg_w}x{jpeg_h} but the "
                              f"index says {w}x{h}")
        pixels = self._decode_jpeg(i, blob, c, strict=verify)
        if pixels.shape[:2] != (h, w):
            raise RecordError(f"{self.path}: record {i}: JPEG is {pixels.shape[1]}x"
                              f"{pixels.shape[0]} but the index says {w}x{h}")
        return pixels.reshape(h, w, c)

    def _check_crc(self, i: int, field: str, blob: np.ndarray) -> None:
        column = f"{field}.crc"
        if column in self.index.dtype.names and zlib.crc32(blob) != int(self.index[column][i]):
            raise RecordError(f"{self.path}: record {i}: {field} checksum mismatch: the data "
                              f"region is corrupted")

    def _decode_jpeg(self, i: int, blob: np.ndarray, channels: int, strict: bool) -> np.ndarray:
        colorspace = "GRAY" if channels == 1 else "RGB"
        try:
            return simplejpeg.decode_jpeg(blob, colorspace=colorspace, strict=strict)
        except ValueError as err:
            # junk between markers is no pixel damage (the writer keeps such files, noted)
            if strict and "extraneous bytes" in str(err):
                return self._decode_jpeg(i, blob, channels, strict=False)
            raise RecordError(f"{self.path}: record {i}: corrupt JPEG: {err}") from None

    def read(self, i: int) -> dict:
        """Record i with every field decoded: images as arrays, str/json parsed."""
        row = self._row(i)
        record = {}
        for name, kind in self.fields.items():
            if kind == "image":
                record[name] = self.read_image(i, name)
            elif kind in ("int", "float"):
                record[name] = row[f"{name}.value"].item()
            else:
                record[name] = self._read_blob_field(i, name, kind)
        return record

    def _read_blob_field(self, i: int, name: str, kind: str):
        raw = self.blob(i, name).tobytes()
        if kind == "bytes":
            return raw
        try:  # UnicodeDecodeError and JSONDecodeError are ValueErrors; "[[[[..." recurses
            return raw.decode("utf-8") if kind == "str" else json.loads(raw)
        except (ValueError, RecursionError) as err:
            raise RecordError(f"{self.path}: record {i}: field {name!r}: {err}") from None

    def verify(self, i: int) -> None:
        """Raise RecordError unless every field of record i matches its checksum and decodes
        strictly (see `unchecked_fields` for the fields of version 1 files that have none)."""
        for name, kind in self.fields.items():
            if kind == "image":
                self.read_image(i, name, verify=True)
            elif kind in ("bytes", "str", "json"):
                self._check_crc(i, name, self.blob(i, name))
                self._read_blob_field(i, name, kind)


def jpeg_size(blob, where: str, error=RecordError) -> tuple[int, int]:
    """(height, width) from a JPEG's header alone (microseconds, nothing decoded); `error`
    naming `where` when libjpeg-turbo cannot parse the header."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(blob)
    except ValueError as err:
        raise error(f"{where}: corrupt JPEG header: {err}") from None
    return h, w


def open_dataset(path) -> Reader:
    """Open and validate a dataset file (raises FormatError naming the file and the fault)."""
    return Reader(path)


__all__ = ["Reader", "RecordError", "FormatError", "open_dataset"]
