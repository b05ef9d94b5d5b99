"""Defects a hostile-user campaign found (issue 15), each pinned by a test that failed before
its fix: forked verify workers and SIGTERM, string fields and labels under no check, bare
UnicodeDecodeErrors, JPEG headers that disagree with the index, and version 1 files."""

import json
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from jessl.data import FormatError, Reader, RecordError, convert
from jessl.data.inspect import uncovered_ranges, verify_file
from jessl.data.sources import DatasetSource
from tests.data.helpers import natural_like
from tests.data.test_corruption import _rewrite_index

V1_FILE = Path(__file__).parent / "files" / "v1.jessl"  # written by jessl before format v2


@pytest.fixture(scope="module")
def named_file(tmp_path_factory):
    """6 JPEG records of 32x32 px, 3 classes, a `name` (str) and an `info` (json) field."""
    path = tmp_path_factory.mktemp("rel") / "named.jessl"
    records = [(natural_like(32, 32, seed=k), k % 3, {"name": f"deer/{k:04d}.jpg",
                                                     "info": {"k": k}}) for k in range(6)]
    convert(DatasetSource(records, classes=["cat", "deer", "dog"]), path, format="jpeg",
            workers=1, progress=False)
    return path


def _edited(path: Path, tmp_path: Path, record: int, field: str, at: int, new: bytes) -> Path:
    """A copy of `path` with bytes of one record's blob replaced (the data region only)."""
    data = bytearray(path.read_bytes())
    with Reader(path) as ds:
        start = ds.header.data_offset + int(ds.index[f"{field}.offset"][record]) + at
    data[start:start + len(new)] = new
    out = tmp_path / "edited.jessl"
    out.write_bytes(bytes(data))
    return out


def test_verify_workers_ignore_the_cli_sigterm_handler(tmp_path, capfd):
    """cli.main turns SIGTERM into KeyboardInterrupt; forked workers inherited it and printed
    a traceback (about every second run) when the pool was terminated."""
    from jessl.cli import _raise_interrupt
    path = tmp_path / "many.jessl"
    convert([(natural_like(8, 8, seed=k), 0) for k in range(1500)], path, format="raw",
            workers=1, progress=False)
    saved = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for _ in range(4):
            assert verify_file(path, workers=2) == []
    finally:
        signal.signal(signal.SIGTERM, saved)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_changed_name_is_found_by_verify(named_file, tmp_path):
    with Reader(named_file) as ds:
        assert ds.read(4)["name"] == "deer/0004.jpg"
    bad = _edited(named_file, tmp_path, 4, "name", 1, b"m")  # still valid UTF-8: dmer/...
    with Reader(bad) as ds:
        assert ds.read(4)["name"] == "dmer/0004.jpg"  # read() does not check CRCs ...
        ds.verify(3)
        with pytest.raises(RecordError, match="record 4: name checksum mismatch"):
            ds.verify(4)  # ... verify does
    assert [f["record"] for f in verify_file(bad)] == [4]


def test_a_changed_json_field_is_found_by_verify(named_file, tmp_path):
    bad = _edited(named_file, tmp_path, 2, "info", 6, b"7")  # {"k": 2} -> {"k": 7}
    with Reader(bad) as ds:
        assert ds.read(2)["info"] == {"k": 7}
        with pytest.raises(RecordError, match="record 2: info checksum mismatch"):
            ds.verify(2)


def test_invalid_utf8_is_a_record_error_naming_file_and_record(named_file, tmp_path):
    bad = _edited(named_file, tmp_path, 1, "name", 0, b"\xff")
    with Reader(bad) as ds:
        with pytest.raises(RecordError, match=r"edited.jessl: record 1: field 'name'"):
            ds.read(1)
        ds.read(0)


def test_a_json_field_nested_too_deep_is_a_record_error(tmp_path):
    path = tmp_path / "deep.jessl"
    convert([(natural_like(4, 4), 0, {"info": {"k": "x" * 5000}})], path, workers=1,
            progress=False)
    data = path.read_bytes()
    with Reader(path) as ds:
        at, n = ds.header.data_offset + int(ds.index["info.offset"][0]), len(ds.blob(0, "info"))
    deep = tmp_path / "deeper.jessl"  # the same length, all "[": json recurses past the limit
    deep.write_bytes(data[:at] + b"[" * n + data[at + n:])
    with Reader(deep) as ds:
        with pytest.raises(RecordError, match="record 0: field 'info'"):
            ds.read(0)


def test_labels_outside_the_classes_are_refused(named_file, tmp_path):
    data = named_file.read_bytes()
    for label in (2**31, 3, -1):
        bad = tmp_path / "label.jessl"
        bad.write_bytes(_rewrite_index(data, named_file,
                                       lambda ix: ix["label.value"].__setitem__(1, label)))
        with pytest.raises(FormatError, match=r"label outside the 3 classes .* record\(s\): 1"):
            Reader(bad)


def test_the_writer_refuses_labels_outside_the_classes(tmp_path):
    from jessl.data import ConversionError
    source = DatasetSource([(natural_like(4, 4), 0), (natural_like(4, 4), 5)], classes=["a", "b"])
    with pytest.raises(ConversionError, match=r"record 1 .*label 5 is outside the 2 classes"):
        convert(source, tmp_path / "x.jessl", workers=1, progress=False)


