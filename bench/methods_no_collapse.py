"""Every registered method, a short run on real CIFAR-10: does it learn without collapsing?

A collapsed joint-embedding model maps every image to (nearly) the same point: its embeddings'
RankMe drops towards 1 and its features carry no more class information than a random network.
So each method trains briefly on a CIFAR-10 subset with its own loss, views and (scaled-down)
projector, and the table gives its RankMe (embeddings of the last steps and backbone features
of the test set), its online-probe accuracy, and the kNN accuracy against the same network at
random initialisation. Hyper-parameters follow solo-learn's CIFAR recipes where it has one.

    python bench/methods_no_collapse.py --data-root ../shared/data --out runs/methods

Writes OUT/methods.json and prints a markdown table (docs/benchmarks.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# optim/method settings per method: solo-learn's scripts/pretrain/cifar/*.yaml where they exist;
# projectors narrower than the papers' 8192-wide ones so that a CPU run stays short
SETTINGS = {
    "simclr": {"optim.lr": 0.4, "method.temperature": 0.2},
    "instance_simclr": {"optim.lr": 0.4},
    "vicreg": {"optim.lr": 0.3, "model.projector": "2048-2048-2048"},
    "barlowtwins": {"optim.lr": 0.3, "model.projector": "2048-2048-2048"},
    "byol": {"optim.lr": 1.0},
    # BYOL's setting (SimSiam is BYOL without the EMA teacher) with SimSiam's constant-lr
    # predictor (on by default). Tried in this 3-epoch run (feature RankMe, kNN; 33.4% at random
    # init), the first two with a decayed predictor lr: SGD 0.5 (solo-learn) collapsed (8.2,
    # 28.6%); SGD 0.03, weight decay 5e-4 (the SimSiam paper's CIFAR setting) learned nothing
    # (26.6, 34.0%); SGD 0.1, 5e-4: 16.8, 32.7%; LARS 1.0 with a decayed predictor lr: 55.3,
    # 36.1%; LARS 1.0 (this): 87.0, 39.1%
    "simsiam": {"optim.lr": 1.0},
    "moco": {"optim.lr": 0.3},
    "nnclr": {"optim.lr": 0.4, "method.temperature": 0.2},
    "dino": {"optim.lr": 0.3, "method.num_prototypes": 4096, "optim.clip_grad": 3.0},
    # SwAV's paper setting (LARS 0.6, epsilon 0.05, a queue after 10% of the steps, 6 local
    # crops) collapsed in the 15-minute method table (3 epochs: loss stuck at ln 3000 = 8.006,
    # the SwAV README's "common issue"; kNN 32.4% against 38.5% at random init). Screened on
    # the 10k subset, 4 epochs of 2 views, batch 256 (kNN; random init 33.4%, SimCLR 43.2%):
    # LARS 0.6: 33.6% with the queue, 33.6% without, 34.8% with epsilon 0.03; 512 prototypes
    # 33.8%; LARS 2.4 + epsilon 0.03, no queue 35.9%; SGD 0.3 32.8%; 300 prototypes, epsilon
    # 0.02 35.5%; SGD 0.1, weight decay 5e-4, epsilon 0.03 (sharper codes, the README's first
    # remedy), no queue (the network changes too fast for stale embeddings) 36.8% (this).
    # 2 views: solo-learn's CIFAR SwAV has no local crops, and they cost 2.2x a step here
    "swav": {"optim.optimizer": "sgd", "optim.lr": 0.1, "optim.weight_decay": 5e-4,
             "method.epsilon": 0.03, "method.queue_length": 0, "data.local_views": 0},
}
# the optimizer every method ran with when docs/benchmarks.md's table was measured (RunConfig's
# defaults then): pinned, so each method's recipe (jessl.methods, Method.recipe) leaves it as it was
SHARED = {"optim.optimizer": "lars", "optim.scaling": "linear", "optim.weight_decay": 1e-6,
          "optim.weight_decay_end": "none", "optim.momentum": 0.9, "optim.final_lr": 0.0,
          "optim.clip_grad": 0.0}


def subset_file(npz: Path, out: Path, n: int, seed: int = 0) -> Path:
    """The first `n` images of a seeded shuffle of a CIFAR .npz (JPEG bytes + offsets), as a
    dataset file of raw pixels; classes stay balanced to within sampling noise."""
    import simplejpeg

    from jessl.data import convert
    if out.exists():
        return out
    d = np.load(npz)
    jpeg, offsets, labels = d["jpeg"], d["offsets"], d["y"]
    pick = np.random.default_rng(seed).permutation(len(labels))[:n]
    items = [(simplejpeg.decode_jpeg(jpeg[offsets[i]:offsets[i + 1]].tobytes()), int(labels[i]))
             for i in pick]
    convert(items, out, workers=1, progress=False)
    return out


def cifar10_files(root: Path, out: Path, images: int, val_images: int = 10000) -> tuple:
    """(train, test) dataset files in `out`: `images` training and `val_images` test images of
    the shared CIFAR-10 .npz files in `root` (SystemExit naming the folder if they are not there)."""
    if not (root / "cifar10_jpeg_train.npz").is_file():
        raise SystemExit(f"{root}/cifar10_jpeg_train.npz not found: give --data-root "
                         f"(the shared CIFAR-10 .npz files)")
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if val_images == 10000 else f"_{val_images}"
    return (subset_file(root / "cifar10_jpeg_train.npz", out / f"cifar10_train_{images}.jessl",
                        images),
            subset_file(root / "cifar10_jpeg_test.npz", out / f"cifar10_test{suffix}.jessl",
                        val_images))


def run_method(name: str, train_file: Path, val_file: Path, out: Path, epochs: int,
               batch_size: int, baseline: bool, overrides: list[str] = ()) -> dict:
    from jessl.config import load_config
    from jessl.train.trainer import train
    fields = {"method.name": name, "data.train": train_file, "data.val": val_file,
              "data.batch_size": batch_size, "model.backbone": "small_cnn",
              "optim.warmup_epochs": 1, "train.epochs": epochs, "train.channels_last": True,
              "train.out": out / name, "train.progress": False, "train.keep_checkpoints": 1,
              "eval.baseline": baseline, **SHARED, **SETTINGS.get(name, {})}
    cfg = load_config(None, [f"{k}={v}" for k, v in fields.items()] + list(overrides))
    start = time.perf_counter()
    metrics = train(cfg)
    metrics["minutes"] = (time.perf_counter() - start) / 60
    return metrics


def table(rows: dict, random_knn: float | None) -> str:
    lines = ["| method | minutes | loss | RankMe (embeddings) | RankMe (features) | online probe "
             "top-1 | kNN top-1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['minutes']:.1f} | {m['loss']:.3f} | {m.get('rankme', 0):.1f} "
                     f"| {m.get('rankme_features', 0):.1f} | "
                     f"{m.get('probe/backbone_val_top1', 0):.1f}% | {m.get('knn_top1', 0):.1f}% |")
    if random_knn is not None:
        lines.append(f"| (random init) | | | | | | {random_knn:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data", help="folder with cifar10_jpeg_*.npz")
    p.add_argument("--out", default="runs/methods", help="run folders and methods.json")
    p.add_argument("--images", type=int, default=10000, help="training subset size")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--methods", default=",".join(SETTINGS), help="comma-separated names")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every method run, after its SETTINGS "
                   "(repeatable; e.g. --set optim.lr=0.1 to try a setting)")
    args = p.parse_args(argv)
    root, out = Path(args.data_root), Path(args.out)
    train_file, val_file = cifar10_files(root, out, args.images)
    rows, random_knn = {}, None
    for i, name in enumerate(args.methods.split(",")):
        m = run_method(name, train_file, val_file, out, args.epochs, args.batch_size,
                       baseline=i == 0, overrides=args.set)
        random_knn = m.get("knn_top1_random_init", random_knn)
        rows[name] = m
        (out / "methods.json").write_text(json.dumps(
            {"images": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
             "overrides": args.set, "knn_random_init": random_knn, "methods": rows},
            indent=1) + "\n")
    print(table(rows, random_knn))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
