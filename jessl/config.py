"""One typed config tree per run: `RunConfig` = data + model + method + optim + train + probe + eval.

A run is described by a YAML file, then command-line overrides of any field, typed by the
dataclass field they name:

    cfg = load_config("simclr.yaml", ["--optim.lr", "0.5", "train.epochs=10"])
    cfg.validate()            # every bad value refused with a clear message, no file read
    cfg.to_yaml(path)         # the resolved config, saved in every run folder

The `method` section holds the method's name and that method's own options (the `options`
dataclass of `jessl.methods.METHODS[name]`), flat: `--method.temperature 0.2`.
Every default says its unit and its source. Each section's `validate()` checks its own values
and `RunConfig.validate()` those across sections, without the file system; the files a config
names are checked where the trainer opens them (`jessl.train.inputs.check_inputs`).

Each method's paper settings (`Method.recipe`: optimizer, lr and its scaling, weight decay ...)
replace RunConfig's defaults for the keys nobody set: a value from a file, an override or
`set()` always wins, whatever the order. `cfg.sources` says where each such key came from, and
`to_yaml` writes it beside the value, so a saved config shows which numbers were the paper's.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from jessl.errors import UserError
from jessl.runtime import check_device

PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("warmup_cosine", "f1clr")
SCALING_RULES = ("linear", "sqrt")
OPTIMIZERS = ("sgd", "adamw", "lars")  # jessl.train.optim.OPTIMIZERS, kept import-free here
ORDERS = ("random", "quasi_random", "sequential")  # jessl.data.order.ORDERS
BN_MODES = ("batch", "eval")  # hard_augment.bn; jessl.train.hard_augment imports them from here
SCORERS = ("student", "teacher")  # hard_augment.scorer


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the field and what would be accepted."""


