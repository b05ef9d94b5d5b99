"""RandomResizedCrop / CenterCrop: sampler vs torchvision's get_params, kernel vs F.resized_crop.

Tolerances (vs torchvision 0.29 `F.resized_crop(..., antialias=True)`, bilinear, uint8):
- numba kernel: max |diff| <= 1 level, mean <= 0.01 (measured: max 1, mean 0.003 on the tench
  photo; torch rounds its filter weights to int16, we keep float32).
- cv2 upscale (INTER_LINEAR, what `auto` uses where no axis shrinks): max <= 1, mean <= 0.25
  (measured 1, 0.19).
- cv2 downscale (INTER_AREA, a box filter, opt-in only): max <= 32, mean <= 2.5 (measured 25, 1.7).
"""


import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from jessl.data.ops.crop import center_crop_box, resized_crop, sample_resized_crop
from tests.data.ops.helpers import from_torch, max_abs_diff, noise_image, tench, to_torch

# (top, left, h, w) -> (out_h, out_w): big and small shrink, mixed, upscale, tiny outputs
CASES = [((10, 20, 300, 400), (224, 224)), ((0, 0, 375, 500), (32, 32)),
         ((50, 60, 100, 90), (224, 224)), ((5, 5, 200, 150), (96, 96)),
         ((0, 0, 375, 500), (112, 150)), ((3, 4, 20, 30), (224, 224)), ((7, 9, 40, 300), (64, 64))]


def reference(img, box, size, flip=False):
    t = F.resized_crop(to_torch(img), *box, list(size), antialias=True)
    return from_torch(F.horizontal_flip(t) if flip else t)


def diffs(out, ref):
    d = np.abs(out.astype(np.int32) - ref.astype(np.int32))
    return int(d.max()), float(d.mean())


@pytest.mark.parametrize("box,size", CASES)
@pytest.mark.parametrize("backend", ["numba", "auto"])
def test_resized_crop_matches_torchvision_on_a_photo(box, size, backend):
    img = tench()
    out = resized_crop(img, box, np.empty(size + (3,), np.uint8), backend=backend)
    worst, mean = diffs(out, reference(img, box, size))
    # auto hands pure upscales to cv2 INTER_LINEAR, whose 11-bit weights round differently
    assert worst <= 1 and mean <= (0.01 if backend == "numba" else 0.25), (worst, mean)


@pytest.mark.parametrize("flip", [False, True])
def test_resized_crop_matches_torchvision_on_noise_with_flip(flip):
    img = noise_image(90, 70)
    for box, size in [((3, 2, 80, 61), (32, 32)), ((10, 10, 20, 25), (50, 40)), ((0, 0, 90, 70), (90, 70))]:
        out = resized_crop(img, box, np.empty(size + (3,), np.uint8), flip=flip, backend="numba")
        worst, mean = diffs(out, reference(img, box, size, flip))
        assert worst <= 1 and mean <= 0.05, (box, size, worst, mean)  # measured <= 0.04


def test_cv2_backend_tolerances():
    img = tench()
    up = resized_crop(img, (50, 60, 100, 90), np.empty((224, 224, 3), np.uint8), flip=True, backend="cv2")
    assert diffs(up, reference(img, (50, 60, 100, 90), (224, 224), flip=True))[0] <= 1
    down = resized_crop(img, (0, 0, 375, 500), np.empty((32, 32, 3), np.uint8), backend="cv2")
    worst, mean = diffs(down, reference(img, (0, 0, 375, 500), (32, 32)))
    assert worst <= 32 and mean <= 2.5, (worst, mean)


@pytest.mark.parametrize("backend", ["numba", "cv2"])
def test_grey_source_gives_three_equal_channels(backend):
    grey = np.ascontiguousarray(tench()[:, :, 1:2])
    box, size = (20, 30, 90, 120), (96, 128)  # an upscale, so cv2 is exact too
    out = resized_crop(grey, box, np.empty(size + (3,), np.uint8), flip=True, backend=backend)
    assert out.shape == size + (3,)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    ref = reference(grey, box, size, flip=True)[..., 0]
    assert max_abs_diff(out[..., 0], ref) <= 1


@pytest.mark.parametrize("box", [(-1, 0, 10, 10), (0, -1, 10, 10), (0, 0, 0, 10), (0, 0, 10, 0),
                                 (40, 0, 10, 10), (0, 50, 10, 10), (0, 0, 49, 10), (0, 0, 10, 51),
                                 (0.5, 0, 10, 10), (0, 0, 10)])
@pytest.mark.parametrize("backend", ["numba", "cv2"])
def test_bad_boxes_raise(box, backend):
    img = noise_image(48, 50)
    dst = np.full((8, 8, 3), 7, np.uint8)
    with pytest.raises(ValueError):
        resized_crop(img, box, dst, backend=backend)
    assert (dst == 7).all()  # nothing written


