"""Label-free measures of a representation's spectrum: RankMe and alpha-ReQ (Cookbook 3.7.2).

Both run in float64: the smallest singular values of float32 features are noise at ~1e-7 of the
largest, and the entropy and the log-log fit are sensitive to exactly that tail.
"""

from __future__ import annotations

import torch

from jessl.eval.knn import as_tensor

EPS = 1e-7  # added to each normalised singular value, RankMe (Garrido et al. 2023) / Cookbook eq. 17
FIT_RANGE = (5, 100)  # 0-based eigenvalue indices [start, stop): reptrix get_alpha (Agrawal et al.)


def rankme(embeddings, eps: float = EPS) -> float:
    """(N, D) -> exp(entropy of sigma / ||sigma||_1 + eps), in [1, min(N, D)]; Cookbook eq. 17."""
    z = as_tensor(embeddings, torch.float64)  # (N, D)
    s = torch.linalg.svdvals(z)  # (min(N, D),)
    p = s / s.sum() + eps  # uncentred, as the paper: a constant offset is a real dimension
    return float(torch.exp(-(p * p.log()).sum()))


def eigenspectrum(embeddings) -> torch.Tensor:
    """(N, D) -> eigenvalues of the feature covariance, descending, float64 (min(N, D),)."""
    z = as_tensor(embeddings, torch.float64)
    z = z - z.mean(dim=0)
    # squared singular values of the centred data are the covariance eigenvalues; forming the
    # D x D covariance first would square the condition number and lose the small eigenvalues
    return torch.linalg.svdvals(z).square() / max(z.shape[0] - 1, 1)


def alpha_req(embeddings, fit_range: tuple[int, int] = FIT_RANGE, rtol: float = 1e-10) -> float:
    """(N, D) -> alpha, the decay exponent of lambda_i ~ i^-alpha (Agrawal et al. 2022, alpha-ReQ).

    Ordinary least squares of log(lambda_i) on log(i) (i = 1-based rank) over the 0-based indices
    [fit_range[0], fit_range[1]), the range of the authors' reptrix code: the first few leading
    eigenvalues are skipped because the power law describes the tail, and the range is cut where
    eigenvalues fall below rtol * lambda_1 (zero up to round-off in rank-deficient features).
    reptrix weights each point by 1/i; plain least squares is used here, which gives the same
    alpha on an exact power law and weighs the tail more on a noisy one.
    """
    lam = eigenspectrum(embeddings)
    usable = int((lam > rtol * lam[0]).sum())
    start, stop = fit_range[0], min(fit_range[1], usable)
    if stop - start < 2:
        raise ValueError(f"alpha_req needs >= 2 eigenvalues in [{fit_range[0]}, {fit_range[1]}), "
                         f"only {usable} are non-zero (N, D = {tuple(as_tensor(embeddings).shape)})")
    x = torch.arange(start + 1, stop + 1, dtype=torch.float64).log()  # log rank
    y = lam[start:stop].log()
    x_c = x - x.mean()
    slope = (x_c * (y - y.mean())).sum() / x_c.square().sum()
    return float(-slope)