@dataclass
class DataConfig:
    train: str = ""  # dataset file (jessl convert) the network is pretrained on
    val: str = ""  # dataset file for the per-epoch probe accuracy and the final kNN; "" = none
    views: str = ""  # view preset (jessl.data.views.PRESETS); "" = the method's own, + "_cifar" for images <= 64 px
    view_set: str = ""  # fields of the preset's views to change, "V.FIELD=VALUE;..." with V a view index, all, global (views 0-1) or local (2 on: multi-crop's local crops), pairs as a:b (e.g. "2.scale=0.02:0.08"): one augmentation knob varied without a new preset; "" = the preset as it is
    local_views: int | None = None  # multi-crop (SwAV, Caron et al. 2020, section 3.2): the 2 global views + this many local ones of the multicrop preset, from one decode; None = the method's preset as it is (multicrop: 6 local, SwAV section 4's 2x224 + 6x96; two-view presets: 0). Methods with multicrop = True or a multi-crop preset take it
    batch_size: int = 256  # images per optimizer step over all processes (global batch), SimCLR/BYOL/VICReg use 4096 on TPUs; 256 is the Cookbook's single-node default
    threads: int = 0  # loader threads per process; 0 = every core this process may use
    order: str = "random"  # random | quasi_random (files larger than RAM, FFCV) | sequential
    prefetch: int = 2  # batches prepared ahead of the one training
    exact: bool = False  # decode JPEGs at full size as torchvision does (views within 2 uint8 levels of its pixels, docs/loader_accuracy.md) instead of at the smallest exact DCT scale; slower for small views of large photos
    output: str = "auto"  # what the loader hands the step: float (normalised float32) | uint8 (bytes, normalised on the device, bit for bit the same floats: 4x less to copy, the CPU spared the float write; FFCV's habit) | auto (uint8 on a GPU when no view adds noise, else float)


    def validate(self) -> "DataConfig":
        """Its own values; the files are checked where they are opened (jessl.train.inputs)."""
        if not self.train:
            raise ConfigError("data.train: no training file given (--train FILE)")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.output not in ("auto", "float", "uint8"):
            raise ConfigError(f"data.output: unknown output {self.output!r}; known: auto, "
                              f"float, uint8")
        if self.order not in ORDERS:
            raise ConfigError(f"data.order: unknown order {self.order!r}; known: "
                              f"{', '.join(ORDERS)}")
        if self.views:
            from jessl.data.views import PRESETS
            if self.views not in PRESETS:
                raise ConfigError(f"data.views: unknown view preset {self.views!r}; known: "
                                  f"{', '.join(sorted(PRESETS))}")
        if self.local_views is not None and self.local_views < 0:
            raise ConfigError(f"data.local_views must be >= 0, got {self.local_views}")
        for name in ("threads", "prefetch"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        return self

@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # jessl.models.BACKBONES name or timm:<name>; ResNet-18 is the CIFAR/ImageNet-100 workhorse of solo-learn
    cifar_stem: bool | None = None  # 3x3 stride-1 stem without max-pool (SimCLR appendix B.9); None = when images are <= 64 px
    projector: str = ""  # widths after the backbone, dash separated ("2048-2048-128", the FFCV-SSL / VICReg --mlp convention); "" = the method's paper default


    def validate(self) -> "ModelConfig":
        from jessl.models import BACKBONES
        from jessl.models.heads import parse_dims
        if not (self.backbone in BACKBONES or self.backbone.startswith("timm:")):
            raise ConfigError(f"model.backbone: unknown backbone {self.backbone!r}; known: "
                              f"{', '.join(sorted(BACKBONES))} or timm:<name>")
        try:
            if self.projector:
                parse_dims(self.projector)
        except ValueError as err:
            raise ConfigError(f"model.projector: {err}") from None
        return self

@dataclass
class MethodConfig:
    name: str = "simclr"  # jessl.methods.METHODS key
    options: typing.Any = None  # that method's options dataclass; None = its defaults

    def resolved_options(self):
        """The options dataclass instance of `name` (its defaults when none were set)."""
        cls = method_options_type(self.name)
        if self.options is None:
            return cls() if cls is not None else None
        return self.options


    def validate(self) -> "MethodConfig":
        method_options_type(self.name)  # an unknown name: ConfigError listing the known ones
        return self

@dataclass
class OptimConfig:
    optimizer: str = "lars"  # sgd | adamw | lars; LARS as SimCLR (appendix B.1), BYOL, VICReg
    lr: float = 0.3  # per 256 images: the learning rate at batch 256, scaled by `scaling` (SimCLR appendix B.1: 0.3 x B/256)
    scaling: str = "linear"  # linear: lr x B/256 (Goyal et al. 2017) | sqrt: lr x sqrt(B/256) for small batches (SSL Cookbook 3.8.1)
    final_lr: float = 0.0  # fraction of the peak lr reached at the last step of warmup_cosine (SimCLR: 0)
    weight_decay: float = 1e-6  # SimCLR appendix B.1 (LARS); biases and norm layers get none
    weight_decay_end: float | None = None  # weight decay at the last step, cosine from weight_decay (DINO section 4.1: 0.04 -> 0.4); None = constant
    momentum: float = 0.9  # SGD/LARS momentum or AdamW beta1, SimCLR/BYOL/VICReg; f1clr schedules its own (f1clr_momentum_high -> low -> high)
    f1clr_momentum_high: float = 0.95  # F1-CLR's beta_h (eq. 8), at the start and the end; the paper prints none: Smith 2018 (arXiv:1803.09820) section 4.3's 1cycle value, torch OneCycleLR's max_momentum
    f1clr_momentum_low: float = 0.85  # F1-CLR's beta_l, at the lr peak; same sources (OneCycleLR's base_momentum)
    schedule: str = "warmup_cosine"  # warmup_cosine (SimCLR, DINO) | f1clr (fixed one-cycle, Kocyigit et al. WACV 2023)
    warmup_epochs: float = 10.0  # epochs of linear warm-up, SimCLR appendix B.1 (10 of 100+); capped at half the run
    clip_grad: float = 0.0  # max global grad norm; 0 = no clipping (SimCLR/BYOL/VICReg do not clip; DINO uses 3.0)


    def validate(self) -> "OptimConfig":
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optim.optimizer: unknown optimizer {self.optimizer!r}; known: "
                              f"{', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0 (per 256 images), got {self.lr}")
        if self.scaling not in SCALING_RULES:
            raise ConfigError(f"optim.scaling: unknown rule {self.scaling!r}; known: "
                              f"{', '.join(SCALING_RULES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule: unknown schedule {self.schedule!r}; known: "
                              f"{', '.join(SCHEDULES)}")
        if self.weight_decay_end is not None and self.weight_decay_end < 0:
            raise ConfigError(f"optim.weight_decay_end must be >= 0, got "
                              f"{self.weight_decay_end}")
        for name in ("weight_decay", "clip_grad", "warmup_epochs", "final_lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.f1clr_momentum_low <= self.f1clr_momentum_high < 1:
            raise ConfigError(f"optim.f1clr_momentum_low <= optim.f1clr_momentum_high must "
                              f"hold, both in [0, 1), got {self.f1clr_momentum_low}, "
                              f"{self.f1clr_momentum_high}")
        return self

@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the train file; SimCLR's shortest reported run is 100
    stop_after: int = 0  # end this invocation after this epoch, schedules still spanning `epochs` (time-limited jobs resume later); 0 = run to the end
    seed: int = 0  # seeds torch, numpy, python and the loader's augmentations and order
    device: str = "auto"  # auto (a CUDA GPU when torch sees one, else the CPU) | cpu | cuda | cuda:N; under torchrun/SLURM "cuda" is this process's LOCAL_RANK GPU
    precision: str = "fp32"  # fp32 | bf16 (autocast of the forward pass; on CPUs without native bf16 it is slower)
    channels_last: bool = False  # NHWC tensors; faster convolutions on CPUs with oneDNN
    compile: bool = False  # torch.compile the method (needs a C++ compiler; slow first steps)
    sync_bn: bool = False  # with several processes, batch-norm statistics of the global batch (SimCLR appendix B.1's global BN; BYOL, MoCo v3 use it too); off = each process normalises its own share
    threads: int = 0  # torch intra-op (and numba) threads; 0 = every core this process may use
    jit: bool = True  # compile the augmentation kernels with numba (off: plain Python, debuggable)
    out: str = "runs/run"  # run folder: config, versions, environment, metrics, checkpoints
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk; 0 = keep all
    resume: str = ""  # checkpoint path, or "auto" = the newest in out/checkpoints; "" = fresh run
    log_every: int = 10  # optimizer steps between metrics.jsonl / TensorBoard records
    progress: bool = True  # tqdm bar with images/s and the share of time waiting for data


    def validate(self) -> "TrainConfig":
        """Its own values; the run folder and the checkpoint are looked at by the trainer."""
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.stop_after <= self.epochs:
            raise ConfigError(f"train.stop_after must be in [0, train.epochs={self.epochs}], "
                              f"got {self.stop_after}")
        try:
            check_device(self.device, "train.device")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision: unknown precision {self.precision!r}; known: "
                              f"{', '.join(PRECISIONS)}")
        for name in ("threads", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        if not self.out:
            raise ConfigError("train.out: a run folder is needed")
        return self

@dataclass
class ProbeConfig:
    enabled: bool = True  # online linear probe on detached backbone features (cut gradient)
    lr: float = 0.1  # SGD lr, constant; solo-learn's online classifier (0.1, momentum 0.9, no decay)
    momentum: float = 0.9  # SGD momentum, solo-learn
    weight_decay: float = 0.0  # solo-learn's classifier_wd
    projector_layers: bool = False  # also probe the output of every projector layer (guillotine regularisation, Bordes et al. 2023)
    recalibrate: int = 0  # training images whose features, at the test images' size, replace the heads' BN statistics before each validation (FixRes, Touvron et al. 2019: views smaller than the test images shift them; jessl.train.probe); 0 = off, the running statistics of the views


    def validate(self) -> "ProbeConfig":
        if self.enabled and not self.lr > 0:
            raise ConfigError(f"probe.lr must be > 0, got {self.lr}")
        if self.recalibrate < 0 or self.recalibrate == 1:
            raise ConfigError(f"probe.recalibrate must be 0 (off) or >= 2 training images, "
                              f"got {self.recalibrate}")
        return self

@dataclass
class EvalConfig:
    knn: bool = True  # weighted kNN top-1 on the val file at the end (DINO eval_knn.py)
    k: int = 200  # neighbours, InstDisc / DINO (their list is 10 20 100 200)
    temperature: float = 0.07  # vote weight exp(sim / T), InstDisc / DINO
    baseline: bool = False  # also the kNN of the same network at random initialisation (same seed)
    knn_every: int = 0  # epochs between kNN evaluations during training (logged as knn_top1 in the epoch record, for `jessl curve --reach`); 0 = at the end only
    batch_size: int = 256  # images per forward pass when extracting features
    rankme: bool = True  # RankMe of the last epoch's embeddings (Garrido et al. 2023)
    rankme_samples: int = 25600  # embeddings kept for RankMe, Garrido et al. 2023 section 4
    cache: bool = True  # cache extracted features under out/features (keyed by weights + file + views)


    def validate(self) -> "EvalConfig":
        if self.knn_every < 0:
            raise ConfigError(f"eval.knn_every must be >= 0, got {self.knn_every}")
        if self.k < 1 or self.temperature <= 0 or self.batch_size < 1 or self.rankme_samples < 1:
            raise ConfigError("eval.k, eval.temperature, eval.batch_size and "
                              "eval.rankme_samples must be positive")
        return self

# --- `jessl eval`: a dataclass for each group of its options (jessl.flags makes the flags) ---

@dataclass
class FeatureConfig:
    """How `jessl eval` extracts features, for every probe."""
    seed: int = 0  # splits, subsamples, probe init and order, and --random-init's weights
    threads: int | None = None  # torch and loader threads; None = all available cores
    batch_size: int = EvalConfig.batch_size  # images per forward pass when extracting features, the trainer's (eval.batch_size)
    device: str = "auto"  # where the network extracts features: auto (a CUDA GPU when torch sees one, else cpu) | cpu | cuda | cuda:N; the probes themselves run on the CPU
    views: str | None = None  # evaluation view preset (jessl.data.views.PRESETS); None = eval_cifar for images <= 64 px, else eval
    cache: bool = EvalConfig.cache  # keep extracted features in --cache-dir, keyed by weights + file + views, and read them back; --no-cache extracts afresh and stores nothing

    def validate(self) -> "FeatureConfig":
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        try:
            check_device(self.device, "--device")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.views is not None:
            from jessl.data.views import PRESETS
            if self.views not in PRESETS:
                raise ConfigError(f"unknown view preset {self.views!r}; known: "
                                  f"{', '.join(sorted(PRESETS))}")
        return self


@dataclass
class KnnProbeConfig:
    """`jessl eval knn` and the suite's kNN."""
    k: tuple[int, ...] = (20, EvalConfig.k)  # neighbours, each k reported: 20, DINO's best across its models (eval_knn.py's list is 10 20 100 200), and the trainer's 200 (eval.k), InstDisc's, which solo-learn and lightly monitor
    temperature: float = EvalConfig.temperature  # vote weight exp(sim / T), the trainer's (eval.temperature)

    def validate(self) -> "KnnProbeConfig":
        if not self.k or min(self.k) < 1:
            raise ConfigError(f"--k: give positive integers, e.g. 20,200; got {self.k}")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}")
        return self