def test_bad_arrays_raise():
    img = noise_image(20, 20)
    box = (0, 0, 10, 10)
    with pytest.raises(ValueError):
        resized_crop(img, box, np.empty((8, 8, 1), np.uint8))  # views are 3-channel
    with pytest.raises(ValueError):
        resized_crop(img, box, np.empty((8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        resized_crop(img, box, np.empty((8, 16, 3), np.uint8)[:, ::2])  # not contiguous
    with pytest.raises(ValueError):
        resized_crop(img.astype(np.int16), box, np.empty((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        resized_crop(img, box, img)  # overlapping
    with pytest.raises(ValueError):
        resized_crop(img, box, np.empty((8, 8, 3), np.uint8), backend="pil")


# --- sampling ------------------------------------------------------------------------------------

def draws_ours(n, height, width, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return np.array([sample_resized_crop(rng, height, width, **kw) for _ in range(n)])


def draws_torchvision(n, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    torch.manual_seed(0)
    img = torch.empty(3, height, width)
    return np.array([RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)])


@pytest.mark.parametrize("height,width", [(375, 500), (32, 32)])
def test_sampler_distribution_matches_torchvision(height, width):
    n = 3000
    ours, theirs = draws_ours(n, height, width), draws_torchvision(n, height, width)
    for boxes in (ours, theirs):
        top, left, h, w = boxes.T
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    log_aspect = lambda b: np.log(b[:, 3] / b[:, 2])  # noqa: E731
    centre_y = lambda b: (b[:, 0] + b[:, 2] / 2) / height  # noqa: E731
    for stat in (area, log_aspect, centre_y):
        p = stats.ks_2samp(stat(ours), stat(theirs)).pvalue
        assert p > 1e-3, (stat, p)


def test_sampler_ks_detects_a_wrong_scale():
    # the distribution test above has power: a different scale range is rejected
    ours = draws_ours(3000, 375, 500, scale=(0.2, 1.0))
    theirs = draws_torchvision(3000, 375, 500)
    area = lambda b: b[:, 2] * b[:, 3]  # noqa: E731
    assert stats.ks_2samp(area(ours), area(theirs)).pvalue < 1e-6


@pytest.mark.parametrize("height,width,ratio", [(100, 100, (5.0, 6.0)), (100, 100, (0.1, 0.2)),
                                                 (30, 400, (0.75, 1.333)), (400, 30, (0.75, 1.333))])
def test_sampler_fallback_equals_torchvision(height, width, ratio):
    # a scale above 1 makes every try fail, so the central fallback (no randomness) decides
    scale = (5.0, 6.0)
    ours = sample_resized_crop(np.random.default_rng(0), height, width, scale, ratio)
    theirs = RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), list(ratio))
    assert ours == tuple(theirs)


def test_sampler_same_seed_same_boxes_and_it_matters():
    a = draws_ours(50, 375, 500, seed=3)
    assert np.array_equal(a, draws_ours(50, 375, 500, seed=3))
    assert not np.array_equal(a, draws_ours(50, 375, 500, seed=4))


# --- evaluation crop -----------------------------------------------------------------------------

def test_center_crop_box_without_resampling_is_torchvision_exact():
    img = np.ascontiguousarray(tench()[:300, :256])  # shorter side already 256: no resize
    box = center_crop_box(300, 256, 224, 256)
    out = resized_crop(img, box, np.empty((224, 224, 3), np.uint8))
    ref = from_torch(T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224)])(to_torch(img)))
    assert max_abs_diff(out, ref) == 0


@pytest.mark.parametrize("transpose", [False, True])
def test_center_crop_box_is_close_to_the_two_step_pipeline(transpose):
    img = tench()
    img = np.ascontiguousarray(img.transpose(1, 0, 2)) if transpose else img
    height, width = img.shape[:2]
    top, left, h, w = center_crop_box(height, width, 224, 256)
    # the box is the resized image's centre crop mapped back: 224/256 of the shorter side
    assert abs(min(h, w) - 224 / 256 * min(height, width)) <= 0.5
    assert abs((top + h / 2) - height / 2) <= 1 and abs((left + w / 2) - width / 2) <= 1
    out = resized_crop(img, (top, left, h, w), np.empty((224, 224, 3), np.uint8))
    ref = from_torch(T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224)])(to_torch(img)))
    # one resampling instead of torchvision's two, and a box rounded to whole source pixels
    worst, mean = diffs(out, ref)
    assert mean <= 3.0, mean  # measured 2.0


def test_the_loaders_center_box_is_center_crop_box():
    """The loader's evaluation views (the production sampler's center mode) take exactly the
    box of center_crop_box, torchvision's Resize + CenterCrop rounding, for every shape."""
    from jessl.data.ops.crop import SPEC
    from jessl.data.ops.spec import draw
    rng = np.random.default_rng(0)
    shapes = [(375, 500), (500, 375), (256, 256), (257, 911), (480, 640), (64, 64), (33, 47)]
    shapes += [tuple(int(v) for v in rng.integers(32, 1200, 2)) for _ in range(200)]
    for height, width in shapes:
        for size, resize in [(224, 256), (32, 32), (28, 32), (96, 110), (32, 36)]:
            if size > resize:
                continue
            cfg = (1, size, size, 0.0, 0.0, 0.0, 0.0, resize)
            ints, _ = draw(SPEC, rng, height, width, cfg)
            got = tuple(int(v) for v in ints)
            assert got == center_crop_box(height, width, size, resize), (height, width, size)


def test_center_crop_larger_than_resize_raises():
    with pytest.raises(ValueError):
        center_crop_box(100, 100, 300, 256)


def test_numba_results_do_not_depend_on_earlier_calls_or_threads():
    # the kernel's buffers are per-thread scratch reused across calls of any size
    from concurrent.futures import ThreadPoolExecutor
    img = tench()
    jobs = [((i, 2 * i, 300 - 7 * i, 400 - 11 * i), (224 - 9 * i, 224 + 5 * i), i % 2 == 1)
            for i in range(12)]

    def run(job):
        box, size, flip = job
        return resized_crop(img, box, np.empty(size + (3,), np.uint8), flip=flip, backend="numba")

    first = [run(job) for job in jobs]
    again = [run(job) for job in reversed(jobs)][::-1]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(run, jobs))
    for job, a, b, c in zip(jobs, first, again, threaded):
        assert np.array_equal(a, b) and np.array_equal(a, c), job
        assert diffs(a, reference(img, *job))[0] <= 1, job
