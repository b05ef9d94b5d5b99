import numpy as np
import pytest
import torch

from jessl.eval import alpha_req, eigenspectrum, rankme


def orthonormal(rng, n, r, centred=False):
    """(n, r) with orthonormal columns; centred ones are also orthogonal to the ones vector."""
    g = rng.normal(size=(n, r))
    if centred:
        g -= g.mean(axis=0)
    return np.linalg.qr(g)[0]


@pytest.mark.parametrize("r", [1, 5, 20])
def test_equal_singular_values_give_exactly_r(r):
    rng = np.random.default_rng(r)
    z = orthonormal(rng, 300, r) @ orthonormal(rng, 64, r).T * 3.0  # rank r, sigma_i = 3
    # each of the 64 - r zero singular values still adds -eps log eps ~ 1.6e-6 to the entropy
    assert rankme(z) == pytest.approx(r, rel=1e-3)


@pytest.mark.parametrize("r", [1, 5, 20])
def test_random_rank_r_matrix_is_about_r(r):
    rng = np.random.default_rng(r)
    z = rng.normal(size=(2000, r)) @ rng.normal(size=(r, 64))
    assert 0.9 * r <= rankme(z) <= r * 1.001


def test_rankme_ignores_scale_accepts_tensors_and_reaches_full_rank():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 32)) @ np.diag(np.linspace(0.1, 2, 32))
    assert rankme(z) == pytest.approx(rankme(1e3 * z), rel=1e-9)
    assert rankme(torch.from_numpy(z).float()) == pytest.approx(rankme(z), rel=1e-4)
    assert rankme(orthonormal(rng, 500, 32)) == pytest.approx(32, rel=1e-4)  # eps shifts it
    assert rankme(z) < 32


def power_law_features(rng, alpha, n=400, d=128):
    """(n, d) whose covariance eigenvalues are exactly i^-alpha, i = 1..d."""
    lam = np.arange(1, d + 1, dtype=float) ** -alpha
    return orthonormal(rng, n, d, centred=True) * np.sqrt(lam * (n - 1)) @ orthonormal(rng, d, d).T


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_an_exact_power_law(alpha):
    z = power_law_features(np.random.default_rng(1), alpha)
    np.testing.assert_allclose(eigenspectrum(z).numpy(), np.arange(1, 129) ** -alpha, rtol=1e-6)
    assert alpha_req(z) == pytest.approx(alpha, abs=1e-6)


def test_alpha_req_on_sampled_gaussian_features():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20_000, 128)) * np.arange(1, 129) ** -0.5  # variances i^-1
    assert alpha_req(z) == pytest.approx(1.0, abs=0.05)


def test_alpha_req_fits_only_its_range():
    # leading eigenvalues far off the power law (indices 0..4) must not move the fit
    rng = np.random.default_rng(2)
    lam = np.arange(1, 129, dtype=float) ** -1.0
    lam[:5] *= 50.0
    z = orthonormal(rng, 400, 128, centred=True) * np.sqrt(lam * 399)
    assert alpha_req(z) == pytest.approx(1.0, abs=1e-6)
    assert alpha_req(z, fit_range=(0, 100)) > 1.2


def test_alpha_req_stops_at_the_rank_and_refuses_too_few_eigenvalues():
    rng = np.random.default_rng(3)
    low_rank = rng.normal(size=(300, 40)) @ rng.normal(size=(40, 128))
    assert np.isfinite(alpha_req(low_rank))  # zero eigenvalues past rank 40 are not fitted
    with pytest.raises(ValueError):
        alpha_req(rng.normal(size=(300, 6)))
