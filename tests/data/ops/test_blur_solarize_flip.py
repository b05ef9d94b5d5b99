"""GaussianBlur, RandomSolarize, RandomHorizontalFlip vs torchvision.transforms.v2.functional.

Tolerances: blur max |diff| <= 1 level on < 0.1% of pixels (measured: 1 level on <= 0.007%;
OpenCV sums in a different order, and leaves out taps worth <= 1/4096 level); solarize and
flip are exact (0).
"""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from scipy import stats
from torchvision.transforms.v2.functional._misc import _get_gaussian_kernel1d

from jessl.data.ops.blur import gaussian_blur, gaussian_kernel1d, sample_gaussian_blur, trimmed
from jessl.data.ops.flip import horizontal_flip, sample_horizontal_flip
from jessl.data.ops.solarize import sample_solarize, solarize
from tests.data.ops.helpers import from_torch, images, max_abs_diff, noise_image, to_torch


@pytest.mark.parametrize("kernel_size", [3, 9, 23])
@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_blur_matches_torchvision(kernel_size, sigma):
    k = gaussian_kernel1d(kernel_size, sigma)
    assert np.abs(k - _get_gaussian_kernel1d(kernel_size, sigma, torch.float32, "cpu").numpy()).max() < 1e-7
    for name, img in images():
        out = gaussian_blur(img, kernel_size, sigma, np.empty_like(img))
        ref = from_torch(F.gaussian_blur(to_torch(img), [kernel_size, kernel_size], [sigma, sigma]))
        d = np.abs(out.astype(int) - ref.astype(int))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, (name, d.max(), (d > 0).mean())
        if sigma >= 0.7:
            assert max_abs_diff(out, img) > 20  # it does blur


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0, 2.0, 6.0])
def test_trimmed_kernel_leaves_out_only_what_it_may(sigma):
    k = gaussian_kernel1d(23, sigma)
    for tail in (1 / 4096, 1 / 64):
        kept = trimmed(k, tail)
        half = len(kept) // 2
        assert len(kept) % 2 == 1 and np.array_equal(kept, k[11 - half:12 + half])  # the middle
        assert 255 * (k.astype(np.float64).sum() - kept.astype(np.float64).sum()) <= tail
        if half < 11:  # one tap fewer would leave out more than allowed
            assert 255 * (k.astype(np.float64).sum() - k[12 - half:11 + half].sum()) > tail
    assert len(trimmed(k)) < 23 if sigma <= 2.0 else len(trimmed(k)) == 23
    assert len(trimmed(k, 0.0)) == 23 - 2 * int((k == 0).sum() // 2)  # only exact zeros go


def test_trimmed_blur_moves_a_level_on_rare_values():
    rng = np.random.default_rng(3)
    changed = total = 0
    for name, img in images():
        for sigma in rng.uniform(0.1, 2.0, 4):
            full = gaussian_blur(img, 23, sigma, np.empty_like(img), tail_levels=0)
            out = gaussian_blur(img, 23, sigma, np.empty_like(img))
            d = np.abs(out.astype(int) - full.astype(int))
            assert d.max() <= 1, (name, sigma)
            changed, total = changed + (d > 0).sum(), total + d.size
    assert changed / total < 1e-3


def test_blur_in_place_and_bad_sizes():
    img = noise_image()
    ref = gaussian_blur(img, 9, 1.5, np.empty_like(img))
    x = img.copy()
    gaussian_blur(x, 9, 1.5, x)
    assert np.array_equal(x, ref)
    with pytest.raises(ValueError):
        gaussian_blur(img, 8, 1.0, np.empty_like(img))  # even
    with pytest.raises(ValueError):
        gaussian_blur(img, 99, 1.0, np.empty_like(img))  # torch's reflect pad needs pad < side
    with pytest.raises(ValueError):
        gaussian_blur(img, 9, 0.0, np.empty_like(img))


def test_blur_sampler_is_uniform_on_sigma_and_respects_p():
    rng = np.random.default_rng(0)
    s = np.array([sample_gaussian_blur(rng, (0.1, 2.0), p=1.0) for _ in range(3000)])
    assert s.min() >= 0.1 and s.max() <= 2.0
    assert stats.kstest((s - 0.1) / 1.9, "uniform").pvalue > 1e-3
    hits = [sample_gaussian_blur(rng, p=0.5) is not None for _ in range(4000)]
    assert 0.47 < np.mean(hits) < 0.53
    assert sample_gaussian_blur(np.random.default_rng(4)) == sample_gaussian_blur(np.random.default_rng(4))


@pytest.mark.parametrize("threshold", [0, 1, 100, 127.5, 128, 255])
def test_solarize_matches_torchvision_exactly(threshold):
    for name, img in images():
        out = solarize(img, threshold, np.empty_like(img))
        ref = from_torch(F.solarize(to_torch(img), threshold))
        assert max_abs_diff(out, ref) == 0, name


def test_solarize_in_place_and_bad_threshold():
    img = noise_image()
    x = img.copy()
    solarize(x, 128, x)
    assert np.array_equal(x, np.where(img >= 128, 255 - img, img))
    with pytest.raises(ValueError):
        solarize(img, 300, np.empty_like(img))


def test_flip_matches_torchvision_in_and_out_of_place():
    for name, img in images() + [("odd", noise_image(5, 7))]:
        ref = from_torch(F.horizontal_flip(to_torch(img)))
        assert max_abs_diff(horizontal_flip(img, True, np.empty_like(img)), ref) == 0
        x = img.copy()
        horizontal_flip(x, True, x)
        assert np.array_equal(x, ref), name
        assert np.array_equal(horizontal_flip(img, False, np.empty_like(img)), img)


def test_bernoulli_samplers():
    rng = np.random.default_rng(0)
    assert 0.47 < np.mean([sample_horizontal_flip(rng, 0.5) for _ in range(4000)]) < 0.53
    assert 0.17 < np.mean([sample_solarize(rng, 0.2) for _ in range(4000)]) < 0.23
    assert not any(sample_solarize(rng, 0.0) for _ in range(100))
