"""Schedules against their equations, evaluated point by point with math (not numpy vectors)."""

import math

import numpy as np
import pytest

from jessl.schedules import cosine, one_cycle_f1clr, scaled_lr, warmup_cosine


def f1clr_point(t, lr_max, L, tw, bh, bl):
    """Kocyigit et al. 2023, eq. 8, one step at a time."""
    if t < tw:
        c = math.cos(math.pi * t / tw) + 1
        return lr_max - 0.5 * lr_max * c, bl + 0.5 * (bh - bl) * c
    c = math.cos(math.pi * (t - tw) / (L - tw)) + 1
    return 0.5 * lr_max * c, bh - 0.5 * (bh - bl) * c


@pytest.mark.parametrize("L,tw", [(100, 10), (480, 80), (37, 1), (2, 1)])
def test_f1clr_matches_eq8_everywhere(L, tw):
    lr, mom = one_cycle_f1clr(0.2, L, tw)
    assert lr.shape == mom.shape == (L,)
    for t in range(L):
        want_lr, want_m = f1clr_point(t, 0.2, L, tw, 0.95, 0.85)
        assert math.isclose(lr[t], want_lr, abs_tol=1e-12) and math.isclose(mom[t], want_m, abs_tol=1e-12)


def test_f1clr_shape_of_the_cycle():
    L, tw = 480, 80
    lr, mom = one_cycle_f1clr(0.16, L, tw, beta_high=0.9, beta_low=0.8)
    # Known points of eq. 8: start, middle of warm-up, peak, middle of annealing.
    assert lr[0] == 0 and math.isclose(mom[0], 0.9)
    assert math.isclose(lr[tw // 2], 0.08) and math.isclose(mom[tw // 2], 0.85)
    assert math.isclose(lr[tw], 0.16) and math.isclose(mom[tw], 0.8)
    assert math.isclose(lr[tw + (L - tw) // 2], 0.08) and math.isclose(mom[tw + (L - tw) // 2], 0.85)
    # Rises then falls; momentum anti-phased.
    assert np.all(np.diff(lr[: tw + 1]) > 0) and np.all(np.diff(lr[tw:]) < 0)
    assert np.all(np.diff(mom[: tw + 1]) < 0) and np.all(np.diff(mom[tw:]) > 0)
    assert lr.max() == lr[tw] and 0 < lr[-1] < 1e-5
    assert np.all((mom >= 0.8) & (mom <= 0.9))


def test_f1clr_warmup_is_fixed_when_the_run_grows():
    tw = 50
    short_lr, short_m = one_cycle_f1clr(0.2, 200, tw)
    long_lr, long_m = one_cycle_f1clr(0.2, 800, tw)
    assert np.argmax(short_lr) == np.argmax(long_lr) == tw
    np.testing.assert_array_equal(short_lr[:tw], long_lr[:tw])
    np.testing.assert_array_equal(short_m[:tw], long_m[:tw])
    # Only the annealing stretches: the long run is still higher at the short run's end.
    assert long_lr[199] > short_lr[199]


def test_f1clr_rejects_bad_lengths():
    for L, tw in [(10, 0), (10, 10), (10, 12)]:
        with pytest.raises(ValueError):
            one_cycle_f1clr(0.1, L, tw)


@pytest.mark.parametrize("L,tw,start", [(100, 10, 0.0), (57, 0, 0.0), (40, 40, 0.01), (25, 7, 1e-3)])
def test_warmup_cosine_matches_dino_formula(L, tw, start):
    base, final = 0.5, 1e-3
    s = warmup_cosine(base, final, L, tw, start_warmup=start)
    assert s.shape == (L,)
    for t in range(L):
        if t < tw:
            want = start + (base - start) * (t / (tw - 1) if tw > 1 else 1.0)
        else:
            want = final + 0.5 * (base - final) * (1 + math.cos(math.pi * (t - tw) / (L - tw)))
        assert math.isclose(s[t], want, abs_tol=1e-12), (t, s[t], want)
    if tw > 1:
        assert np.all(np.diff(s[:tw]) > 0) and s[tw - 1] == base
    if L - tw > 1:
        assert np.all(np.diff(s[tw:]) < 0) and s[-1] > final


@pytest.mark.parametrize("L", [1, 2, 10, 1000])
def test_cosine_endpoints_and_equation(L):
    s = cosine(0.996, 1.0, L)
    assert s.shape == (L,) and s[0] == 0.996
    if L > 1:
        assert math.isclose(s[-1], 1.0, abs_tol=1e-15) and np.all(np.diff(s) > 0)
        for t in (0, L // 3, L - 1):
            want = 1.0 - (1.0 - 0.996) * (math.cos(math.pi * t / (L - 1)) + 1) / 2  # BYOL section 3.2
            assert math.isclose(s[t], want, abs_tol=1e-15)
    # Decreasing schedules work the same way (weight decay 0.4 -> 0.04 for instance).
    d = cosine(0.4, 0.04, 11)
    assert math.isclose(d[5], 0.22) and np.all(np.diff(d) < 0)


def test_scaled_lr_rules():
    assert scaled_lr(0.3, 256) == 0.3
    assert math.isclose(scaled_lr(0.3, 1024), 1.2) and math.isclose(scaled_lr(0.3, 64), 0.075)
    assert math.isclose(scaled_lr(0.3, 1024, rule="sqrt"), 0.6)
    # SimCLR appendix B.1: 0.075 * sqrt(B) is the sqrt rule with 1.2 per 256.
    assert math.isclose(scaled_lr(1.2, 4096, rule="sqrt"), 0.075 * math.sqrt(4096))
    with pytest.raises(ValueError):
        scaled_lr(0.3, 256, rule="square")
