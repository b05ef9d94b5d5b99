"""The multi-view loader: determinism, sharding, decode once, knobs, errors, no leaks."""

import gc
import threading
import time

import numpy as np
import pytest
import torch

import jessl.data.loader as loader_module
from jessl.data import Reader, convert
from jessl.data import sampler as S
from jessl.data.loader import Loader, LoaderError
from jessl.data.ops import crop
from jessl.data.ops.registry import LAYOUT
from jessl.data.order import epoch_order, shard
from jessl.data.render import dct_factors, map_box
from jessl.data.views import View, resolve_views
from tests.data.helpers import natural_like


@pytest.fixture(scope="module")
def jpeg_file(tmp_path_factory):
    """40 JPEG records of varied sizes, a quarter greyscale, 4 classes."""
    path = tmp_path_factory.mktemp("loader") / "mixed.jessl"
    records = [(natural_like(40 + 7 * k, 64 + 5 * (k % 9), 1 if k % 4 == 0 else 3, seed=k),
                k % 4) for k in range(40)]
    convert(records, path, format="jpeg", workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("loader") / "raw.jessl"
    convert([(natural_like(32, 32, seed=k), k % 5) for k in range(50)], path, format="raw",
            workers=1, progress=False)
    return path


def _epoch(loader, epoch=0):
    return [b for b in loader.iter_epoch(epoch)]


def _same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
        for va, vb in zip(a.views, b.views):
            assert torch.equal(va, vb)


@pytest.mark.parametrize("preset", ["simclr_cifar", "byol_cifar", "instance_cifar"])
def test_same_seed_same_batches_whatever_the_threads(jpeg_file, preset):
    one = _epoch(Loader(jpeg_file, 8, preset, seed=3, num_threads=1))
    two = _epoch(Loader(jpeg_file, 8, preset, seed=3, num_threads=2, prefetch=3))
    _same(one, two)
    other = _epoch(Loader(jpeg_file, 8, preset, seed=4, num_threads=2))
    assert not torch.equal(one[0].views[0], other[0].views[0])


def test_views_shapes_labels_and_indices(jpeg_file):
    loader = Loader(jpeg_file, 16, "multicrop_cifar", seed=0, drop_last=False)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 3
    b = batches[0]
    assert [tuple(v.shape) for v in b.views] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)] * 6
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in b.views)
    labels = Reader(jpeg_file).labels
    assert torch.equal(b.labels, torch.from_numpy(labels[b.indices.numpy()]))
    seen = np.concatenate([x.indices.numpy() for x in batches])
    assert sorted(seen.tolist()) == list(range(40))
    # two views of one image differ (independent draws), but come from the same record
    assert not torch.equal(b.views[0][0], b.views[1][0])


def test_epochs_differ_and_a_batch_replays_bit_for_bit(jpeg_file):
    loader = Loader(jpeg_file, 8, "simclr_cifar", seed=1)
    e0, e1 = _epoch(loader, 0), _epoch(loader, 1)
    assert not torch.equal(e0[0].indices, e1[0].indices)
    replayed = loader.replay(1, 2)
    _same([e1[2]], [replayed])
    assert replayed.epoch == 1 and replayed.step == 2
    # iterating advances the epoch, as set_epoch sets it
    loader.set_epoch(1)
    _same(e1, list(loader))
    assert loader.epoch == 2


def test_a_record_has_the_same_views_whatever_batch_it_lands_in(jpeg_file):
    a = Loader(jpeg_file, 8, "simclr_cifar", seed=5, order="random")
    b = Loader(jpeg_file, 5, "simclr_cifar", seed=5, order="sequential")
    first = _epoch(a)[0]
    by_record = {int(i): k for k, i in enumerate(first.indices)}
    for batch in _epoch(b):
        for k, i in enumerate(batch.indices.tolist()):
            if i in by_record:
                assert torch.equal(batch.views[0][k], first.views[0][by_record[i]])


@pytest.mark.parametrize("world, drop_last", [(2, True), (3, True), (3, False), (4, False)])
def test_shards_are_disjoint_complete_and_equal(jpeg_file, world, drop_last):
    ranks = [Loader(jpeg_file, 4, "simclr_cifar", seed=2, rank=r, world_size=world,
                    drop_last=drop_last) for r in range(world)]
    per_rank = [np.concatenate(ld.epoch_batches(0)) for ld in ranks]
    assert len({len(p) for p in per_rank}) == 1  # same size on every rank
    assert len({len(ld) for ld in ranks}) == 1
    everything = np.concatenate(per_rank)
    if drop_last:
        assert len(everything) == len(set(everything.tolist()))  # disjoint
    else:
        assert set(everything.tolist()) == set(range(40))  # complete (padding wraps around)
        assert len(everything) - len(set(everything.tolist())) < world * 4