@dataclass
class LinearProbeConfig:
    """`jessl eval linear`."""
    epochs: int | None = None  # passes over the training images; None = 30 on precomputed features (eval.probes.LINEAR_EPOCHS), 10 with --augment (eval.augmented.AUG_EPOCHS: each is a backbone pass)
    augment: bool = False  # train on features of fresh RandomResizedCrop + flip views each epoch (backbone frozen), as SimCLR / DINO linear evaluation
    augment_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range with --augment: torchvision's default, as DINO eval_linear.py

    def validate(self) -> "LinearProbeConfig":
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        lo, hi = self.augment_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"--augment-scale must be 0 < LO <= HI <= 1, got {lo},{hi}")
        return self


@dataclass
class MlpProbeConfig:
    """`jessl eval mlp`."""
    epochs: int = 10  # few: the Cookbook (fig. 13) finds the MLP probe peaks early, then overfits
    hidden: tuple[int, ...] = (2048, 2048)  # hidden widths, 2048-2048 or 2048,2048: FFCV-SSL (Bordes et al. 2023) section 4's "two layers MLP of size 2048-2048"

    def validate(self) -> "MlpProbeConfig":
        _positive_probe_sizes(self.epochs, self.hidden, "--epochs", "--hidden")
        return self


@dataclass
class SuiteConfig:
    """`jessl eval suite`'s probes, cut so that a small_cnn checkpoint and its baseline go
    through CIFAR-10 (50k / 10k) and Tiny-ImageNet (8k / 2k) in a few minutes on 2 CPU cores."""
    probes: tuple[str, ...] = ("knn", "linear", "mlp", "rankme")  # comma-separated subset to run; the default is every probe the suite knows
    linear_epochs: int = 10  # of the precomputed-feature linear probe, a third of the single command's
    mlp_epochs: int = 5  # half the single command's: the MLP probe peaks early (Cookbook fig. 13)
    mlp_hidden: tuple[int, ...] = (512, 512)  # MLP widths, 1/16 of the multiply-adds of FFCV-SSL's 2048-2048 (the single command's)
    probe_train_per_class: int = 0  # linear and MLP probes train on at most N images a class, kNN and RankMe on all (a faster run); 0 = all
    projector: bool = True  # also the kNN and RankMe of the checkpoint's projector embeddings; --no-projector skips them

    def validate(self) -> "SuiteConfig":
        known = SuiteConfig.probes
        unknown = [p for p in self.probes if p not in known]
        if unknown or not self.probes:
            raise ConfigError(f"unknown probe(s) {', '.join(unknown) or '(none)'}; known: "
                              f"{', '.join(known)}")
        if self.linear_epochs < 1:
            raise ConfigError(f"--linear-epochs must be >= 1, got {self.linear_epochs}")
        _positive_probe_sizes(self.mlp_epochs, self.mlp_hidden, "--mlp-epochs", "--mlp-hidden")
        if self.probe_train_per_class < 0:
            raise ConfigError(f"--probe-train-per-class must be >= 0, got "
                              f"{self.probe_train_per_class}")
        return self


