"""Source -> dataset file, in parallel processes, written atomically.

Worker processes turn items into encoded records (decode checks, conversion, resize, JPEG,
CRC32); the parent writes them in source order, so the file is the same whatever the number of
workers. The output is built in a temporary file beside OUT, fsynced, then linked into place:
an interrupted or failed conversion leaves no OUT and never replaces one unless asked.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jessl import __version__
from jessl.data.encode import EncodeOptions, ImageError, encode_image
from jessl.data.format import (HEADER_SIZE, INDEX_ALIGN, VERSION, Header, check_schema,
                               index_dtype)
from jessl.data.sources import DatasetSource, open_source
from jessl.errors import UserError
from jessl.files import make_folders, remove_empty_folders
from jessl.runtime import quiet_worker_signals

ON_ERROR = ("fail", "skip")


class ConversionError(UserError, RuntimeError):
    """The conversion stopped on a record; the message names the source, the record and why."""


@dataclass
class WriteResult:
    path: Path
    records: int
    skipped: list = field(default_factory=list)  # [{"record", "name", "reason"}]
    converted: list = field(default_factory=list)  # [{"record", "name", "note"}]
    seconds: float = 0.0
    report: Path | None = None

    @property
    def images_per_s(self) -> float:
        return (self.records + len(self.skipped)) / max(self.seconds, 1e-9)


def convert(src, out, *, format="auto", quality=90, max_side=None, max_pixels=None,
            verify_jpeg=True, workers=None, on_error="fail", overwrite=False,
            progress=True, fields=None) -> WriteResult:
    """Write `src` (image folder, .npz, or indexable of (image, label)) to the file `out`."""
    options = EncodeOptions(format=format, quality=quality, max_side=max_side,
                            verify_jpeg=verify_jpeg,
                            **({"max_pixels": max_pixels} if max_pixels else {}))
    source = open_source(src) if fields is None else DatasetSource(src, fields=fields)
    return write_source(source, out, options, workers=workers, on_error=on_error,
                        overwrite=overwrite, progress=progress)


def write_source(source, out, options: EncodeOptions, *, workers=None, on_error="fail",
                 overwrite=False, progress=True) -> WriteResult:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    out = Path(out)
    schema = check_schema([{"name": "image", "type": "image"}] + list(source.fields))
    workers = max(1, int(workers or available_cores()))
    result = WriteResult(out, 0)
    start = time.perf_counter()
    rows = []
    classes = getattr(source, "classes", None)
    with AtomicFile(out, overwrite) as f, _encoded(source, options, workers) as records:
        f.write(b"\0" * HEADER_SIZE)  # the real header goes in last, once sizes are known
        data_size = 0
        bar = _progress(len(source), progress, out)
        for i, name, record, error in records:
            bar.update(1)
            if error is None:
                error = _label_error(record[2], classes)
            if error is not None:
                if on_error == "fail":
                    raise ConversionError(f"{_source_name(source)}: record {i} ({name}): "
                                          f"{error}")
                result.skipped.append({"record": i, "name": name, "reason": error})
                continue
            image, blobs, scalars = record
            if image.note:
                result.converted.append({"record": len(rows), "name": name, "note": image.note})
            row = [data_size, _nbytes(image.data), image.crc, image.height, image.width,
                   image.channels, image.encoding]
            f.write(image.data)
            data_size += _nbytes(image.data)
            for spec in schema[1:]:
                if spec["name"] in blobs:
                    blob = blobs[spec["name"]]
                    row += [data_size, len(blob), zlib.crc32(blob)]
                    f.write(blob)
                    data_size += len(blob)
                else:
                    row.append(scalars[spec["name"]])
            rows.append(tuple(row))
        bar.close()
        if not rows:
            raise ConversionError(f"{_source_name(source)}: no record could be converted "
                                  f"({len(result.skipped)} skipped)")
        result.records = len(rows)
        result.seconds = time.perf_counter() - start
        meta = {"schema": schema, "classes": classes,
                "params": _params(source, options, workers, on_error, result)}
        _write_tables(f, data_size, meta, np.array(rows, dtype=index_dtype(schema)))
        f.commit()
    result.report = _write_report(out, result, on_error)
    return result


def _label_error(scalars: dict, classes) -> str | None:
    """The reader refuses a label outside the file's classes: so does the writer, by record."""
    label = scalars.get("label")
    if classes is None or label is None or 0 <= label < len(classes):
        return None
    return f"label {label} is outside the {len(classes)} classes 0..{len(classes) - 1}"


def _nbytes(data) -> int:
    return data.nbytes if isinstance(data, np.ndarray) else len(data)


