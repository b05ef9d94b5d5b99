"""What a dataset file holds: schema, counts, sizes, labels; and a full decode check."""

from __future__ import annotations

import multiprocessing

import numpy as np

from jessl.data.format import BLOB_TYPES, ENCODINGS
from jessl.data.reader import Reader, RecordError
from jessl.runtime import quiet_worker_signals


def summarize(reader: Reader) -> dict:
    """Everything `jessl inspect` prints, as plain JSON-able data."""
    summary = {
        "path": str(reader.path), "bytes": reader.file_size, "records": len(reader),
        "format_version": reader.header.version, "schema": reader.schema,
        "params": reader.params, "images": {}, "labels": None,
    }
    for name, kind in reader.fields.items():
        if kind == "image":
            summary["images"][name] = _image_stats(reader, name)
    if reader.labels is not None:
        summary["labels"] = _label_stats(reader.labels, reader.classes)
    return summary


def _image_stats(reader: Reader, field: str) -> dict:
    shapes = reader.image_shapes(field)
    enc = reader.index[f"{field}.encoding"]
    nbytes = reader.index[f"{field}.nbytes"].astype(np.int64)
    def spread(values):
        q = np.percentile(values, [0, 50, 100])
        return {"min": int(q[0]), "median": float(q[1]), "max": int(q[2])}
    return {
        "height": spread(shapes[:, 0]), "width": spread(shapes[:, 1]),
        "channels": {str(c): int(n) for c, n in zip(*np.unique(shapes[:, 2], return_counts=True))},
        "encodings": {ENCODINGS[int(e)]: int(n) for e, n in zip(*np.unique(enc, return_counts=True))},
        "stored_bytes": spread(nbytes), "total_bytes": int(nbytes.sum()),
    }


def _label_stats(labels: np.ndarray, classes) -> dict:
    values, counts = np.unique(labels, return_counts=True)
    names = [classes[v] if classes is not None and 0 <= v < len(classes) else None
             for v in values.tolist()]
    return {"classes": len(values),
            "histogram": [{"label": int(v), "name": n, "count": int(c)}
                          for v, n, c in zip(values, names, counts)]}


def format_summary(s: dict) -> str:
    """A person-readable rendering of `summarize`."""
    lines = [f"{s['path']}: {s['records']:,} records, {s['bytes'] / 2**20:.1f} MiB, "
             f"format version {s['format_version']}",
             "fields: " + ", ".join(f"{f['name']} ({f['type']})" for f in s["schema"])]
    params = s["params"]
    shown = ["source", "source_kind", "format", "quality", "max_side", "on_error",
             "skipped", "converted", "created", "jessl"]
    lines.append("written with: " + ", ".join(f"{k}={params[k]}" for k in shown if k in params))
    for name, st in s["images"].items():
        lines.append(f"{name}: height {_fmt(st['height'])}, width {_fmt(st['width'])}; "
                     f"channels {st['channels']}; encodings {st['encodings']}; "
                     f"{st['total_bytes'] / 2**20:.1f} MiB of pixels/JPEG, "
                     f"median {st['stored_bytes']['median']:,.0f} B per image")
    labels = s["labels"]
    if labels is None:
        lines.append("labels: none")
    else:
        lines.append(f"labels: {labels['classes']} classes")
        rows = labels["histogram"]
        shown_rows = rows if len(rows) <= 20 else rows[:10] + [None] + rows[-5:]
        for row in shown_rows:
            if row is None:
                lines.append(f"  ... {len(rows) - 15} more classes")
                continue
            name = f" {row['name']}" if row["name"] is not None else ""
            lines.append(f"  {row['label']:>5}{name}: {row['count']:,}")
        counts = [r["count"] for r in rows]
        lines.append(f"  per class: min {min(counts):,}, max {max(counts):,}")
    return "\n".join(lines)


def _fmt(st: dict) -> str:
    return f"{st['min']}..{st['max']} (median {st['median']:g})"


def verify_file(path, workers: int = 1, progress: bool = False) -> list[dict]:
    """Decode every record strictly and check its CRCs; [{record, error}] for each failure
    (record None for data-region bytes that belong to no record, which no CRC covers)."""
    with Reader(path) as reader:
        n = len(reader)
        failures = [{"record": None, "error": f"{path}: data region bytes [{lo}, {hi}) belong "
                     f"to no record: not covered by any checksum"}
                    for lo, hi in uncovered_ranges(reader)]
    chunks = [(str(path), lo, min(lo + 256, n)) for lo in range(0, n, 256)]
    from tqdm import tqdm
    bar = tqdm(total=n, unit="img", desc="verify", disable=not progress)
    if workers <= 1:
        results = map(_verify_range, chunks)
        pool = None
    else:
        pool = multiprocessing.get_context().Pool(workers, quiet_worker_signals)
        results = pool.imap(_verify_range, chunks)
    try:
        for (_, lo, hi), bad in zip(chunks, results):
            failures += bad
            bar.update(hi - lo)
        if pool is not None:
            pool.close()  # every chunk is in: the workers exit on their own, nothing is killed
            pool.join()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()  # an error or Ctrl-C: stop the workers (a no-op after join)
    return failures


def _verify_range(task) -> list[dict]:
    path, lo, hi = task
    bad = []
    with Reader(path) as reader:
        for i in range(lo, hi):
            try:
                reader.verify(i)
            except RecordError as err:
                bad.append({"record": i, "error": str(err)})
    return bad


def uncovered_ranges(reader: Reader) -> list[tuple[int, int]]:
    """[lo, hi) spans of the data region that no record's blob covers (the writer leaves none:
    blobs lie back to back), so that `verify` vouches for every stored byte."""
    spans = [(reader.index[f"{name}.offset"].astype(np.int64),
              reader.index[f"{name}.nbytes"].astype(np.int64))
             for name, kind in reader.fields.items() if kind in BLOB_TYPES]
    gaps, end = [], 0
    if spans:
        starts = np.concatenate([o for o, _ in spans])
        ends = starts + np.concatenate([b for _, b in spans])
        for lo, hi in zip(starts[np.argsort(starts)], ends[np.argsort(starts)]):
            if lo > end:
                gaps.append((end, int(lo)))
            end = max(end, int(hi))
    if end < reader.header.data_size:
        gaps.append((end, reader.header.data_size))
    return gaps