def _positive_probe_sizes(epochs: int, hidden: tuple, epochs_flag: str, hidden_flag: str):
    if epochs < 1:
        raise ConfigError(f"{epochs_flag} must be >= 1, got {epochs}")
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"{hidden_flag}: widths must be positive, e.g. 2048-2048; got "
                          f"{'-'.join(map(str, hidden))}")


@dataclass
class ProgressiveConfig:
    min_size: int = 0  # px; > 0 turns on Super Progressive Learning (Kocyigit et al. 2023 3.2): full size during the lr warm-up, then min_size up to the views' size in stages, as the inverse of the lr's cosine decay; the paper's ImageNet minimum is 96 of 224
    step: int = 0  # px between stages; 0 = the paper's 32 for views >= 128 px, 4 below
    warmup_epochs: float = -1.0  # epochs at full size first; -1 = optim.warmup_epochs
    min_magnitude: float = 1.0  # augmentation magnitude at min_size, rising linearly with the size to 1 at full size (View.scaled); 1 = constant
    magnitude_scales: str = "jitter"  # what the magnitude multiplies: jitter (the colour-jitter strengths, the paper's section 4) | photometric (also every photometric op's probability, jessl's earlier variant)

    SWITCH = ("min_size",)  # the fields `active` reads (studies/sweep.py same_run)

    @property
    def active(self) -> bool:
        """Whether Super Progressive Learning runs; off, no other field is read."""
        return self.min_size > 0

    def validate(self) -> "ProgressiveConfig":
        """Its own values; min_size against the views' size needs the train file (inputs.py)."""
        if self.min_size < 0 or self.step < 0:
            raise ConfigError("progressive.min_size and progressive.step must be >= 0")
        if not 0.0 <= self.min_magnitude <= 1.0:
            raise ConfigError(f"progressive.min_magnitude must be in [0, 1], got "
                              f"{self.min_magnitude}")
        from jessl.data.views import MAGNITUDE_SCALES
        if self.magnitude_scales not in MAGNITUDE_SCALES:
            raise ConfigError(f"progressive.magnitude_scales: unknown {self.magnitude_scales!r}"
                              f"; known: {', '.join(MAGNITUDE_SCALES)}")
        return self

