"""The numba parameter sampler: NumPy's Philox bit for bit, torchvision's distributions."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from jessl.data import sampler as S
from jessl.data.ops import blur, color, crop, flip, noise, solarize
from jessl.data.ops.philox import U64, numpy_uniforms, uniforms_kernel
from jessl.data.views import PRESETS, View

SKIP = color.SKIP


def test_uniforms_are_numpys_philox_stream():
    raw, out = np.empty(48, np.uint64), np.empty(48)
    for key, record, view in [((0, 0), 0, 0), ((7, 3), 11, 1), ((2**63 + 5, 9), 2**40, 7)]:
        uniforms_kernel(U64(key[0]), U64(key[1]), record, view, raw, out)
        numpy = np.random.Generator(np.random.Philox(
            key=np.array(key, np.uint64), counter=np.array([0, 0, record, view], np.uint64)))
        np.testing.assert_array_equal(out, numpy.random(48))


def test_numpys_own_philox_and_a_short_raw():
    raw, out = np.empty(40, np.uint64), np.empty(37)
    uniforms_kernel(U64(5), U64(2), 9, 3, raw, out)
    plain = np.empty(37)
    numpy_uniforms(U64(5), U64(2), 9, 3, None, plain)
    np.testing.assert_array_equal(out, plain)
    with pytest.raises(ValueError, match="raw must hold"):  # 37 uniforms take 10 blocks of 4
        uniforms_kernel(U64(5), U64(2), 9, 3, np.empty(37, np.uint64), out)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_plain_sampler_draws_the_compiled_ones_numbers(preset):
    # the cold start draws with the plain twin until the compiled kernel is on disk: same bits
    rng = np.random.default_rng(len(preset))
    records = rng.integers(0, 2**40, 150)
    heights, widths = rng.integers(1, 900, 150), rng.integers(1, 900, 150)
    cfgs = S.view_configs(PRESETS[preset]())
    compiled = S.sample_chunk(2**63 + 7, 4, records, heights, widths, cfgs)
    plain = S.sample_chunk(2**63 + 7, 4, records, heights, widths, cfgs, compiled=False)
    assert S.JIT  # the suite runs compiled: the comparison compares two paths
    np.testing.assert_array_equal(plain[0], compiled[0])
    np.testing.assert_array_equal(plain[1], compiled[1])


def _draw(view, n=4000, h=300, w=400, seed=0, epoch=0):
    """The first view's parameters of n records, by op (`Params`)."""
    ints, floats = S.sample_chunk(seed, epoch, np.arange(n), np.full(n, h), np.full(n, w),
                                  S.view_configs([view]))
    return S.view_params(ints, floats, 0)


def _box(p):
    return [p.ints(crop.SPEC)[:, getattr(crop.INTS, k)] for k in ("top", "left", "h", "w")]


def test_crop_follows_torchvision_distribution():
    from torchvision.transforms import v2
    top, left, h, w = _box(_draw(View(size=32)))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and \
        (left + w <= 400).all()
    torch.manual_seed(0)
    img = torch.zeros(3, 300, 400)
    ref = np.array([v2.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
                    for _ in range(4000)])
    for ours, theirs in [(h * w / 120_000, ref[:, 2] * ref[:, 3] / 120_000),
                         (np.log(w / h), np.log(ref[:, 3] / ref[:, 2])),
                         (top + h / 2, ref[:, 0] + ref[:, 2] / 2)]:
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_crop_detects_a_wrong_scale():
    _, _, h, w = _box(_draw(View(size=32, scale=(0.5, 1.0))))
    assert (h * w / 120_000).min() > 0.45
    _, _, h, w = _box(_draw(View(size=32)))
    assert (h * w / 120_000).min() < 0.1


def test_fallback_central_crop_on_extreme_aspect():
    p = _draw(View(size=32, scale=(0.9, 1.0), ratio=(1.0, 1.0)), n=50, h=10, w=1000)
    assert (np.stack(_box(p), 1) == [0, 495, 10, 10]).all()


