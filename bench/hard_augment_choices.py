"""Hard Augment's open choices, measured: selection size, batch-norm mode, scoring network.

The selection pass must rank an image's candidate pairs as the training loss at full size
would, for a fraction of the cost. So: train SimCLR and BYOL briefly on a CIFAR-10 subset,
then on held-out images draw m candidates each and compare every selection setting with the
full-size truth, in two numbers per setting:
  * hit: how often the pair it picks is the full-size loss's hardest (chance: 1 / pairs);
  * captured: (L(picked) - mean L) / (max L - mean L) of the full-size per-image loss, 1 when
    it always picks the hardest pair, 0 for a random pick.
The full-size truth is each method's own per-image loss in training mode (batch statistics,
as the training forward sees them): SimCLR's positive term, -cos of the projections (the
paper's Algorithm 1 score); BYOL's symmetric predictor-to-target 2 - 2cos.

    python bench/hard_augment_choices.py --data-root ../shared/data --out runs/ha_choices

Prints a markdown table per method (docs/benchmarks.md quotes them) and writes OUT/choices.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods_no_collapse import run_method, subset_file  # noqa: E402

from jessl.train.flops import hard_augment_overhead_eq11  # noqa: E402
from jessl.train.hard_augment import (HardAugment, candidate_views, eligible_pairs,  # noqa: E402
                                      pair_scores, selection_mode)


def full_size_losses(method, candidates, first, second) -> torch.Tensor:
    """(P, B) each method's own per-image loss of every pair at full size, train-mode BN
    (statistics not tracked: the selection_mode "batch" context)."""
    with torch.no_grad(), selection_mode(method, "batch"):
        x = torch.cat(candidates)
        z = method.embed(x).reshape(len(candidates), len(candidates[0]), -1)
        if not hasattr(method, "predictor") or not hasattr(method, "teacher"):
            return pair_scores(z, first, second)
        p = F.normalize(method.predictor(z.flatten(0, 1)).reshape(z.shape), dim=-1)
        t = F.normalize(method.embed(x, teacher=True).reshape(z.shape), dim=-1)
        return (2 - 2 * (p[first] * t[second]).sum(-1)) + (2 - 2 * (p[second] * t[first]).sum(-1))


def evaluate(method, batches, hard: HardAugment) -> dict:
    hits, captured, n = 0.0, 0.0, 0
    for candidates in batches:
        truth = full_size_losses(method, candidates, hard.first, hard.second)  # (P, B)
        scores = pair_scores(hard.embed(method, candidates), hard.first, hard.second)
        pick = scores.argmax(0)
        best = truth.argmax(0)
        got = truth.gather(0, pick[None])[0]
        mean, top = truth.mean(0), truth.max(0).values
        hits += float((pick == best).sum())
        captured += float(((got - mean) / (top - mean).clamp_min(1e-12)).sum())
        n += len(pick)
    return {"hit": hits / n, "captured": captured / n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", default="runs/ha_choices")
    p.add_argument("--images", type=int, default=5000, help="training subset size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--eval-images", type=int, default=1024)
    p.add_argument("--methods", default="simclr,byol")
    args = p.parse_args(argv)
    from jessl.data.loader import Loader
    from jessl.data.views import resolve_views
    from jessl.methods import build_method
    from jessl.models import build_backbone
    from jessl.checkpoint import latest_checkpoint, load_checkpoint

    root, out = Path(args.data_root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_file = subset_file(root / "cifar10_jpeg_train.npz",
                             out / f"cifar10_train_{args.images}.jessl", args.images)
    held_out = subset_file(root / "cifar10_jpeg_test.npz", out / "cifar10_test_2k.jessl", 2000)
    results = {}
    torch.manual_seed(0)
    for name in args.methods.split(","):
        run = out / name
        if latest_checkpoint(run) is None:
            run_method(name, train_file, held_out, out, args.epochs, 128, False,
                       ["eval.knn=false", "eval.rankme=false"])
        ckpt = load_checkpoint(latest_checkpoint(run))
        saved = ckpt["config"]
        method = build_method(name, build_backbone("small_cnn", True), saved["model"]["projector"],
                              {k: v for k, v in saved["method"].items() if k != "name"})
        method.load_state_dict(ckpt["method"])
        method.train()
        views = resolve_views(f"{method.views}_cifar")
        loader = Loader(held_out, 256, candidate_views(views, args.candidates),
                        order="sequential", seed=1, num_threads=1)
        batches = []
        for batch in loader:
            batches.append(batch.views[:args.candidates])
            if 256 * len(batches) >= args.eval_images:
                break
        symmetric = views[0] == views[1]
        rows = {}
        for size in (8, 12, 16, 32):
            for bn in ("batch", "eval"):
                for scorer in (("student", "teacher") if hasattr(method, "teacher")
                               else ("student",)):
                    hard = HardAugment(args.candidates, size, bn, scorer, symmetric)
                    rows[f"{size}/{bn}/{scorer}"] = {
                        **evaluate(method, batches, hard),
                        "eq11_overhead": hard_augment_overhead_eq11(32, size, args.candidates)}
        pairs = len(eligible_pairs(args.candidates, symmetric)[0])
        results[name] = {"chance_hit": 1 / pairs, "rows": rows}
        print(f"\n### {name} ({args.epochs} epochs on {args.images} images; {pairs} pairs, "
              f"chance hit {100 / pairs:.0f}%)\n")
        print("| r_sel px | bn | scorer | hit | captured | eq. 11 overhead |")
        print("|---:|---|---|---:|---:|---:|")
        for key, r in rows.items():
            size, bn, scorer = key.split("/")
            print(f"| {size} | {bn} | {scorer} | {100 * r['hit']:.1f}% | "
                  f"{r['captured']:.3f} | {100 * r['eq11_overhead']:.1f}% |")
    (out / "choices.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