def test_shard_function_is_the_distributed_sampler_rule():
    order = np.arange(10)
    shards = [shard(order, r, 3, drop_last=False) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    assert [shard(order, r, 3, True).tolist() for r in range(3)] == [[0, 3, 6], [1, 4, 7],
                                                                      [2, 5, 8]]


def test_quasi_random_is_a_permutation_of_local_blocks():
    indices = np.arange(1000)
    offsets = np.arange(1000, dtype=np.uint64) * 1000  # 1 kB records
    order = epoch_order(indices, "quasi_random", seed=0, epoch=0, offsets=offsets,
                        block_bytes=100_000, min_block=50)
    assert sorted(order.tolist()) == list(range(1000))
    assert order.tolist() != list(range(1000))
    # each run of 100 consecutive positions comes from a single 100-record block
    blocks = order.reshape(10, 100) // 100
    assert all(len(set(row.tolist())) == 1 for row in blocks)


def test_each_image_is_decoded_once_per_batch_at_a_reduced_scale(tmp_path, monkeypatch):
    path = tmp_path / "big.jessl"
    convert([(natural_like(480, 640, seed=k), 0) for k in range(4)], path, format="jpeg",
            workers=1, progress=False)
    calls = []
    real = loader_module.simplejpeg.decode_jpeg

    def counting(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)
    monkeypatch.setattr(loader_module.simplejpeg, "decode_jpeg", counting)
    views = [View(size=32, crop="full")] * 3  # three 32 px views of a 640 px image
    batch = next(iter(Loader(path, 4, views, num_threads=1)))
    assert len(calls) == 4  # one decode per image, not one per view
    assert all(kw["min_width"] == 640 // 8 for kw in calls)  # 1/8 DCT scale suffices
    assert tuple(batch.views[0].shape) == (4, 3, 32, 32)


def test_dct_factor_and_box_mapping():
    cfgs = S.view_configs([View(size=32)] * 2)
    ints = np.zeros((3, 2, LAYOUT.n_int), np.int64)
    h = LAYOUT.col("ints", crop.SPEC, "h")  # and w right after it
    ints[:, :, h:h + 2] = [[[256, 256], [256, 256]], [[256, 256], [70, 90]],
                           [[40, 40], [256, 256]]]
    assert dct_factors(ints, cfgs).tolist() == [8, 2, 1]
    top, left, h, w = map_box(100, 50, 200, 300, 480, 640, 60, 80)
    assert (top, left, h, w) == (12, 6, 26, 38)
    assert top + h <= 60 and left + w <= 80


def test_progressive_resolution_and_magnitude_between_epochs(raw_file):
    loader = Loader(raw_file, 10, "simclr_cifar", seed=0)
    assert next(iter(loader)).views[0].shape[-1] == 32
    loader.set_size(24)
    assert next(iter(loader)).views[0].shape[-1] == 24
    # magnitude 0: no photometric op is drawn, so a full-image view is the plain normalisation
    loader = Loader(raw_file, 10, [View(size=32, crop="full", flip_p=0.0, jitter_p=1.0,
                                        grey_p=1.0, solarize_p=1.0)], seed=0)
    strong = next(iter(loader)).views[0]
    loader.set_magnitude(0.0, scales="photometric")  # the paper's "jitter" leaves grey on
    plain = next(iter(loader))
    ds = Reader(raw_file)
    image = torch.from_numpy(ds.read_image(int(plain.indices[0])).copy()).permute(2, 0, 1)
    mean = torch.tensor(View().mean).view(3, 1, 1)
    std = torch.tensor(View().std).view(3, 1, 1)
    expected = (image.float() / 255 - mean) / std
    assert torch.allclose(plain.views[0][0], expected, atol=1e-5)
    assert not torch.allclose(strong[0], expected, atol=1e-2)
    with pytest.raises(ValueError, match="magnitude"):
        loader.set_magnitude(1.5)


def test_uint8_and_channels_last_outputs(raw_file):
    b = next(iter(Loader(raw_file, 5, "crop_grey_cifar", output="uint8")))
    assert b.views[0].dtype == torch.uint8 and b.views[0].shape == (5, 3, 32, 32)
    c = next(iter(Loader(raw_file, 5, "crop_grey_cifar", channels_last=True)))
    assert c.views[0].is_contiguous(memory_format=torch.channels_last)


def test_a_corrupt_record_raises_naming_it_and_never_hangs(tmp_path, jpeg_file):
    data = bytearray(jpeg_file.read_bytes())
    with Reader(jpeg_file) as ds:
        start = ds.header.data_offset + int(ds.index["image.offset"][7])
    data[start:start + 16] = bytes(16)  # the JPEG's markers are gone
    bad = tmp_path / "bad.jessl"
    bad.write_bytes(bytes(data))
    loader = Loader(bad, 8, "simclr_cifar", order="sequential", num_threads=2)
    before = threading.active_count()
    t = time.monotonic()
    with pytest.raises(LoaderError, match=r"bad.jessl: record 7: "):
        for _ in loader:
            pass
    assert time.monotonic() - t < 30
    assert threading.active_count() <= before


def test_early_break_and_reiteration_leak_no_threads_or_memory(raw_file):
    import resource
    loader = Loader(raw_file, 5, "simclr_cifar", num_threads=2, prefetch=3)
    baseline = threading.active_count()
    for _ in range(3):
        for k, _batch in enumerate(loader):
            if k == 1:
                break
    gc.collect()
    assert threading.active_count() == baseline
    rss = []
    for epoch in range(30):
        for _batch in loader:
            pass
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert rss[-1] - rss[5] < 20_000  # kB: flat after warm-up
    assert threading.active_count() == baseline


def test_bad_arguments_fail_early(raw_file):
    with pytest.raises(ValueError, match="no batch"):
        Loader(raw_file, 51, "simclr_cifar")
    with pytest.raises(ValueError, match="unknown view preset"):
        Loader(raw_file, 5, "nope")
    with pytest.raises(ValueError, match="order"):
        Loader(raw_file, 5, "simclr_cifar", order="shuffled")
    with pytest.raises(ValueError, match="rank"):
        Loader(raw_file, 5, "simclr_cifar", rank=2, world_size=2)
    with pytest.raises(ValueError, match="indices"):
        Loader(raw_file, 5, "simclr_cifar", indices=[0, 99])
    assert len(resolve_views("multicrop")) == 8


def test_instance_negative_patch_is_as_noisy_as_the_positives(tmp_path):
    """Instance SimCLR: on flat-colour images every crop is the same colour, so whatever varies
    within a view is the Gaussian noise. The negative patch must carry the same noise as the
    positive pair; without it, "is there noise?" separates the negative (a shortcut that took
    the loss to 0 while the features learned little)."""
    items = [(np.full((32, 32, 3), 40 * (i % 5) + 30, np.uint8), 0) for i in range(8)]
    path = convert(items, tmp_path / "flat.jessl", workers=1, progress=False).path
    batch = _epoch(Loader(path, 8, "instance_cifar", seed=0, num_threads=1))[0]
    spread = [float(v.std(dim=(2, 3)).mean()) for v in batch.views]  # within-image, per channel
    assert spread[0] > 0.2  # noise std 0.1 on [0, 1] pixels, over a CIFAR std of ~0.25
    assert spread[2] == pytest.approx(spread[0], rel=0.15)
    assert spread[1] == pytest.approx(spread[0], rel=0.15)


def test_crop_grey_greys_one_branch_only(raw_file):
    """FFCV-SSL section 3.2: crops on both branches, greyscale on one. In uint8 output a grey
    view has R == G == B; the colourful test images never do otherwise."""
    batches = _epoch(Loader(raw_file, 25, "crop_grey_cifar", seed=0, num_threads=1,
                            output="uint8"))
    grey = [torch.cat([(v[:, 0] == v[:, 1]).flatten(1).all(1) for v in (b.views[i]
                                                                       for b in batches)])
            for i in range(2)]
    assert not grey[0].any() and 0 < int(grey[1].sum()) < 25  # p = 0.2 of 50 images



ODD_STATS = [View(size=24, mean=(0.5, 0.25, 0.125), std=(0.3, 0.2, 0.1))]


@pytest.mark.parametrize("views", ["simclr_cifar", "byol_cifar", ODD_STATS])
@pytest.mark.parametrize("channels_last", [False, True])
def test_uint8_normalised_on_the_device_is_the_float_output(jpeg_file, views, channels_last):
    """FFCV's habit on a GPU: bytes cross, the device normalises. `on_device` must give the
    float output's values bit for bit (the same float32 operations as the CPU's table), in the
    same memory format, so a run's losses do not depend on where it normalises."""
    def epoch(output):
        loader = Loader(jpeg_file, 16, views, seed=4, num_threads=2, output=output,
                        channels_last=channels_last)
        return loader, _epoch(loader, 1)
    (float_loader, floats), (loader, raw) = epoch("float"), epoch("uint8")
    assert len(floats) == len(raw) > 1
    for f, b in zip(floats, raw):
        assert all(v.dtype == torch.uint8 for v in b.views)
        moved = loader.on_device(b.views, "cpu")
        for vf, vm in zip(f.views, moved):
            assert vm.dtype == torch.float32 and torch.equal(vf, vm)
            assert vm.is_contiguous(memory_format=torch.channels_last) == channels_last
        # the float output's on_device only moves
        assert all(a is v for a, v in zip(float_loader.on_device(f.views, "cpu"), f.views))


def test_uint8_output_refuses_noise_and_auto_picks_by_device(raw_file):
    from jessl.data.loader import output_for
    with pytest.raises(ValueError, match="noise"):
        Loader(raw_file, 4, "noise_cifar", output="uint8")
    assert output_for("cpu", "simclr_cifar") == "float"  # the CPU trains on the floats
    assert output_for(torch.device("cuda"), "simclr_cifar") == "uint8"  # needs no GPU to say
    assert output_for("cuda", "noise_cifar") == "float"  # noise is added to the floats
    assert output_for("cuda", "instance_cifar") == "float"  # its negative is noise
