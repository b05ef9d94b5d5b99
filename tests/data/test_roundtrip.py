"""Write then read: every field type, every format, variable sizes, greyscale, real data."""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from jessl.data import Reader, convert, open_dataset
from jessl.data.format import JPEG, RAW
from tests.data.helpers import encode, natural_like, pillow_decode


def test_arrays_raw_roundtrip_is_pixel_identical(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(7, 5, 6, 3), dtype=np.uint8)
    y = rng.integers(0, 4, size=7)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    result = convert(tmp_path / "a.npz", tmp_path / "a.jessl", workers=1, progress=False)
    assert result.records == 7
    with open_dataset(tmp_path / "a.jessl") as ds:
        assert len(ds) == 7
        assert [f["name"] for f in ds.schema] == ["image", "label"]
        assert (ds.index["image.encoding"] == RAW).all()
        np.testing.assert_array_equal(ds.labels, y)
        for i in range(7):
            np.testing.assert_array_equal(ds.read_image(i), x[i])
            assert ds.read(i)["label"] == y[i]


def test_greyscale_arrays_keep_one_channel(tmp_path):
    x = np.stack([natural_like(9, 4, 1, seed=s)[:, :, 0] for s in range(3)])  # (N, H, W)
    np.savez(tmp_path / "g.npz", x=x, y=np.arange(3))
    convert(tmp_path / "g.npz", tmp_path / "g.jessl", workers=1, progress=False)
    with Reader(tmp_path / "g.jessl") as ds:
        assert ds.image_shapes().tolist() == [[9, 4, 1]] * 3
        np.testing.assert_array_equal(ds.read_image(2)[:, :, 0], x[2])


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_variable_sizes_and_every_field_type(tmp_path, fmt):
    sizes = [(1, 1), (3, 700), (700, 3), (40, 33), (16_400, 2)]  # > 16k px on a side
    records = []
    for k, (h, w) in enumerate(sizes):
        extras = {"weight": k / 3, "count": -k, "blob": bytes([k]) * k, "caption": f"é{k}",
                  "meta": {"k": k, "tags": ["a", k]}}
        records.append((natural_like(h, w, 3 - 2 * (k % 2), seed=k), k, extras))
    convert(records, tmp_path / "v.jessl", format=fmt, workers=1, progress=False)
    with Reader(tmp_path / "v.jessl") as ds:
        assert ds.fields == {"image": "image", "label": "int", "weight": "float",
                             "count": "int", "blob": "bytes", "caption": "str", "meta": "json"}
        for k, (image, label, extras) in enumerate(records):
            rec = ds.read(k)
            assert rec["image"].shape == image.shape
            if fmt == "raw":
                np.testing.assert_array_equal(rec["image"], image)
            else:
                # JPEG is lossy: close to the source, and exactly what Pillow decodes
                np.testing.assert_array_equal(rec["image"],
                                              pillow_decode(ds.blob(k).tobytes()))
                if min(image.shape[:2]) >= 16:  # 4:2:0 chroma smears 3-px-wide colour edges
                    assert np.abs(rec["image"].astype(int) - image).mean() < 6
            assert rec["label"] == label
            assert {key: rec[key] for key in extras} == extras
            ds.verify(k)


def test_jpeg_npz_passthrough_is_byte_identical(tmp_path, cifar_test_npz):
    out = tmp_path / "c.jessl"
    convert(cifar_test_npz, out, progress=False)
    src = np.load(cifar_test_npz)
    jpeg, offsets = src["jpeg"], src["offsets"]
    with Reader(out) as ds:
        assert len(ds) == 10_000
        assert np.bincount(ds.labels).tolist() == [1000] * 10
        assert ds.classes[0] == "airplane" and len(ds.classes) == 10
        assert (ds.index["image.encoding"] == JPEG).all()
        for i in np.random.default_rng(0).choice(10_000, 50, replace=False):
            source = jpeg[offsets[i]:offsets[i + 1]].tobytes()
            assert ds.blob(i).tobytes() == source
            assert ds.read(i)["name"] == str(src["names"][i])
            expected = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
            np.testing.assert_array_equal(ds.read_image(i), expected)
        assert ds.params["format"] == "auto" and ds.params["source_kind"] == "npz_jpeg"


