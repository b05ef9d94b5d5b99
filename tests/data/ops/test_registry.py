"""The same contract for every registered op: seeded sampling, pure deterministic apply, shapes."""

import pickle

import numpy as np
import pytest

from jessl.data.ops import F32_CHW, OPS, U8_HWC


def arrays(op, height=40, width=50):
    rng = np.random.default_rng(0)
    if op.src == U8_HWC:
        src = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        src = rng.random((3, height, width), dtype=np.float32)
    crop = op.sample is OPS["RandomResizedCrop"].sample or op.sample is OPS["CenterCrop"].sample
    shape = (24, 24) if crop else (height, width)
    dst = np.empty(shape + (3,), np.uint8) if op.dst == U8_HWC else np.empty((3,) + shape, np.float32)
    return src, dst


def test_registry_names_are_torchvision_classes():
    import torchvision.transforms.v2 as T
    assert set(OPS) == {"RandomResizedCrop", "CenterCrop", "RandomHorizontalFlip", "ColorJitter",
                        "RandomGrayscale", "GaussianBlur", "RandomSolarize", "GaussianNoise",
                        "Normalize"}
    assert all(hasattr(T, name) for name in OPS)
    assert all(op.sampling and op.src in (U8_HWC, F32_CHW) for op in OPS.values())


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_contract(name):
    op = OPS[name]
    src, dst = arrays(op)
    before = src.copy()
    p1 = op.sample(np.random.default_rng(11), *src.shape[:2]) if op.src == U8_HWC \
        else op.sample(np.random.default_rng(11), *src.shape[1:])
    p2 = op.sample(np.random.default_rng(11), *src.shape[:2]) if op.src == U8_HWC \
        else op.sample(np.random.default_rng(11), *src.shape[1:])
    assert pickle.dumps(p1) == pickle.dumps(p2)  # same seed, same parameters
    out1 = op.apply(src, p1, dst).copy()
    out2 = op.apply(src, p2, np.empty_like(dst))
    assert out1.shape == dst.shape and out1.dtype == dst.dtype
    assert np.array_equal(out1, out2)  # pure: same parameters, same output
    assert np.array_equal(src, before)  # src untouched
    assert np.isfinite(out1.astype(np.float64)).all()


@pytest.mark.parametrize("name", ["RandomHorizontalFlip", "RandomGrayscale", "GaussianBlur",
                                  "RandomSolarize", "GaussianNoise"])
def test_not_drawn_is_identity(name):
    op = OPS[name]
    src, dst = arrays(op)
    never = op.sample(np.random.default_rng(0), 40, 50, p=0.0)
    assert np.array_equal(op.apply(src, never, dst), src)
    always = op.sample(np.random.default_rng(0), 40, 50, p=1.0)
    assert not np.array_equal(op.apply(src, always, np.empty_like(dst)), src)