def _sof_edit(path: Path, tmp_path: Path, record: int, height: int, width: int) -> Path:
    """The record's JPEG with its frame header (SOF0) claiming another size."""
    with Reader(path) as ds:
        blob = ds.blob(record).tobytes()
    sof = blob.index(b"\xff\xc0")
    return _edited(path, tmp_path, record, "image", sof + 5,
                   height.to_bytes(2, "big") + width.to_bytes(2, "big"))


@pytest.mark.parametrize("size", [(32, 2080), (65000, 65000)])
def test_a_jpeg_header_that_disagrees_with_the_index_is_refused(named_file, tmp_path, size):
    from jessl.data.loader import Loader, LoaderError
    bad = _sof_edit(named_file, tmp_path, 3, *size)
    with Reader(bad) as ds:
        with pytest.raises(RecordError, match=rf"record 3: JPEG is {size[1]}x{size[0]} but "
                                               r"the index says 32x32"):
            ds.read(3)  # refused from the header: nothing of 65000x65000 px is allocated
    with pytest.raises(LoaderError, match=rf"record 3: JPEG is {size[1]}x{size[0]}"):
        for _ in Loader(bad, 6, "simclr_cifar", num_threads=1, order="sequential"):
            pass


def test_version_1_files_are_read_and_verify_says_what_it_cannot_check(tmp_path):
    """A file written by jessl before format v2 (tests/data/files/v1.jessl)."""
    with Reader(V1_FILE) as ds:
        assert ds.header.version == 1 and len(ds) == 6 and ds.classes == ["a", "b", "c"]
        assert [ds.read(i)["name"] for i in range(6)] == [f"c{i % 3}/{i}.png" for i in range(6)]
        assert [ds.read(i)["info"] for i in range(6)] == [{"k": i} for i in range(6)]
        np.testing.assert_array_equal(ds.read(0)["image"], natural_like(8, 6, 1, seed=0))
        assert ds.unchecked_fields == ["name", "info"]
        for i in range(6):
            ds.verify(i)
    copy = tmp_path / "v1.jessl"
    shutil.copy(V1_FILE, copy)
    run = subprocess.run([sys.executable, "-m", "jessl", "inspect", str(copy), "--verify",
                          "--workers", "1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "6 of 6 records" in run.stdout
    assert "format version 1 stores no checksum for name, info" in run.stdout
    with Reader(copy) as ds:
        assert ds.index["image.crc"].any()  # images of v1 files have their CRC: it is checked


def test_bytes_that_belong_to_no_record_are_reported(named_file, tmp_path):
    with Reader(named_file) as ds:
        assert uncovered_ranges(ds) == []
    data = named_file.read_bytes()
    bad = tmp_path / "gap.jessl"
    # record 5's name moved 1 byte on (its first byte now belongs to no blob, the CRC is
    # recomputed for the new bytes): the kind of index a hostile edit makes
    with Reader(named_file) as ds:
        rest = ds.blob(5, "name").tobytes()[1:]

    def edit(ix):
        ix["name.offset"][5] += 1
        ix["name.nbytes"][5] -= 1
        ix["name.crc"][5] = zlib.crc32(rest)
    bad.write_bytes(_rewrite_index(data, named_file, edit))
    failures = verify_file(bad)
    assert len(failures) == 1 and failures[0]["record"] is None
    assert "belong to no record" in failures[0]["error"]
    json.dumps(failures)


def test_exact_mode_gives_torchvisions_crops(tmp_path):
    """Loader(exact=True) decodes at full size: each crop + flip view is torchvision v2's
    (Pillow decode, F.resized_crop antialias, F.horizontal_flip) within EXACT_BOUND levels;
    the default DCT-scaled decode of these sharp-edged images is much further off."""
    import io

    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from jessl.data import sampler as S
    from jessl.data.loader import EXACT_BOUND, Loader
    from jessl.data.ops import flip
    from jessl.data.ops.registry import LAYOUT
    from jessl.data.views import View
    from tests.data.helpers import encode
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 256, (24, 30, 3), dtype=np.uint8) for _ in range(6)]
    images = [np.kron(b, np.ones((8, 8, 1), np.uint8)) for b in blocks]  # 192x240, sharp edges
    path = tmp_path / "sharp.jessl"
    convert([(encode(im, "JPEG", quality=95), 0) for im in images], path, workers=1,
            progress=False)
    view = View(size=32, flip_p=0.5)
    worst = {}
    for exact in (False, True):
        loader = Loader(path, 6, [view], order="sequential", output="uint8", num_threads=1,
                        exact=exact)
        batch = next(iter(loader))
        records = batch.indices.numpy()
        ints, _ = S.sample_chunk(0, 0, records, np.full(6, 192), np.full(6, 240),
                                 S.view_configs([view]))
        worst[exact] = 0
        for j, record in enumerate(records):
            p = ints[j, 0]
            jpeg = loader.reader.blob(int(record)).tobytes()
            ref = F.resized_crop(F.pil_to_tensor(Image.open(io.BytesIO(jpeg)).convert("RGB")),
                                 *(int(v) for v in p[:4]), [32, 32], antialias=True)
            ref = F.horizontal_flip(ref) if p[LAYOUT.col("ints", flip.SPEC, "on")] else ref
            diff = np.abs(batch.views[0][j].numpy().astype(int) - ref.numpy().astype(int))
            worst[exact] = max(worst[exact], int(diff.max()))
    assert worst[True] <= EXACT_BOUND
    assert worst[False] > 10 * EXACT_BOUND, worst  # the mode matters on such images