@dataclass
class HardAugmentConfig:
    enabled: bool = False  # Hard Augment (Kocyigit et al. 2023 3.3, Algorithm 1): train on each image's hardest pair of `candidates` views, mined by a no-grad pass at `size` px
    candidates: int = 4  # m views drawn per image (one decode); the paper's eq. 11 example (5% overhead at 224/64 px); its experiments use 6 (Table 8: +0.5 points, 8.2% overhead); 0 = off
    size: int = 16  # px, r_sel: selection-pass resolution (shorter side); the paper's 64 at 224 px. 16 at 32 px: small_cnn's and a CIFAR-stem ResNet's last map is then 2x2, as ResNet-50's at 64 px (docs/benchmarks.md, "Hard Augment: choices")
    bn: str = "batch"  # batch-norm in the selection pass: batch (the selection batch's statistics) | eval (running statistics); never updates the running statistics (docs/benchmarks.md)
    scorer: str = "student"  # network that scores pairs for EMA-teacher methods: student (the paper's f) | teacher (docs/benchmarks.md)
    start_epoch: int = 0  # first epoch that mines (0-based); the epochs before it train on the first candidate pair unmined, as skip_small's. 0 = from the first step, as the paper's Algorithm 1; e.g. 2 = after F1-CLR's 1.5 warm-up epochs (a variant the paper does not run: docs/benchmarks.md, BYOL)
    skip_small: bool = False  # in epochs whose views are no larger than `size` (Super Progressive Learning's small stages, where the selection cannot downsample and costs 4/6 of a step), train on the first candidate pair unmined; the paper mines in every epoch

    SWITCH = ("enabled", "candidates")  # the fields `active` reads (studies/sweep.py same_run)

    @property
    def active(self) -> bool:
        """Whether Hard Augment mines; off, no other field is read."""
        return self.enabled and self.candidates > 0

    def validate(self) -> "HardAugmentConfig":
        """Its own values; a pair of same-size views to mine needs the views (inputs.py)."""
        if not self.active:
            return self
        if self.candidates < 2:
            raise ConfigError(f"hard_augment.candidates must be >= 2 (or 0 = off), got "
                              f"{self.candidates}")
        if self.size < 1:
            raise ConfigError(f"hard_augment.size must be >= 1 px, got {self.size}")
        if self.start_epoch < 0:
            raise ConfigError(f"hard_augment.start_epoch must be >= 0, got {self.start_epoch}")
        for name, what, known in (("bn", "mode", BN_MODES), ("scorer", "network", SCORERS)):
            if getattr(self, name) not in known:
                raise ConfigError(f"hard_augment.{name}: unknown {what} "
                                  f"{getattr(self, name)!r}; known: {', '.join(known)}")
        return self