def test_coins_factors_and_orders():
    view = View(size=32, flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.3,
                saturation=0.2, hue=0.1, grey_p=0.2, blur_p=0.5, solarize_p=0.1, noise_p=0.3)
    d = _draw(view, n=6000)
    order = d.ints(color.JITTER_SPEC)
    applied = (order != SKIP).any(1)
    on = {spec.name: d.ints(spec)[:, 0] for spec in (flip.SPEC, color.GREY_SPEC, blur.SPEC,
                                                      solarize.SPEC, noise.SPEC)}
    for got, p in [(on["RandomHorizontalFlip"], 0.5), (applied, 0.8),
                   (on["RandomGrayscale"], 0.2), (on["GaussianBlur"], 0.5),
                   (on["RandomSolarize"], 0.1), (on["GaussianNoise"], 0.3)]:
        assert abs(got.mean() - p) < 4 * math.sqrt(p * (1 - p) / 6000)
    orders = {tuple(o) for o in order[applied].tolist()}
    assert len(orders) == 24
    f = d.floats(color.JITTER_SPEC)
    for col, lo, hi in [(0, 0.6, 1.4), (1, 0.7, 1.3), (2, 0.8, 1.2), (3, -0.1, 0.1)]:
        assert lo <= f[:, col].min() < lo + 0.01 and hi - 0.01 < f[:, col].max() <= hi
    sigma = d.floats(blur.SPEC)[:, blur.FLOATS.sigma]
    assert 0.1 <= sigma.min() and sigma.max() <= 2.0
    assert len(set(d.ints(noise.SPEC)[:, noise.INTS.seed].tolist())) == 6000


def test_disabled_ops_and_magnitude():
    d = _draw(View(size=32, jitter_p=1.0, brightness=0.0, contrast=0.0, saturation=0.4,
                   hue=0.0), n=200)
    ops = d.ints(color.JITTER_SPEC)
    assert ((ops == 2).sum(1) == 1).all() and ((ops == SKIP).sum(1) == 3).all()
    strong = View(size=32, jitter_p=1.0, grey_p=1.0, solarize_p=1.0, blur_p=1.0)
    d = _draw(strong.scaled(0.0, scales="photometric"), n=200)
    assert (d.ints(color.JITTER_SPEC) == SKIP).all()
    for spec in (color.GREY_SPEC, blur.SPEC, solarize.SPEC, noise.SPEC):
        assert (d.ints(spec) == 0).all()


def test_same_record_same_params_whatever_the_chunk():
    view = View(size=32, jitter_p=0.8, grey_p=0.2)
    a = S.sample_chunk(3, 1, np.array([5, 9, 2]), np.full(3, 50), np.full(3, 60), S.view_configs([view, view]))
    b = S.sample_chunk(3, 1, np.array([9]), np.full(1, 50), np.full(1, 60), S.view_configs([view, view]))
    np.testing.assert_array_equal(a[0][1], b[0][0])
    np.testing.assert_array_equal(a[1][1], b[1][0])
    assert not np.array_equal(a[0][0, 0], a[0][0, 1])  # the two views draw apart
    c = S.sample_chunk(3, 2, np.array([9]), np.full(1, 50), np.full(1, 60), S.view_configs([view, view]))
    assert not np.array_equal(b[0], c[0])  # another epoch, other views


@pytest.mark.parametrize("h, w", [(375, 500), (32, 32), (1, 700)])
def test_center_and_full_boxes(h, w):
    top, left, bh, bw = (c[0] for c in _box(_draw(View(size=24, crop="center", flip_p=0.0),
                                                  n=3, h=h, w=w)))
    assert 0 <= top and 0 <= left and top + bh <= h and left + bw <= w and bh >= 1 and bw >= 1
    assert [c[0] for c in _box(_draw(View(size=24, crop="full"), n=3, h=h, w=w))] == [0, 0, h, w]
