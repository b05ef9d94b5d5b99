"""ColorJitter + RandomGrayscale vs torchvision.transforms.v2.functional on uint8 tensors.

Tolerance: max |diff| <= 1 uint8 level per op and for random 4-op chains (measured: 0 for every
op and chain on this CPU; the 1 allows for torch builds without fused multiply-add in `_blend`).
"""

import itertools

import numpy as np
import pytest
import torchvision.transforms.v2.functional as F

from jessl.data.ops.color import (BRIGHTNESS, CONTRAST, HUE, NO_JITTER, SATURATION, SKIP,
                                  JitterParams, adjust_brightness, adjust_contrast, adjust_hue,
                                  adjust_saturation, color, rgb_to_grayscale, sample_color_jitter,
                                  sample_grayscale)
from tests.data.ops.helpers import from_torch, images, max_abs_diff, noise_image, to_torch

TOL = 1
OPS = [(adjust_brightness, F.adjust_brightness, [0.0, 0.2, 0.77, 1.3, 1.8]),
       (adjust_contrast, F.adjust_contrast, [0.0, 0.2, 0.77, 1.3, 1.8]),
       (adjust_saturation, F.adjust_saturation, [0.0, 0.2, 0.77, 1.3, 1.8]),
       (adjust_hue, F.adjust_hue, [-0.5, -0.2, -0.03, 0.0, 0.1, 0.37, 0.5])]
TV = {BRIGHTNESS: F.adjust_brightness, CONTRAST: F.adjust_contrast,
      SATURATION: F.adjust_saturation, HUE: F.adjust_hue}


@pytest.mark.parametrize("ours,theirs,values", OPS, ids=lambda v: getattr(v, "__name__", ""))
def test_single_adjustment_matches_torchvision(ours, theirs, values):
    for name, img in images():
        for v in values:
            v = float(np.float32(v))  # the kernel takes float32 factors, as the sampler makes
            out = ours(img, v)
            ref = from_torch(theirs(to_torch(img), v))
            assert max_abs_diff(out, ref) <= TOL, (name, v)


def test_grayscale_matches_torchvision_and_has_three_equal_channels():
    for name, img in images():
        out = rgb_to_grayscale(img)
        assert max_abs_diff(out, from_torch(F.rgb_to_grayscale(to_torch(img), 3))) <= TOL, name
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def torchvision_chain(img, params: JitterParams, grey: bool):
    t = to_torch(img)
    for op in params.order:
        if op != SKIP:
            t = TV[int(op)](t, float(params.factors[op]))
    if grey:
        t = F.rgb_to_grayscale(t, 3)
    return from_torch(t)


def test_random_chains_match_torchvision():
    rng = np.random.default_rng(1)
    for name, img in images():
        for _ in range(12):
            params = sample_color_jitter(rng, 0.8, 0.8, 0.8, 0.2, p=1.0)
            grey = sample_grayscale(rng, 0.3)
            out = color(img, params, grey, np.empty_like(img))
            assert max_abs_diff(out, torchvision_chain(img, params, grey)) <= TOL, (name, params)


def test_contrast_uses_the_mean_of_the_current_image():
    img = images()[0][1]
    f = np.array([1.6, 0.4, 1, 0], np.float32)
    outs = []
    for order in ([BRIGHTNESS, CONTRAST, SKIP, SKIP], [CONTRAST, BRIGHTNESS, SKIP, SKIP]):
        p = JitterParams(np.array(order, np.int64), f)
        outs.append(color(img, p, False, np.empty_like(img)))
        assert max_abs_diff(outs[-1], torchvision_chain(img, p, False)) <= TOL
    assert max_abs_diff(outs[0], outs[1]) > 10  # the order matters, so the reduction placement does


def test_in_place_equals_out_of_place():
    img = noise_image()
    p = sample_color_jitter(np.random.default_rng(5), p=1.0)
    out = color(img, p, True, np.empty_like(img))
    inplace = img.copy()
    color(inplace, p, True, inplace)
    assert np.array_equal(out, inplace)


def test_no_jitter_and_no_grey_is_identity():
    img = noise_image()
    assert np.array_equal(color(img, NO_JITTER, False, np.empty_like(img)), img)


