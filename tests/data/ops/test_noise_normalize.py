"""Final conversion (ToDtype + Normalize, GaussianNoise fused) vs torchvision.

Tolerances: without noise the float32 output equals torchvision's exactly (max |diff| 0); the
fused noise path equals the separate `gaussian_noise` + torchvision Normalize within 1e-6.
torchvision draws its noise from torch's generator, so noise is checked by its statistics.
"""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from scipy import stats

from jessl.data.ops.noise import gaussian_noise, gaussian_noise_array, sample_gaussian_noise
from jessl.data.ops.normalize import MEAN, STD, normalize_lut, to_float_chw, to_uint8_chw
from tests.data.ops.helpers import images, noise_image, to_torch


def torchvision_normalize(img, mean=MEAN, std=STD):
    return F.normalize(F.to_dtype(to_torch(img), torch.float32, scale=True), list(mean), list(std)).numpy()


def test_to_float_chw_equals_torchvision_exactly():
    for name, img in images():
        out = to_float_chw(img, np.empty((3,) + img.shape[:2], np.float32))
        assert np.array_equal(out, torchvision_normalize(img)), name
        custom = to_float_chw(img, np.empty((3,) + img.shape[:2], np.float32), (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
        assert np.array_equal(custom, torchvision_normalize(img, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)))


def test_writes_into_a_slice_of_a_torch_batch():
    img = noise_image(8, 10)
    batch = torch.zeros(4, 3, 8, 10)
    to_float_chw(img, batch.numpy()[2], lut=normalize_lut())
    assert torch.equal(batch[2], torch.from_numpy(torchvision_normalize(img)))
    assert (batch[[0, 1, 3]] == 0).all()
    u8 = torch.zeros(2, 3, 8, 10, dtype=torch.uint8)
    to_uint8_chw(img, u8.numpy()[1])
    assert torch.equal(u8[1], to_torch(img))


def test_grey_source_is_replicated():
    grey = noise_image(6, 9, channels=1)
    out = to_float_chw(grey, np.empty((3, 6, 9), np.float32))
    rgb = np.repeat(grey, 3, axis=2)
    assert np.array_equal(out, torchvision_normalize(rgb))
    assert np.array_equal(to_uint8_chw(grey, np.empty((3, 6, 9), np.uint8)), rgb.transpose(2, 0, 1))


def test_bad_destinations_raise():
    img = noise_image(6, 9)
    for dst in (np.empty((3, 6, 8), np.float32), np.empty((6, 9, 3), np.float32),
                np.empty((3, 6, 9), np.float64), np.empty((3, 6, 18), np.float32)[:, :, ::2]):
        with pytest.raises(ValueError):
            to_float_chw(img, dst)
    with pytest.raises(ValueError):
        to_float_chw(img.astype(np.float32), np.empty((3, 6, 9), np.float32))
    with pytest.raises(ValueError):
        to_float_chw(img, np.empty((3, 6, 9), np.float32), std=(0.2, 0.0, 0.2))


def test_fused_noise_equals_separate_noise_then_torchvision_normalize():
    img = images()[0][1]
    seed = sample_gaussian_noise(np.random.default_rng(3), p=1.0)
    fused = to_float_chw(img, np.empty((3,) + img.shape[:2], np.float32), noise_seed=seed,
                         noise_mean=0.01, noise_sigma=0.1)
    x = F.to_dtype(to_torch(img), torch.float32, scale=True).contiguous().numpy()
    noisy = gaussian_noise(x, seed, np.empty_like(x), mean=0.01, sigma=0.1, clip=True)
    ref = F.normalize(torch.from_numpy(noisy), list(MEAN), list(STD)).numpy()
    assert np.abs(fused - ref).max() <= 1e-6


def test_noise_statistics_match_torchvision_gaussian_noise():
    x = np.full((3, 64, 64), 0.5, np.float32)  # mid-grey: clipping at 0.1 sigma is negligible
    ours = gaussian_noise(x, 1234, np.empty_like(x), mean=0.0, sigma=0.1) - 0.5
    torch.manual_seed(0)
    theirs = F.gaussian_noise(torch.from_numpy(x), mean=0.0, sigma=0.1).numpy() - 0.5
    assert abs(ours.mean()) < 0.003 and abs(ours.std() - 0.1) < 0.003
    assert stats.ks_2samp(ours.ravel()[:4000], theirs.ravel()[:4000]).pvalue > 1e-3
    assert stats.kstest(ours.ravel() / 0.1, "norm").pvalue > 1e-3
    # neighbouring elements are uncorrelated (the hash has no visible structure)
    flat = ours.ravel()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.03


def test_noise_is_deterministic_per_seed_and_clips():
    a = gaussian_noise_array(5, (3, 10, 10))
    assert np.array_equal(a, gaussian_noise_array(5, (3, 10, 10)))
    assert not np.array_equal(a, gaussian_noise_array(6, (3, 10, 10)))
    x = np.ones((3, 10, 10), np.float32)
    out = gaussian_noise(x, 5, np.empty_like(x), sigma=0.5)
    assert out.max() <= 1.0 and out.min() >= 0.0 and out.min() < 0.9
    assert np.array_equal(gaussian_noise(x, None, np.empty_like(x)), x)  # not drawn: copy
    img = noise_image(5, 7)
    quiet = to_float_chw(img, np.empty((3, 5, 7), np.float32), noise_seed=5, noise_sigma=0.0)
    assert np.array_equal(quiet, torchvision_normalize(img))


def test_noise_sampler():
    rng = np.random.default_rng(0)
    seeds = [sample_gaussian_noise(rng, p=0.5) for _ in range(2000)]
    assert 0.46 < np.mean([s is not None for s in seeds]) < 0.54
    drawn = [s for s in seeds if s is not None]
    assert len(set(drawn)) == len(drawn)
    assert sample_gaussian_noise(np.random.default_rng(8)) == sample_gaussian_noise(np.random.default_rng(8))
