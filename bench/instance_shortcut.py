"""Is instance SimCLR's task already solved before training? And by which cue?

Study 5 (docs/studies.md) trains instance SimCLR (FFCV-SSL section 3.4): two Gaussian-noise
copies of the whole image are the positive pair, one random patch of the same image, resized
up to the view size, the only negative. On 32 px CIFAR images its loss falls to ~0.001 within
two epochs while the features end below random init. For each patch size (the negative view's
area range: study 5b's three) this draws the `instance_cifar` views of the first `--images`
test images with the loader (seed 0, noise included, as training sees them) and measures:

  * the instance loss (`jessl.losses.instance_info_nce`, temperature 0.1) and the cosine
    similarities of the *randomly initialised* network (small_cnn + the method's projector,
    seed 0): how much is left to learn before the first step (chance: ln 2 = 0.693);
  * one low-level cue, blur: the share of each view's grey spectral energy above half the
    Nyquist frequency, and its AUC for "positive view vs patch" (0.5 = no cue). A 32 px
    image's patch is magnified 2-7x by the resize, which blurs it; the noise, added after
    the resize to every view, may hide that.

    python bench/instance_shortcut.py [--data cifar10_test.jessl] [--images 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the negative patch's area range: study 5b's three (small, the preset's, large)
PATCHES = ("0.02:0.08", "0.05:0.25", "0.25:0.6")


def high_frequency_share(grey: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N,): energy above half Nyquist (radius > 0.25 cycles/px) / total,
    without the mean (DC) term."""
    n, h, w = grey.shape
    power = np.abs(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    high = np.hypot(fy, fx) > 0.25
    return power[:, high].sum(axis=1) / np.maximum(power.reshape(n, -1).sum(axis=1), 1e-12)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive view's score > the patch's), ties half: the ROC AUC of positive (1) vs
    patch (0)."""
    from sklearn.metrics import roc_auc_score
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def load_views(path: str, images: int, patch: str):
    """The instance_cifar views (negative patch of area `patch`) of the first `images` records:
    (list of (N, 3, H, W) normalised float32 tensors, the View of each)."""
    from jessl.data.loader import Loader
    from jessl.data.views import resolve_views, set_fields
    views = set_fields(resolve_views("instance_cifar"), f"2.scale={patch}")
    loader = Loader(path, 256, views, num_threads=1, drop_last=False,
                    indices=np.arange(images), seed=0)
    batches = [batch.views for batch in loader]
    return [torch.cat([b[v] for b in batches]) for v in range(len(views))], views


def grey(x: torch.Tensor, view) -> np.ndarray:
    """(N, 3, H, W) normalised -> (N, H, W) grey on [0, 1] (ITU-R 601 luma)."""
    rgb = x.numpy() * np.array(view.std)[:, None, None] + np.array(view.mean)[:, None, None]
    return np.tensordot(np.array([0.299, 0.587, 0.114]), rgb, axes=([0], [1]))


def random_init_model():
    """Instance SimCLR's network at its seed-0 initialisation, batch norm in eval mode (no
    statistics taken from the views it scores)."""
    from jessl.methods.instance_simclr import InstanceSimCLR
    from jessl.models.backbones import build_backbone
    torch.manual_seed(0)
    return InstanceSimCLR(build_backbone("small_cnn", cifar_stem=True)).eval()


@torch.no_grad()
def random_init_loss(model, views: list[torch.Tensor], temperature: float = 0.1) -> dict:
    """Instance loss and median cosines (anchor-positive, anchor-patch) of `model`."""
    from jessl.losses import instance_info_nce
    z = [model.projector(model.backbone(v)) for v in views]
    cos = [torch.nn.functional.cosine_similarity(z[0], z[k]) for k in (1, 2)]
    return {"loss": float(instance_info_nce(z[0], z[1], z[2], temperature)),
            "cos_pos": float(cos[0].median()), "cos_neg": float(cos[1].median())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="cifar10_test.jessl")
    ap.add_argument("--images", type=int, default=1024)
    args = ap.parse_args(argv)
    print("| negative patch (area) | loss at random init (chance 0.693) | cosine anchor-positive "
          "| cosine anchor-patch | high-freq. share, positive / patch | AUC of that, positive "
          "vs patch |")
    print("|---|---:|---:|---:|---:|---:|")
    model = random_init_model()
    for patch in PATCHES:
        tensors, views = load_views(args.data, args.images, patch)
        init = random_init_loss(model, tensors)
        share = [high_frequency_share(grey(x, view)) for x, view in zip(tensors, views)]
        print(f"| {patch.replace(':', '-')} | {init['loss']:.3f} | {init['cos_pos']:.3f} | "
              f"{init['cos_neg']:.3f} | {np.median(share[0]):.3f} / {np.median(share[2]):.3f} "
              f"| {auc(share[0], share[2]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