SECTIONS = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig,
            "optim": OptimConfig, "train": TrainConfig, "progressive": ProgressiveConfig,
            "hard_augment": HardAugmentConfig, "probe": ProbeConfig, "eval": EvalConfig}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    hard_augment: HardAugmentConfig = field(default_factory=HardAugmentConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # "section.field" -> where its value came from: USER (a file, an override, set()) or
    # "<method> recipe: <source>"; keys in neither hold RunConfig's defaults
    sources: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._apply_recipe()

    # --- where each value came from: the user, or the method's recipe ---------------------

    def _apply_recipe(self) -> None:
        """Put the method's recipe on every key the user did not set, after taking the previous
        method's recipe values back to RunConfig's defaults."""
        for key, origin in list(self.sources.items()):
            if origin != USER:
                section, name = _split_key(key)
                setattr(getattr(self, section), name, getattr(SECTIONS[section](), name))
                del self.sources[key]
        cls = _methods().get(self.method.name)
        if cls is None:
            return
        for key, (value, source) in cls.recipe_for(self.method.resolved_options()).items():
            if self.sources.get(key) != USER:
                section, name = _split_key(key)
                target = getattr(self, section)
                setattr(target, name, convert_value(value, _field_types(type(target))[name], key))
                self.sources[key] = f"{self.method.name} recipe: {source}"

    # --- dict / YAML ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain nested dict; the method's options are flattened into the method section."""
        out = {}
        for name in SECTIONS:
            section = getattr(self, name)
            if name == "method":
                opts = section.resolved_options()
                out[name] = {"name": section.name, **(_plain(dataclasses.asdict(opts))
                                                     if opts is not None else {})}
            else:
                out[name] = _plain(dataclasses.asdict(section))
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> "RunConfig":
        """Inverse of `to_dict`; unknown sections or fields raise ConfigError naming them."""
        cfg = cls()
        d = d or {}
        if not isinstance(d, dict):
            raise ConfigError(f"a config is a mapping of sections, got {type(d).__name__}")
        for section, values in d.items():
            if section not in SECTIONS:
                raise ConfigError(_unknown("section", section, SECTIONS))
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"section {section!r} must be a mapping, got {values!r}")
            values = dict(values)
            if section == "method" and "name" in values:  # the name decides the other keys
                cfg.set(("method", "name"), values.pop("name"))
            for key, value in values.items():
                cfg.set((section, key), value)
        return cfg

    def to_yaml(self, path=None) -> str:
        """The config as YAML; keys that came from the method's recipe carry it as a comment."""
        text = _with_sources(yaml.safe_dump(self.to_dict(), sort_keys=False), self.sources)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        return cls.from_dict(d)

    # --- one field ------------------------------------------------------------------------

    def set(self, key, value) -> None:
        """Set `section.field` (a dotted string or a pair) to `value`, converted to the field's
        type; a string is parsed as the command line would (`"0.1"`, `"true"`, `"none"`)."""
        section, name = _split_key(key)
        if section not in SECTIONS:
            raise ConfigError(_unknown("section", section, SECTIONS))
        target = getattr(self, section)
        if section == "method" and name != "name":
            opts = target.resolved_options()
            if opts is None:
                raise ConfigError(f"method {target.name!r} has no options to set ({name!r})")
            names = [f.name for f in fields(opts)]
            if name not in names:
                raise ConfigError(f"method {target.name!r} has no option {name!r}; its options: "
                                  f"{', '.join(names) or 'none'}")
            setattr(opts, name, convert_value(value, _field_types(type(opts))[name],
                                         f"method.{name}"))
            target.options = opts
            self._apply_recipe()  # MoCo's recipe follows its version
            return
        types_ = _field_types(type(target))
        if name not in types_ or name == "options":
            known = [n for n in types_ if n != "options"]
            if section == "method":
                known += [f.name for f in fields(target.resolved_options() or _Empty())]
            raise ConfigError(_unknown(f"field of {section}", name, known))
        new = convert_value(value, types_[name], f"{section}.{name}")
        if section == "method" and name == "name" and new != target.name:
            method_options_type(new)  # unknown method: fail here with the list of known ones
            target.options = None  # another method: its own options, at their defaults
        setattr(target, name, new)
        if section == "method":
            self._apply_recipe()
        else:
            self.sources[f"{section}.{name}"] = USER

    def get(self, key):
        section, name = _split_key(key)
        target = getattr(self, section)
        if section == "method" and name != "name":
            return getattr(target.resolved_options(), name)
        return getattr(target, name)

    def apply_overrides(self, overrides) -> "RunConfig":
        """Apply `["--optim.lr", "0.5", "train.epochs=3", "--data.threads=2"]` in order
        (method.name first, so that method options that follow it are that method's)."""
        pairs = parse_overrides(overrides)
        pairs.sort(key=lambda kv: _split_key(kv[0]) != ("method", "name"))  # stable sort
        for key, value in pairs:
            self.set(key, value)
        return self

    # --- checks ---------------------------------------------------------------------------

    def validate(self) -> "RunConfig":
        """Refuse values that cannot run, with a message naming the field; returns self. Each
        section checks its own values, then the checks across sections; no file is looked at
        (`jessl.train.inputs.check_inputs` checks the files, where the trainer opens them)."""
        self.method.validate()  # first: the method decides the other sections' defaults
        for name in SECTIONS:
            getattr(self, name).validate()
        d = self.data
        from jessl.methods.base import takes_local_views
        if d.local_views and not takes_local_views(_methods()[self.method.name]):
            takers = sorted(n for n, c in _methods().items() if takes_local_views(c))
            raise ConfigError(f"data.local_views: method {self.method.name!r} takes no local "
                              f"views (multi-crop); methods that do: {', '.join(takers)}")
        h = self.hard_augment
        if h.active and h.start_epoch >= self.train.epochs:
            raise ConfigError(f"hard_augment.start_epoch {h.start_epoch} is past the last epoch "
                              f"({self.train.epochs} epochs, counted from 0): nothing would be "
                              f"mined; switch Hard Augment off instead")
        from jessl.distributed import world_size
        world = world_size()
        if d.batch_size % world:
            raise ConfigError(f"data.batch_size {d.batch_size} must be a multiple of the "
                              f"{world} processes")
        if d.views:  # a named preset's views need no file (the method's: by the images' size)
            self.checked_views()
        return self

    def checked_views(self) -> list:
        """view_list(), or ConfigError for local views the preset cannot give."""
        try:
            return self.view_list()
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"data.local_views: {err}") from None

    def views_preset(self) -> str:
        """data.views, or the method's preset ("multicrop" for a two-view method when
        data.local_views > 0) + "_cifar" when the train images are <= 64 px."""
        if self.data.views:
            return self.data.views
        from jessl.data.facts import small_images
        method = _methods()[self.method.name]
        preset = method.views
        if self.data.local_views and method.num_views is not None:  # a two-view preset
            preset = "multicrop"
        return preset + ("_cifar" if small_images(self.data.train) else "")

    def view_list(self) -> list:
        """The views the loader draws: the preset's, with data.local_views local views when the
        method takes multi-crop and the count is set (`jessl.data.views.with_local_views`), then
        data.view_set's fields (`jessl.data.views.set_fields`)."""
        from jessl.data.views import resolve_views, set_fields, with_local_views
        from jessl.methods.base import takes_local_views
        views = resolve_views(self.views_preset())
        if self.data.local_views is not None and takes_local_views(_methods()[self.method.name]):
            views = with_local_views(views, self.data.local_views, self.views_preset())
        try:
            return set_fields(views, self.data.view_set)
        except ValueError as err:
            raise ConfigError(f"data.view_set: {err}") from None


