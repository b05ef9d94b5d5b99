"""Mutants of small dataset files, and what jessl makes of each: the reliability campaign of
issue 15 kept as code, run by tests/test_fuzz.py (hundreds) and bench/fuzz.py (thousands).

A mutant is a seeded edit of one of a few small base files written by `convert`:

  damage   bytes flipped, overwritten, inserted or deleted anywhere (header, meta, index, data,
           a record's name), or the file truncated: what disks, copies and transfers do;
  forged   an index or meta field set to an odd value with every checksum recomputed, or a
           JPEG's frame header rewritten: what a hostile or buggy tool writes.

`outcome(base, mutant)` opens the mutant, verifies and reads every record and runs the loader
over it. Allowed outcomes: a documented error (FormatError on open; RecordError from verify or
read; LoaderError from the loader), or data identical to the base's for every record that
passes `verify`. For damage that is the whole contract: nothing `verify` passes may read
differently ("silent"). Forged files carry valid checksums by construction, so their reads may
differ, but they too must end in a documented error or a sane read: never a crash, a hang or
another exception.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from jessl.data.format import HEADER_SIZE, FormatError, Header, index_dtype, parse_header
from jessl.data.reader import Reader, RecordError

KINDS = ("flip", "overwrite", "insert", "delete", "truncate", "name", "index", "meta", "sof")
FORGED = ("index", "meta", "sof")  # the kinds that recompute checksums (or edit a JPEG header)
# outcomes: all but "silent", "undocumented", "crash" and "hang" are allowed
OK = ("rejected", "verify_found", "identical", "forged_read")
# odd values an index field is set to by a forged mutant
ODD = (0, 1, -1, 2, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1,
       2**64 - 1)


def base_files(folder) -> list[Path]:
    """Three small files (under 10 KiB each) that between them hold every field type and
    encoding: raw RGB + grey with label/classes/name/json, JPEG with label and name, an
    unlabeled raw file with bytes and float fields."""
    from jessl.data.sources import DatasetSource
    from jessl.data.writer import convert
    folder = Path(folder)
    rng = np.random.default_rng(0)
    paths = []

    def image(h, w, c):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                         (x + y) * 127 // max(h + w - 2, 1)], -1)[:, :, :c]
        return np.clip(base + rng.integers(0, 8, base.shape), 0, 255).astype(np.uint8)

    raw = [(image(6 + k, 5 + k % 3, 3 if k % 2 else 1), k % 3,
            {"name": f"cls{k % 3}/{k:04d}.png", "info": {"k": k, "tag": "é"}}) for k in range(6)]
    jpeg = [(image(16, 12 + 4 * (k % 2), 3 if k % 3 else 1), k % 2,
             {"name": f"deer/{k:04d}.jpg"}) for k in range(5)]
    plain = [{"image": image(4, 4, 3), "blob": bytes([k, 255 - k]), "weight": k / 3}
             for k in range(4)]
    for name, source, fmt in (
            ("raw.jessl", DatasetSource(raw, classes=["a", "b", "c"]), "raw"),
            ("jpeg.jessl", DatasetSource(jpeg, classes=["cat", "deer"]), "jpeg"),
            ("plain.jessl", DatasetSource(plain, labeled=False), "raw")):
        path = folder / name
        convert(source, path, format=fmt, workers=1, progress=False, overwrite=True)
        paths.append(path)
    return paths


def mutate(data: bytes, seed: int) -> tuple[str, bytes]:
    """(kind, mutant bytes) for `seed`: the same seed always gives the same mutant."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    header = parse_header(data, "base", len(data))  # a base file: valid by construction
    regions = {"header": (0, HEADER_SIZE),
               "data": (header.data_offset, header.data_offset + header.data_size),
               "meta": (header.meta_offset, header.meta_offset + header.meta_size),
               "index": (header.index_offset, header.index_offset + header.index_size)}
    out = bytearray(data)
    if kind in ("flip", "overwrite", "insert", "delete"):
        lo, hi = regions[list(regions)[rng.integers(len(regions))]]
        at = int(rng.integers(lo, max(hi, lo + 1)))
        n = int(rng.integers(1, 9))
        if kind == "flip":
            out[at] ^= int(rng.integers(1, 256))
        elif kind == "overwrite":
            out[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif kind == "insert":
            out[at:at] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        else:
            del out[at:at + n]
    elif kind == "truncate":
        del out[int(rng.integers(0, len(out))):]
    elif kind == "name":
        _edit_blob(out, header, rng)
    elif kind == "index":
        _forge_index(out, header, rng)
    elif kind == "meta":
        _forge_meta(out, header, rng)
    else:
        _forge_sof(out, header, rng)
    return kind, bytes(out)


def _index(out: bytearray, header: Header):
    meta = json.loads(bytes(out[header.meta_offset:header.meta_offset + header.meta_size]))
    dtype = index_dtype(meta["schema"], header.version)
    index = np.frombuffer(bytes(out[header.index_offset:header.index_offset +
                                    header.index_size]), dtype).copy()
    return meta, index


def _edit_blob(out: bytearray, header: Header, rng) -> None:
    """Damage inside one str/json/bytes blob (a record's name ...): the checksums stay stale."""
    meta, index = _index(out, header)
    fields = [f["name"] for f in meta["schema"] if f["type"] in ("str", "json", "bytes")]
    if not fields:
        fields = ["image"]
    field = fields[rng.integers(len(fields))]
    i = int(rng.integers(len(index)))
    off, n = int(index[f"{field}.offset"][i]), int(index[f"{field}.nbytes"][i])
    if n:
        at = header.data_offset + off + int(rng.integers(n))
        # printable ASCII half the time: the UTF-8 stays valid, only a checksum can tell
        out[at] = int(rng.integers(97, 123)) if rng.random() < 0.5 else int(rng.integers(256))


def _forge_index(out: bytearray, header: Header, rng) -> None:
    """One index cell set to an odd value, the index and header CRCs recomputed."""
    meta, index = _index(out, header)
    name = index.dtype.names[rng.integers(len(index.dtype.names))]
    i = int(rng.integers(len(index)))
    column = index[name]
    value = ODD[rng.integers(len(ODD))] if rng.random() < 0.7 else \
        int(column[i]) + int(rng.integers(-3, 4))
    if column.dtype.kind == "f":
        column[i] = [np.nan, np.inf, -0.0, 1e308, float(value)][rng.integers(5)]
    else:
        info = np.iinfo(column.dtype)
        column[i] = min(max(value, info.min), info.max)
    raw = index.tobytes()
    out[header.index_offset:header.index_offset + len(raw)] = raw
    _rewrite_header(out, header, index_crc=zlib.crc32(raw))


def _forge_meta(out: bytearray, header: Header, rng) -> None:
    """The meta JSON edited (schema types and names, classes, params), same length when it can
    be, the meta and header CRCs recomputed."""
    raw = bytes(out[header.meta_offset:header.meta_offset + header.meta_size])
    meta = json.loads(raw)
    choice = int(rng.integers(7))
    if choice == 0:
        meta["classes"] = meta.get("classes", [])[:int(rng.integers(0, 2))] or None
    elif choice == 1:
        field = meta["schema"][rng.integers(len(meta["schema"]))]
        field["type"] = ["image", "int", "float", "bytes", "str", "json", "nope"][
            rng.integers(7)]
    elif choice == 2:
        meta["schema"] = meta["schema"][::-1]
    elif choice == 3:
        meta["schema"].pop(int(rng.integers(len(meta["schema"]))))
    elif choice == 4:
        meta["classes"] = {"0": "x"} if rng.random() < 0.5 else "abc"
    elif choice == 5:
        meta = [meta] if rng.random() < 0.5 else {"schema": meta["schema"], "params": []}
    else:
        meta["schema"][rng.integers(len(meta["schema"]))]["name"] = ["", "a.b", "label",
                                                                       "image"][rng.integers(4)]
    new = json.dumps(meta).encode()
    if len(new) > header.meta_size:  # no room: a random byte of the JSON changed instead
        new = bytearray(raw)
        new[rng.integers(len(new))] = int(rng.integers(32, 127))
        new = bytes(new)
    new = new.ljust(header.meta_size, b" ")
    out[header.meta_offset:header.meta_offset + header.meta_size] = new
    _rewrite_header(out, header, meta_crc=zlib.crc32(new))


def _forge_sof(out: bytearray, header: Header, rng) -> None:
    """A JPEG record's frame header (SOF) claims another size; falls back to damaging a blob
    when the file has no JPEG."""
    data = bytes(out[header.data_offset:header.data_offset + header.data_size])
    sofs = [i for i in range(len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2)]
    if not sofs:
        _edit_blob(out, header, rng)
        return
    at = header.data_offset + sofs[rng.integers(len(sofs))] + 5
    h, w = (int(ODD[rng.integers(len(ODD))]) % 65536 for _ in range(2))
    out[at:at + 4] = struct.pack(">HH", h, w)


def _rewrite_header(out: bytearray, header: Header, **changed) -> None:
    fields = {**header.__dict__, **changed}
    out[:HEADER_SIZE] = Header(**fields).pack()


def outcome(base: Path, mutant: Path, kind: str, loader: bool = True) -> str:
    """What jessl made of `mutant`: one of OK, or "silent: ...", "undocumented: ..."."""
    from jessl.data.loader import LoaderError
    try:
        reader = Reader(mutant)
    except FormatError:
        return "rejected"
    except Exception as err:  # noqa: BLE001 - the point is to catch what should not happen
        return f"undocumented: open: {type(err).__name__}: {err}"
    with reader, Reader(base) as original:
        found, differs = False, []
        for i in range(len(reader)):
            try:
                reader.verify(i)
                ok = True
            except RecordError:
                found, ok = True, False
            except Exception as err:  # noqa: BLE001
                return f"undocumented: verify {i}: {type(err).__name__}: {err}"
            try:
                record = reader.read(i)
            except RecordError:
                if ok:
                    return f"undocumented: read {i} raised though verify passed"
                continue
            except Exception as err:  # noqa: BLE001
                return f"undocumented: read {i}: {type(err).__name__}: {err}"
            insane = _insane(record, reader, i)
            if insane:
                return f"undocumented: read {i}: {insane}"
            if ok and not _same(record, original, i, reader):
                differs.append(i)
        if loader:
            error = _run_loader(reader, LoaderError)
            if error:
                return error
    if differs and kind not in FORGED:
        return f"silent: records {differs} read differently and verify passed them"
    if differs:
        return "forged_read"
    return "verify_found" if found else "identical"


def _insane(record: dict, reader: Reader, i: int) -> str | None:
    """What a read may never return, forged file or not: a label outside the file's classes,
    an image of another shape than its index row."""
    classes, label = reader.classes, record.get("label")
    if classes is not None and isinstance(label, int) and not 0 <= label < len(classes):
        return f"label {label} outside the {len(classes)} classes"
    for name, kind in reader.fields.items():
        if kind == "image":
            row = reader.index[i]
            shape = tuple(int(row[f"{name}.{k}"]) for k in ("height", "width", "channels"))
            if record[name].shape != shape:
                return f"{name} of shape {record[name].shape}, index says {shape}"
    return None


def _same(record: dict, original: Reader, i: int, reader: Reader) -> bool:
    if (i >= len(original) or reader.schema != original.schema
            or reader.classes != original.classes):
        return False
    want = original.read(i)
    if record.keys() != want.keys():
        return False
    for key, value in record.items():
        if isinstance(value, np.ndarray):
            if value.shape != want[key].shape or not np.array_equal(value, want[key]):
                return False
        elif value != want[key] and not (value != value and want[key] != want[key]):
            return False  # NaN == NaN for this purpose
    return True


def _run_loader(reader: Reader, LoaderError) -> str | None:
    """One epoch of small views over every record: batches or a LoaderError, nothing else."""
    from jessl.data.loader import Loader
    try:
        loader = Loader(reader, len(reader), "simclr_cifar", order="sequential",
                        num_threads=1, output="uint8", prefetch=1)
        for _ in loader:
            pass
    except (LoaderError, RecordError, FormatError):
        return None
    except Exception as err:  # noqa: BLE001
        return f"undocumented: loader: {type(err).__name__}: {err}"
    return None