def test_sampler_ranges_orders_and_probability():
    rng = np.random.default_rng(0)
    draws = [sample_color_jitter(rng, 0.4, 0.3, 0.2, 0.1, p=0.8) for _ in range(3000)]
    applied = [d for d in draws if (d.order != SKIP).any()]
    assert 0.76 < len(applied) / len(draws) < 0.84
    f = np.array([d.factors for d in applied])
    for col, (lo, hi) in enumerate([(0.6, 1.4), (0.7, 1.3), (0.8, 1.2), (-0.1, 0.1)]):
        assert f[:, col].min() >= lo - 1e-6 and f[:, col].max() <= hi + 1e-6
        assert f[:, col].min() < lo + 0.02 and f[:, col].max() > hi - 0.02  # the range is covered
    orders = {tuple(d.order) for d in applied}
    assert orders == set(itertools.permutations(range(4)))  # all 24 orders appear
    # p=0 never applies; a zero strength disables that op (torchvision passes None)
    assert all((sample_color_jitter(rng, p=0.0).order == SKIP).all() for _ in range(50))
    d = sample_color_jitter(rng, 0.4, 0, 0.2, 0, p=1.0)
    assert sorted(d.order.tolist()) == [SKIP, SKIP, BRIGHTNESS, SATURATION]


def test_sampler_is_deterministic_per_seed():
    a = [sample_color_jitter(np.random.default_rng(9), p=1.0) for _ in range(3)]
    assert all(np.array_equal(x.order, a[0].order) and np.array_equal(x.factors, a[0].factors) for x in a)
    b = sample_color_jitter(np.random.default_rng(10), p=1.0)
    assert not np.array_equal(a[0].factors, b.factors)


def test_grayscale_probability():
    rng = np.random.default_rng(0)
    assert 0.17 < np.mean([sample_grayscale(rng, 0.2) for _ in range(4000)]) < 0.23


def test_bad_params_raise():
    img = noise_image()
    dst = np.empty_like(img)
    for order, f in [([0, 0, SKIP, SKIP], [1, 1, 1, 0]), ([4, SKIP, SKIP, SKIP], [1, 1, 1, 0]),
                     ([0, SKIP, SKIP, SKIP], [-1, 1, 1, 0]), ([3, SKIP, SKIP, SKIP], [1, 1, 1, 0.7])]:
        with pytest.raises(ValueError):
            color(img, JitterParams(np.array(order), np.array(f, np.float32)), False, dst)
    with pytest.raises(ValueError):
        color(noise_image(channels=1), NO_JITTER, False, dst)
    with pytest.raises(ValueError):
        color(img, NO_JITTER, False, np.empty((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        sample_color_jitter(np.random.default_rng(0), hue=0.6)


def test_every_colour_matches_torchvision():
    # 65**3 colours (every 4th level and 255 per channel): each op meets every hue sector, grey
    # and saturated pixels; 274625 pixels is not a multiple of the kernel's block, so the last
    # block is partial
    levels = np.r_[0:256:4, 255].astype(np.uint8)
    img = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(65 * 65, 65, 3)
    for op, values in [(BRIGHTNESS, [0.3, 1.7]), (CONTRAST, [0.3, 1.7]), (SATURATION, [0.3, 1.7]),
                       (HUE, [-0.45, 0.05, 0.3])]:
        for v in values:
            f = np.array([1, 1, 1, 0], np.float32)
            f[op] = v
            p = JitterParams(np.array([op, SKIP, SKIP, SKIP], np.int64), f)
            assert max_abs_diff(color(img, p, False, np.empty_like(img)),
                                torchvision_chain(img, p, False)) <= TOL, (op, v)
    grey = from_torch(F.rgb_to_grayscale(to_torch(img), 3))
    assert max_abs_diff(rgb_to_grayscale(img), grey) <= TOL


def test_threads_share_nothing():
    # the kernel's scratch block is per thread: concurrent calls equal sequential ones
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(3)
    jobs = [(noise_image(90 + i, 70, seed=i), sample_color_jitter(rng, p=1.0)) for i in range(16)]
    expected = [color(img, p, True, np.empty_like(img)) for img, p in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: color(job[0], job[1], True, np.empty_like(job[0])), jobs))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