USER = "set"  # sources[key] of a value from a file, an override or set()


def _with_sources(text: str, sources: dict) -> str:
    """safe_dump's two-level YAML with '# <origin>' after every key whose origin is a recipe."""
    lines, section = [], None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line.split(":", 1)[0]
        elif section is not None and line.startswith("  ") and not line.startswith("   "):
            origin = sources.get(f"{section}.{line.strip().split(':', 1)[0]}")
            if origin is not None and origin != USER:
                line += f"  # {origin}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# --- the method registry, imported lazily (methods import torch and models) ----------------

def _methods() -> dict:
    from jessl.methods import METHODS
    return METHODS


def method_options_type(name: str):
    """The options dataclass of method `name`; ConfigError listing the known ones if unknown."""
    methods = _methods()
    if name not in methods:
        raise ConfigError(f"method.name: unknown method {name!r}; known: "
                          f"{', '.join(sorted(methods))}")
    return getattr(methods[name], "options", None)


# --- overrides and type conversion ---------------------------------------------------------

def parse_overrides(args) -> list[tuple[str, str]]:
    """["--a.b", "v", "--c.d=w", "e.f=x"] -> [("a.b", "v"), ("c.d", "w"), ("e.f", "x")]."""
    pairs, args, i = [], list(args or []), 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key = arg[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise ConfigError(f"{arg} needs a value")
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ConfigError(f"cannot read override {arg!r}: write --section.field VALUE "
                              f"or section.field=VALUE")
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def _split_key(key) -> tuple[str, str]:
    if isinstance(key, str):
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{key!r} is not section.field (sections: {', '.join(SECTIONS)})")
        return parts[0], parts[1].replace("-", "_")
    return tuple(key)


class _Empty:
    pass


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _unknown(what: str, name: str, known) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; known: {', '.join(known)}"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def convert_value(value, tp, where: str):
    """`value` (a Python value, or a command-line string) as type `tp`, or ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and
                                                     value.strip().lower() in ("none", "null", "~"))):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if tp is typing.Any:
        return _yaml_value(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        v = _yaml_value(value)
        if isinstance(v, bool) or not (isinstance(v, int) or
                                       (isinstance(v, float) and v.is_integer())):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(v)
    if tp is float:
        v = _yaml_value(value)
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(v)
    if tp is str:
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    if origin in (tuple, list):
        v = _yaml_value(value)
        if isinstance(v, str):  # "20,200", "20 200"; integers also "2048-2048" (widths)
            dash = r"|(?<=\d)-(?=\d)" if args and args[0] is int else ""
            v = [s for s in re.split(r"[,\s]+" + dash, v) if s]
        if not isinstance(v, (list, tuple)):
            v = [v]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(v) != len(args):
                raise ConfigError(f"{where} needs {len(args)} values, got {value!r}")
            return tuple(convert_value(x, a, where) for x, a in zip(v, args))
        inner = args[0] if args else typing.Any
        return origin(convert_value(x, inner, where) for x in v)
    if isinstance(tp, type) and is_dataclass(tp):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where} must be a {tp.__name__}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where} must be one of {args}, got {value!r}")
    return value  # a type this layer does not know: kept as given


def _yaml_value(value):
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _plain(d):
    """Tuples -> lists, so safe_dump writes plain YAML sequences."""
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d


def load_config(path=None, overrides=()) -> RunConfig:
    """A YAML file (or the defaults) with command-line overrides applied, not yet validated."""
    cfg = RunConfig.from_yaml(path) if path else RunConfig()
    return cfg.apply_overrides(overrides)


def default_threads() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
