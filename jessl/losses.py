"""Joint-embedding SSL losses as stateless functions of embeddings.

State (EMA teachers, queues, DINO's centre) lives in the methods; these functions only read it.
Losses coupling samples across the batch take `gather`, a callable (B, D) -> (world*B, D) that the
trainer supplies (`jessl.distributed.gather_with_grad`); None means one process. With a gather,
every rank computes the loss of the global batch, so the value on each rank equals the
single-process value and DDP's gradient averaging gives the single-process gradient (the
convention is spelled out in `jessl.distributed`). Equations: SSL Cookbook (Balestriero et al.
2023) section 2 and the papers cited per function; tests/test_losses.py checks each against an
independent loop / float64 reference.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Gather = Callable[[Tensor], Tensor]


def _gather_pair(a: Tensor, b: Tensor, gather: Gather | None) -> tuple[Tensor, Tensor]:
    """Gather two (B, D) tensors with one collective instead of two."""
    if gather is None:
        return a, b
    both = gather(torch.cat([a, b], dim=1))  # (W*B, Da+Db)
    return both[:, : a.shape[1]], both[:, a.shape[1]:]


def _off_diagonal_sq_sum(m: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of a square matrix."""
    return m.pow(2).sum() - m.diagonal().pow(2).sum()


def info_nce(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,  # SimCLR paper, Table 5 (ImageNet); CIFAR runs often use 0.5
    gather: Gather | None = None,
    decoupled: bool = False,
) -> Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1): 2N-way softmax over cosine similarities, each of
    the 2N views an anchor whose positive is its other view; mean over the 2N anchors.
    z1, z2: (B, D), any scale (cosine similarity).

    `decoupled`: DCL (Yeh et al., ECCV 2022, eq. 6): the positive leaves the denominator,
    -s_pos / t + log sum over the 2N - 2 negatives of exp(s_neg / t)."""
    z1, z2 = _gather_pair(z1, z2, gather)  # (N, D) each
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    # A view is never its own negative: the cookbook's 1{k != i} in the NT-Xent denominator.
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])  # (2N,) row i's positive is its other view
    if decoupled:
        rows = torch.arange(2 * n, device=z.device)
        positive = logits[rows, targets]
        negatives = logits.index_put((rows, targets), logits.new_tensor(float("-inf")))
        return (torch.logsumexp(negatives, dim=1) - positive).mean()
    return F.cross_entropy(logits, targets)


class VICRegTerms(NamedTuple):
    """Total VICReg loss and its three unweighted terms (unpacks as a 4-tuple)."""

    loss: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor


def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,  # lambda, VICReg paper section 4.3
    var_weight: float = 25.0,  # mu, VICReg paper section 4.3
    cov_weight: float = 1.0,  # nu, VICReg paper section 4.3
    gamma: float = 1.0,  # target std, VICReg paper eq. 1
    eps: float = 1e-4,  # inside the sqrt, facebookresearch/vicreg main_vicreg.py
    gather: Gather | None = None,
) -> VICRegTerms:
    """VICReg (Bardes et al. 2022) computed as facebookresearch/vicreg main_vicreg.py does:
    invariance = mse(z1, z2); per branch std = sqrt(var_unbiased + eps), variance term
    mean(relu(gamma - std)) / 2, covariance term sum(off-diagonal cov^2) / D, both on the
    batch-centred global batch. z1, z2: (B, D).

    Unlike the reference, invariance is also taken on the gathered batch; its mean over ranks is
    the same, so gradients are identical and every rank logs the single-process value.
    """
    z1, z2 = _gather_pair(z1, z2, gather)  # (N, D) each
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(dim=0)  # (N, D)
        std = torch.sqrt(z.var(dim=0) + eps)  # (D,) unbiased, as torch.var in the reference
        variance = variance + F.relu(gamma - std).mean() / 2
        cov = z.T @ z / (n - 1)  # (D, D)
        covariance = covariance + _off_diagonal_sq_sum(cov) / d
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    return VICRegTerms(loss, invariance, variance, covariance)


def barlow_twins(
    z1: Tensor,
    z2: Tensor,
    lambd: float = 0.0051,  # facebookresearch/barlowtwins main.py --lambd default
    gather: Gather | None = None,
) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1-2): cross-correlation C of the batch-normalised
    views, sum_i (1 - C_ii)^2 + lambd * sum_{i!=j} C_ij^2. z1, z2: (B, D).

    Normalisation is BatchNorm1d(affine=False) in training mode as in the reference: biased
    variance, eps 1e-5 (torch's default).
    """
    z1, z2 = _gather_pair(z1, z2, gather)  # (N, D) each
    n = z1.shape[0]
    z1 = F.batch_norm(z1, None, None, training=True)  # (N, D)
    z2 = F.batch_norm(z2, None, None, training=True)
    c = z1.T @ z2 / n  # (D, D)
    on_diag = (c.diagonal() - 1).pow(2).sum()
    return on_diag + lambd * _off_diagonal_sq_sum(c)