def _write_tables(f, data_size: int, meta: dict, index: np.ndarray) -> None:
    """Meta JSON and the index after the data, then the header over the placeholder."""
    meta_bytes = json.dumps(meta, indent=1).encode("utf-8")
    meta_offset = HEADER_SIZE + data_size
    f.write(meta_bytes)
    index_offset = -(-(meta_offset + len(meta_bytes)) // INDEX_ALIGN) * INDEX_ALIGN
    pad = index_offset - meta_offset - len(meta_bytes)
    meta_bytes += b" " * pad  # JSON allows trailing whitespace: the pad belongs to meta
    f.write(b" " * pad)
    index_bytes = index.tobytes()
    f.write(index_bytes)
    header = Header(VERSION, len(index), HEADER_SIZE, data_size, meta_offset, len(meta_bytes),
                    index_offset, len(index_bytes), zlib.crc32(meta_bytes),
                    zlib.crc32(index_bytes))
    f.seek(0)
    f.write(header.pack())


def _params(source, options: EncodeOptions, workers, on_error, result: WriteResult) -> dict:
    import cv2
    import PIL
    import simplejpeg
    return {
        "source": _source_name(source), "source_kind": source.kind, **asdict(options),
        "on_error": on_error, "workers": workers, "records": result.records,
        "skipped": len(result.skipped), "converted": len(result.converted),
        "seconds": round(result.seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jessl": __version__,
        # the libraries whose versions change re-encoded bytes
        "libraries": {"simplejpeg": simplejpeg.__version__, "opencv": cv2.__version__,
                      "pillow": PIL.__version__, "numpy": np.__version__},
    }


def _source_name(source) -> str:
    return str(getattr(source, "root", None) or getattr(source, "path", None) or
               f"<{type(getattr(source, 'dataset', source)).__name__}>")


def _write_report(out: Path, result: WriteResult, on_error: str) -> Path | None:
    """`OUT.report.json` lists every skipped and converted record; stale ones are removed."""
    path = out.with_name(out.name + ".report.json")
    if not (result.skipped or result.converted or on_error == "skip"):
        path.unlink(missing_ok=True)
        return None
    report = {"output": str(out), "records": result.records,
              "skipped": result.skipped, "converted": result.converted}
    with AtomicFile(path, overwrite=True) as f:
        f.write(json.dumps(report, indent=1).encode("utf-8"))
        f.commit()
    return path


def _progress(total: int, enabled: bool, out: Path):
    from tqdm import tqdm
    return tqdm(total=total, unit="img", desc=f"convert -> {out.name}", disable=not enabled,
                file=sys.stderr, smoothing=0.1, mininterval=0.5)


# --- Encoding records, in this process or in a pool -------------------------------------------

_WORKER = {}  # the source and options of this worker process, set once by _init_worker


def _init_worker(source, options) -> None:
    import cv2
    cv2.setNumThreads(1)  # one process per core already: OpenCV's own threads would oversubscribe
    quiet_worker_signals()
    _WORKER.update(source=source, options=options)


def _encode_one(i: int):
    """(i, name, (image, blobs, scalars) | None, error message | None) for record i."""
    source, options = _WORKER["source"], _WORKER["options"]
    name = f"#{i}"
    try:
        item = source.item(i)
        name = item.name
        image = encode_image(item.image, options)
        image.crc = zlib.crc32(image.data)  # in the worker: checksumming is parallel too
        blobs, scalars = _encode_fields(source.fields, item)
        return i, name, (image, blobs, scalars), None
    except (ImageError, OSError) as err:
        return i, name, None, str(err)
    except Exception as err:  # a bug or an odd input: still name the record, never hang
        return i, name, None, f"{type(err).__name__}: {err}"


def _encode_fields(fields: list[dict], item) -> tuple[dict, dict]:
    blobs, scalars = {}, {}
    for spec in fields:
        name, kind = spec["name"], spec["type"]
        value = item.label if name == "label" else item.extras.get(name)
        if value is None:
            raise ValueError(f"field {name!r} is missing")
        if kind == "int":
            scalars[name] = int(value)
        elif kind == "float":
            scalars[name] = float(value)
        elif kind == "bytes":
            blobs[name] = bytes(value)
        elif kind == "str":
            blobs[name] = str(value).encode("utf-8")
        else:
            blobs[name] = json.dumps(value).encode("utf-8")
    return blobs, scalars


class _encoded:
    """Context manager yielding encoded records in source order; the pool dies with it."""

    def __init__(self, source, options, workers: int):
        self.source, self.options, self.workers = source, options, workers
        self.pool = None

    def __enter__(self):
        n = len(self.source)
        if self.workers == 1:
            _WORKER.update(source=self.source, options=self.options)
            return map(_encode_one, range(n))
        methods = multiprocessing.get_all_start_methods()
        # fork shares the loaded source with the workers for free; spawn pickles it
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.pool = ctx.Pool(self.workers, _init_worker, (self.source, self.options))
        chunk = max(1, min(32, n // (self.workers * 16)))
        return self.pool.imap(_encode_one, range(n), chunksize=chunk)

    def __exit__(self, *exc):
        _WORKER.clear()
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- Atomic output ----------------------------------------------------------------------------

class AtomicFile:
    """A temporary file beside `path` that becomes `path` only on `commit()`.

    Without `overwrite` an existing `path` is an error up front, and the final step is a hard
    link, which fails rather than replace a file that appeared in the meantime.
    """

    def __init__(self, path, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder, not a file name")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass --overwrite to replace it")
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self.file = None
        self.created, self.committed = [], False

    def __enter__(self):
        self.created = make_folders(self.path.parent)  # taken away again if the write fails
        try:
            self.file = open(self.tmp, "xb")
        except BaseException:
            remove_empty_folders(self.created)
            raise
        return self

    def write(self, data) -> None:
        self.file.write(data)

    def seek(self, pos: int) -> None:
        self.file.seek(pos)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.overwrite:
            os.replace(self.tmp, self.path)
        else:
            try:
                os.link(self.tmp, self.path)
            except FileExistsError:
                raise FileExistsError(f"{self.path} appeared during the conversion; "
                                      f"pass --overwrite to replace it") from None
            except OSError:  # a filesystem without hard links: check, then rename
                if self.path.exists():
                    raise FileExistsError(f"{self.path} exists; pass --overwrite") from None
                os.replace(self.tmp, self.path)
            self.tmp.unlink(missing_ok=True)
        self.committed = True
        _fsync_dir(self.path.parent)

    def __exit__(self, *exc):
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)
        if not self.committed:
            remove_empty_folders(self.created)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)