def test_jpeg_npz_to_raw_equals_pillow(tmp_path, cifar_test_npz):
    out = tmp_path / "r.jessl"
    convert(cifar_test_npz, out, format="raw", progress=False)
    src = np.load(cifar_test_npz)
    jpeg, offsets = src["jpeg"], src["offsets"]
    with Reader(out) as ds:
        assert (ds.index["image.encoding"] == RAW).all()
        for i in range(0, 10_000, 97):
            expected = np.asarray(Image.open(io.BytesIO(
                jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
            np.testing.assert_array_equal(ds.read_image(i), expected)


def test_imagenet_folder_max_side_keeps_grey_and_aspect(tmp_path, imagenet_sample):
    out = tmp_path / "i.jessl"
    result = convert(imagenet_sample, out, max_side=256, workers=2, progress=False)
    assert result.records == 1000 and not result.skipped
    classes = sorted(os.listdir(imagenet_sample))
    with Reader(out) as ds:
        shapes = ds.image_shapes()
        assert shapes[:, :2].max(axis=1).max() <= 256
        assert (shapes[:, 2] == 1).sum() == 23  # the greyscale photos stay greyscale
        assert ds.classes == classes and ds.labels.tolist() == list(range(1000))
        for i in (0, 500, 999):
            name = ds.read(i)["name"]
            w, h = Image.open(imagenet_sample / name).size
            stored_h, stored_w = shapes[i, :2]
            if max(h, w) > 256:
                assert max(stored_h, stored_w) == 256
                assert abs(stored_w / stored_h - w / h) < 2 / min(stored_h, stored_w)
        for i in range(len(ds)):
            ds.verify(i)
        assert ds.params["max_side"] == 256


def test_folder_passthrough_copies_file_bytes(tmp_path, imagenet_sample):
    classes = sorted(os.listdir(imagenet_sample))[:6]
    for name in classes:
        shutil.copytree(imagenet_sample / name, tmp_path / "src" / name)
    convert(tmp_path / "src", tmp_path / "p.jessl", workers=1, progress=False)
    with Reader(tmp_path / "p.jessl") as ds:
        for i in range(len(ds)):
            path = tmp_path / "src" / ds.read(i)["name"]
            assert ds.blob(i).tobytes() == path.read_bytes()
            np.testing.assert_array_equal(ds.read_image(i), pillow_decode(path.read_bytes()))


def test_flat_folder_has_no_labels(tmp_path):
    (tmp_path / "flat").mkdir()
    for k in range(3):
        (tmp_path / "flat" / f"{k}.png").write_bytes(encode(natural_like(5, 6, seed=k), "PNG"))
    convert(tmp_path / "flat", tmp_path / "f.jessl", workers=1, progress=False)
    with Reader(tmp_path / "f.jessl") as ds:
        assert ds.labels is None and "label" not in ds.fields
        assert [ds.read(k)["name"] for k in range(3)] == ["0.png", "1.png", "2.png"]
        np.testing.assert_array_equal(ds.read_image(1), natural_like(5, 6, seed=1))
        assert ds.index["image.encoding"][0] == RAW  # auto stores PNG losslessly


def test_same_file_whatever_the_number_of_workers(tmp_path, cifar_test_npz):
    files = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.jessl"
        convert(cifar_test_npz, out, format="jpeg", quality=80, workers=workers, progress=False)
        files.append(Reader(out))
    a, b = files
    assert a.header.data_size == b.header.data_size
    np.testing.assert_array_equal(a.index, b.index)
    assert a._data.tobytes() == b._data.tobytes()


def test_reader_pickles_and_checks_range(tmp_path):
    import pickle
    convert([(natural_like(4, 4), 1)], tmp_path / "one.jessl", workers=1, progress=False)
    ds = pickle.loads(pickle.dumps(Reader(tmp_path / "one.jessl")))
    assert len(ds) == 1 and ds.read(-1)["label"] == 1
    with pytest.raises(IndexError, match="record 1 out of range"):
        ds.read(1)
