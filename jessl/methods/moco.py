"""MoCo: a momentum (EMA) key encoder. version "v2" (Chen, Fan, Girshick, He 2020): one query
view against the other's key, a queue of past keys as negatives, constant momentum. version "v3"
(Chen, Xie, He 2021): symmetric, in-batch negatives, a predictor, momentum cosine-annealed to 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..losses import moco_info_nce, moco_v3
from ..models import heads
from ..queues import new_queue, push_
from .base import Method, StepOutput, apply_head, cosine_at, ema_copy, ema_update_, encode

VERSIONS = ("v2", "v3")


@dataclass
class MoCoOptions:
    version: str = "v2"  # "v2": queue of negatives; "v3": symmetric with a predictor, no queue
    # None: the version's own, 0.2 for v2 (MoCo v2 section 3) and 1.0 for v3 with a ResNet
    # (facebookresearch/moco-v3 --moco-t; ViTs use 0.2)
    temperature: float | None = None
    # keys in the v2 queue (K), MoCo section 4.1 (ImageNet); 4096 is plenty for CIFAR-10's 50k
    # images and keeps the keys fresher in short runs
    queue_size: int = 65536
    # EMA momentum of the key encoder: moco-v3 --moco-m 0.99 (ResNet-50), cosine-annealed to 1
    # for v3 and held constant for v2. MoCo v1/v2 use 0.999 on ImageNet's 5k steps per epoch;
    # 0.99 (solo-learn's CIFAR MoCo v2+) suits runs of a few hundred steps per epoch
    momentum: float = 0.99
    predictor_hidden: str = "4096"  # v3 predictor widths before the output, moco-v3 --moco-mlp-dim


class MoCo(Method):
    name = "moco"
    options = MoCoOptions
    views = "simclr"  # MoCo v2 section 3: SimCLR's augmentations with blur (v3 uses BYOL's)
    num_views = 2
    # v2: MoCo v2's MLP head 2048-ReLU-128 without BatchNorm; v3: moco-v3 builder.py ResNet
    # projector, Linear-BN-ReLU then Linear-BN(affine=False) to 256, predictor 4096-256
    default_projectors = {"v2": "2048-128", "v3": "4096-256"}
    default_projector = default_projectors["v2"]
    # v2: MoCo section 3.3 / MoCo v2 section 3 (ImageNet, 200 epochs, batch 256)
    recipe = {
        "optim.optimizer": ("sgd", "MoCo section 3.3, MoCo v2 section 3"),
        "optim.lr": (0.03, "per 256 images, MoCo section 3.3: 0.03 at batch 256"),
        "optim.scaling": ("linear", "MoCo v2 section 3 (lr x B/256, Goyal et al. 2017)"),
        "optim.weight_decay": (1e-4, "MoCo section 3.3"),
        "optim.momentum": (0.9, "MoCo section 3.3"),
        "optim.warmup_epochs": (0.0, "MoCo v2 section 3: no warm-up"),
        "optim.final_lr": (0.0, "MoCo v2 section 3: cosine schedule (SGDR, Loshchilov 2016)"),
    }
    # v3 with a ResNet: facebookresearch/moco-v3 main_moco.py defaults (100 epochs, batch 4096)
    recipe_v3 = {
        "optim.optimizer": ("lars", "moco-v3 main_moco.py --optimizer lars (ResNet)"),
        "optim.lr": (0.6, "per 256 images, moco-v3 main_moco.py --lr: lr x B/256"),
        "optim.scaling": ("linear", "moco-v3 main_moco.py"),
        "optim.weight_decay": (1e-6, "moco-v3 main_moco.py --wd"),
        "optim.momentum": (0.9, "LARS momentum, moco-v3 main_moco.py"),
        "optim.warmup_epochs": (10.0, "moco-v3 main_moco.py --warmup-epochs"),
        "optim.final_lr": (0.0, "moco-v3 main_moco.py adjust_learning_rate: half-cosine to 0"),
    }

    @classmethod
    def recipe_for(cls, opts):
        return cls.recipe_v3 if opts is not None and opts.version == "v3" else cls.recipe

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        o = self.opts
        if o.version not in VERSIONS:
            raise ValueError(f"MoCo version must be one of {VERSIONS}, got {o.version!r}")
        spec = projector or self.default_projectors[o.version]
        out_dim = heads.parse_dims(spec)[-1]
        if o.version == "v2":
            self.projector = heads.projector(backbone.feature_dim, spec, norm=None)
            self.register_buffer("queue", new_queue(o.queue_size, out_dim))  # (K, D)
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        else:
            self.projector = heads.projector(backbone.feature_dim, spec, last_norm="bn_noaffine")
            # moco-v3 _build_mlp(last_bn=False): no bias anywhere, so none on the last Linear
            self.predictor = heads.predictor(out_dim, o.predictor_hidden, last_bias=False)
        self.teacher = ema_copy(nn.ModuleDict({"backbone": backbone, "projector": self.projector}))
        self.temperature = o.temperature if o.temperature is not None else (
            0.2 if o.version == "v2" else 1.0)
        self.momentum = o.momentum  # the value the last after_step used

    def head_spec(self, projector):
        return projector or self.default_projectors[self.opts.version]

    def _keys(self, views):
        with torch.no_grad():
            return apply_head(self.teacher["projector"], encode(self.teacher["backbone"], views))

    def forward(self, views):
        self.check_views(views)
        if self.opts.version == "v2":
            # MoCo v2 is asymmetric: the query encoder sees view 0 only, the key encoder view 1.
            # No shuffle-BN: on one process the key batch's BN statistics are not shared with
            # the queries' anyway (it is the cross-GPU leak that shuffling hides)
            h = self.backbone(views[0])  # (B, F)
            q = self.projector(h)  # (B, D)
            k = self._keys(views[1:])[0]  # (B, D)
            loss = moco_info_nce(q, k, self.queue, self.temperature)
            if self.training:  # enqueue after the loss, as the reference does
                self.queue_ptr.fill_(push_(self.queue, int(self.queue_ptr), k, self.gather))
            return StepOutput(loss, h.detach(), q.detach(), {"momentum": self.momentum})
        h = encode(self.backbone, views)  # 2 x (B, F)
        z = apply_head(self.projector, h)  # 2 x (B, D)
        q = apply_head(self.predictor, z)  # 2 x (B, D)
        k = self._keys(views)  # 2 x (B, D)
        loss = moco_v3(q[0], q[1], k[0], k[1], self.temperature, self.gather)
        return StepOutput(loss, h[0].detach(), z[0].detach(), {"momentum": self.momentum})

    def after_step(self, step, total_steps):
        o = self.opts
        self.momentum = (o.momentum if o.version == "v2"
                         else cosine_at(o.momentum, 1.0, step, total_steps))  # moco-v3 main
        ema_update_(self.teacher["backbone"], self.backbone, self.momentum)
        ema_update_(self.teacher["projector"], self.projector, self.momentum)