def neg_cosine(p: Tensor, z: Tensor) -> Tensor:
    """BYOL / SimSiam regression loss 2 - 2 cos(p, sg(z)) (BYOL eq. 2), mean over the batch.
    p: (B, D) predictor output; z: (B, D) target, detached here so callers cannot forget."""
    p = F.normalize(p, dim=-1)
    z = F.normalize(z.detach(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def moco_info_nce(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: float = 0.2,  # MoCo v2 (Chen, Fan, Girshick, He 2020), up from MoCo v1's 0.07
) -> Tensor:
    """MoCo v2 InfoNCE (He et al. 2020 eq. 1): one positive key per query, the queue as negatives.
    q: (B, D) queries; k: (B, D) momentum-encoder keys; queue: (K, D). Keys and queue are
    detached (they come from the momentum encoder); all are L2-normalised here.

    No gather: the queue supplies the negatives; keys are gathered when they are enqueued.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    queue = F.normalize(queue.detach(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    neg = q @ queue.T  # (B, K)
    logits = torch.cat([pos, neg], dim=1) / temperature  # (B, 1+K)
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)


def _moco_v3_term(q: Tensor, k: Tensor, temperature: float, gather: Gather | None) -> Tensor:
    q, k = _gather_pair(q, k.detach(), gather)  # (N, D) each
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    logits = q @ k.T / temperature  # (N, N)
    targets = torch.arange(q.shape[0], device=q.device)
    # MoCo v3 scales by 2*tau so the gradient magnitude does not depend on tau (moco-v3 builder.py).
    return F.cross_entropy(logits, targets) * (2 * temperature)


def moco_v3(
    q1: Tensor,
    q2: Tensor,
    k1: Tensor,
    k2: Tensor,
    temperature: float = 1.0,  # facebookresearch/moco-v3 default --moco-t (ResNet-50); ViTs use 0.2
    gather: Gather | None = None,
) -> Tensor:
    """MoCo v3 (Chen, Xie, He 2021, Algorithm 1): symmetric ctr(q1, k2) + ctr(q2, k1) with
    in-batch negatives, each term cross-entropy * 2*tau. q: (B, D) predictor outputs of the base
    encoder; k: (B, D) momentum-encoder outputs (detached)."""
    return _moco_v3_term(q1, k2, temperature, gather) + _moco_v3_term(q2, k1, temperature, gather)


def dino_loss(
    student_logits_list: Sequence[Tensor],
    teacher_logits_list: Sequence[Tensor],
    center: Tensor,
    *,
    student_temp: float = 0.1,  # DINO paper section 3.1 / main_dino.py DINOLoss
    teacher_temp: float,  # from the teacher-temperature schedule (DINO: 0.04 warming to <= 0.07)
) -> Tensor:
    """DINO (Caron et al. 2021, eq. 3): cross-entropy between the centred, sharpened teacher
    distribution of each global view and the student distribution of every *other* view, averaged
    over those pairs. Student views i < len(teacher) must be the same crops as teacher view i.
    student_logits_list: V tensors (B, K); teacher_logits_list: G tensors (B, K); center: (K,) or
    (1, K). The centre is not updated here: call `update_center` with the teacher logits."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher_logits_list]  # (B, K)
    log_probs = [F.log_softmax(s / student_temp, dim=-1) for s in student_logits_list]  # (B, K)
    total = student_logits_list[0].new_zeros(())
    pairs = 0
    for iq, q in enumerate(targets):
        for v, lp in enumerate(log_probs):
            if v == iq:  # same crop seen by both: no learning signal, DINO skips it
                continue
            total = total + (-q * lp).sum(dim=-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(
    center: Tensor,
    teacher_logits: Tensor | Sequence[Tensor],
    momentum: float = 0.9,  # DINO main_dino.py --center_momentum default
    gather: Gather | None = None,
) -> Tensor:
    """New DINO centre: momentum * center + (1 - momentum) * mean of the teacher logits over all
    views and (with gather) all ranks. teacher_logits: (G*B, K) or a list of (B, K). Returns a new
    (1, K) tensor; the caller stores it."""
    if not isinstance(teacher_logits, Tensor):
        teacher_logits = torch.cat(list(teacher_logits), dim=0)  # (G*B, K)
    if gather is not None:
        teacher_logits = gather(teacher_logits)
    batch_center = teacher_logits.mean(dim=0, keepdim=True)  # (1, K)
    return center * momentum + batch_center * (1 - momentum)


def nearest_neighbour(z: Tensor, support_set: Tensor) -> Tensor:
    """For each row of z (B, D), the support-set row (Q, D) of highest cosine similarity (equal
    to the L2 nearest neighbour of normalised vectors, NNCLR eq. 2). Returns normalised (B, D),
    no gradient (argmax is not differentiable; NNCLR treats the neighbour as a target)."""
    with torch.no_grad():
        support = F.normalize(support_set, dim=1)
        idx = (F.normalize(z, dim=1) @ support.T).argmax(dim=1)  # (B,)
        return support[idx]


def nnclr(
    z1: Tensor,
    z2: Tensor,
    support_set: Tensor,
    temperature: float = 0.1,  # NNCLR paper section 4 (implementation details)
    gather: Gather | None = None,
    *,
    p1: Tensor | None = None,
    p2: Tensor | None = None,
) -> Tensor:
    """NNCLR (Dwibedi et al. 2021, eq. 2, symmetrised): the positive of view 1 is its nearest
    neighbour NN(z1) in the support set, contrasted against view 2 of every sample in the batch,
    and vice versa; 0.5 * (CE(NN(z1) . p2) + CE(NN(z2) . p1)). z1, z2: (B, D) projections used for
    the lookup; p1, p2: (B, D) predictor outputs (NNCLR section 3.3) for the other side, default
    z1, z2; support_set: (Q, D), e.g. from `jessl.queues`. Gradient reaches p only."""
    p1 = z1 if p1 is None else p1
    p2 = z2 if p2 is None else p2
    return 0.5 * (nnclr_one_way(z1, p2, support_set, temperature, gather)
                  + nnclr_one_way(z2, p1, support_set, temperature, gather))


def nnclr_one_way(z: Tensor, p: Tensor, support_set: Tensor, temperature: float,
                  gather: Gather | None = None) -> Tensor:
    """One direction of `nnclr` (NNCLR eq. 2): CE over the batch of NN(z) . p, the neighbour of
    one view's projection z (B, D) the positive of the other view's prediction p (B, D), every
    other sample's prediction a negative. The neighbour is the target: only p gets a gradient."""
    nn = nearest_neighbour(z, support_set)  # (B, D)
    nn, p = _gather_pair(nn, p, gather)  # (N, D)
    p = F.normalize(p, dim=1)
    targets = torch.arange(nn.shape[0], device=nn.device)
    return F.cross_entropy(nn @ p.T / temperature, targets)  # logits (N, N)


def instance_info_nce(z_anchor: Tensor, z_positive: Tensor, z_negative: Tensor, temperature: float) -> Tensor:
    """Instance SimCLR (Bordes et al. 2023, "Towards democratizing JE-SSL", section 3.4): each
    image's only negative is a random patch of that same image; no other image enters its loss.

    The paper gives no equation; our reading is NT-Xent restricted to the image's own three views:
    the two Gaussian-noise views are each other's positive and each is an anchor (as in SimCLR),
    and the patch is the single negative in both denominators,
      l(a, p, n) = -log e^{s(a,p)/t} / (e^{s(a,p)/t} + e^{s(a,n)/t}),  s = cosine similarity,
    loss = mean over images of (l(a, p, n) + l(p, a, n)) / 2. The patch is never an anchor (it has
    no positive). z_anchor, z_positive, z_negative: (B, D). No gather: nothing couples images, so
    DDP's averaging of per-rank means is already exact. temperature: the paper does not state one;
    the method's config chooses it (SimCLR's 0.1 is a reasonable start).
    """
    a = F.normalize(z_anchor, dim=1)  # (B, D)
    p = F.normalize(z_positive, dim=1)
    n = F.normalize(z_negative, dim=1)
    s_ap = (a * p).sum(dim=1) / temperature  # (B,)
    s_an = (a * n).sum(dim=1) / temperature
    s_pn = (p * n).sum(dim=1) / temperature
    loss_a = torch.logsumexp(torch.stack([s_ap, s_an], dim=1), dim=1) - s_ap  # (B,)
    loss_p = torch.logsumexp(torch.stack([s_ap, s_pn], dim=1), dim=1) - s_ap
    return 0.5 * (loss_a.mean() + loss_p.mean())


# --- SwAV (Caron et al. 2020): Sinkhorn-Knopp codes, swapped prediction ----------------------

AllReduce = Callable[[Tensor], Tensor]  # a sum over processes (jessl.distributed.all_reduce_sum)


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor,
    epsilon: float = 0.05,  # SwAV appendix A.1 "for all runs"; main_swav.py --epsilon
    iterations: int = 3,  # SwAV section 3.1: "only 3 iterations is fast and sufficient"
    all_reduce: AllReduce | None = None,
) -> Tensor:
    """SwAV's codes (Caron et al. 2020, eq. 3-5, algorithm of appendix A.1): the soft assignment
    of N samples to K prototypes maximising Tr(Q^T C^T Z) + epsilon H(Q) over the transportation
    polytope (each prototype gets 1/K of the mass, each sample 1/N), found by `iterations`
    Sinkhorn-Knopp row and column rescalings of exp(scores / epsilon). scores: (N, K) prototype
    scores z . c of unit vectors; returns (N, K) codes, each row summing to 1.

    With all_reduce, the N rows are this process's share of the samples and the codes equal the
    single-process codes of all processes' rows: the total, the sample count and the per-prototype
    sums are summed over processes (main_swav.py's distributed_sinkhorn, SwAV appendix A.1: only
    these statistics travel, never the features)."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    # exp((s - 1) / eps) rather than exp(s / eps): the factor e^(-1/eps) cancels in the first
    # normalisation, and scores of unit vectors are <= 1, so nothing overflows. In place from
    # here on (a new tensor): 2.5x faster at 4096 x 3000 on 2 cores than fresh tensors per step
    q = scores.sub(1).div_(epsilon).exp_()  # (N, K); the paper's Q is its transpose
    stats = torch.stack([q.sum(), q.new_tensor(q.shape[0])])  # total mass, samples
    if all_reduce is not None:
        stats = all_reduce(stats)
    total, n = stats[0], stats[1]
    k = q.shape[1]
    q.div_(total)
    for _ in range(iterations):
        protos = q.sum(dim=0)  # (K,) each prototype's mass over all samples
        if all_reduce is not None:
            protos = all_reduce(protos)
        q.div_(protos.mul_(k))  # each prototype: 1/K
        q.div_(q.sum(dim=1, keepdim=True).mul_(n))  # each sample: 1/N (its row is local)
    return q.div_(q.sum(dim=1, keepdim=True))  # (N, K), rows sum to 1; float32 for half input


def swav_loss(
    logits: Sequence[Tensor],
    codes: Sequence[Tensor],
    temperature: float = 0.1,  # tau, SwAV appendix A.1 "for all runs"; main_swav.py --temperature
) -> Tensor:
    """SwAV's swapped prediction with multi-crop (Caron et al. 2020, eq. 2 and 6): the code q_i
    of each global view i is predicted from every other view v, l(z_v, q_i) = -sum_k q_i(k)
    log softmax(z_v . c / tau)(k), averaged over samples and over those (i, v) pairs, as
    main_swav.py divides each global view's sum by V - 1 and then by the number of global views.
    logits: V tensors (B, K) of prototype scores z_v . c, the global views first; codes: G
    tensors (B, K), the Sinkhorn codes of views 0..G-1, used as fixed targets (detached here).
    Views G.. (the local crops) only predict; they are never targets."""
    log_probs = [F.log_softmax(s / temperature, dim=-1) for s in logits]  # (B, K)
    terms = [-(q.detach() * lp).sum(dim=-1).mean()
             for i, q in enumerate(codes) for v, lp in enumerate(log_probs) if v != i]
    return torch.stack(terms).mean()
