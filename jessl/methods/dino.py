"""DINO (Caron et al. 2021): self-distillation of an EMA teacher's centred, sharpened softmax over
K prototypes into the student's, with multi-crop (the teacher sees only the 2 global views)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import dino_loss, update_center
from ..models import heads
from .base import N_GLOBAL, Method, StepOutput, cosine_at, ema_copy, ema_update_, encode


@dataclass
class DINOOptions:
    # prototypes K, main_dino.py --out_dim 65536. The last layer is bottleneck x K and the loss
    # is (views x B x K): on a CPU use 4096 or fewer (solo-learn's CIFAR DINO uses 4096)
    num_prototypes: int = 65536
    student_temp: float = 0.1  # DINO section 3.1, main_dino.py DINOLoss
    warmup_teacher_temp: float = 0.04  # teacher temperature at step 0, DINO appendix (impl.)
    teacher_temp: float = 0.07  # after the warm-up, DINO appendix; above 0.07 is unstable
    # linear warm-up length as a fraction of all steps: DINO warms up over 30 epochs of its
    # 100-epoch recipe (README, --warmup_teacher_temp_epochs 30)
    teacher_temp_warmup: float = 0.3
    center_momentum: float = 0.9  # main_dino.py --center_momentum
    momentum: float = 0.996  # teacher EMA at step 0, main_dino.py --momentum_teacher; cosine to 1
    # fraction of all steps during which the prototype layer gets no update: main_dino.py
    # --freeze_last_layer 1 (epoch) of its 100, "helps with the optimization" (it keeps the
    # randomly initialised prototypes from collapsing onto the first, poor features)
    freeze_last_layer: float = 0.01


class DINO(Method):
    name = "dino"
    options = DINOOptions
    views = "multicrop"  # 2 global crops then the local ones
    num_views = None  # any number >= 2: the first 2 are the global views, the only ones the
    multicrop = True  # teacher sees
    # DINOHead: 3 layers, hidden 2048, bottleneck 256, GELU, no BN (use_bn_in_head False); the
    # L2-normalised bottleneck then feeds the weight-normalised prototype layer
    default_projector = "2048-2048-256"
    # main_dino.py's defaults (ViT-S/16, 100 epochs, batch 1024), DINO section 4.1 and appendix
    recipe = {
        "optim.optimizer": ("adamw", "DINO section 4.1, main_dino.py --optimizer adamw"),
        "optim.lr": (0.0005, "per 256 images, DINO section 4.1: 0.0005 x B/256"),
        "optim.scaling": ("linear", "DINO section 4.1"),
        "optim.weight_decay": (0.04, "at step 0, DINO section 4.1, main_dino.py --weight_decay"),
        "optim.weight_decay_end": (0.4, "cosine from 0.04 to 0.4, DINO section 4.1, "
                                        "main_dino.py --weight_decay_end"),
        "optim.momentum": (0.9, "AdamW beta1, torch's default, as main_dino.py"),
        "optim.warmup_epochs": (10.0, "DINO section 4.1: linear warm-up over 10 epochs"),
        "optim.final_lr": (0.002, "main_dino.py --min_lr 1e-6, as a fraction of 0.0005 "
                                  "(batch 256)"),
        "optim.clip_grad": (3.0, "main_dino.py --clip_grad 3.0"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        o = self.opts
        spec = self.head_spec(projector)
        self.projector = heads.projector(backbone.feature_dim, spec, norm=None, act="gelu")
        self.prototypes = heads.Prototypes(heads.parse_dims(spec)[-1], o.num_prototypes)
        self.teacher = ema_copy(nn.ModuleDict({"backbone": backbone, "projector": self.projector,
                                               "prototypes": self.prototypes}))
        self.register_buffer("center", torch.zeros(1, o.num_prototypes))  # (1, K)
        # the temperature the next forward uses, set by after_step (a buffer: resumes exactly)
        self.register_buffer("teacher_temp", torch.tensor(float(o.warmup_teacher_temp)))
        self.momentum = o.momentum  # the value the last after_step used
        self._temps = (0, np.empty(0))  # (total_steps, schedule): computed once per run length

    def teacher_temp_schedule(self, total_steps: int) -> np.ndarray:
        """(total_steps,) teacher temperature: linear warm-up then constant (DINO main_dino.py
        DINOLoss: np.linspace over the warm-up, then teacher_temp)."""
        o = self.opts
        warm = min(int(round(o.teacher_temp_warmup * total_steps)), total_steps)
        return np.concatenate([np.linspace(o.warmup_teacher_temp, o.teacher_temp, warm),
                               np.full(total_steps - warm, o.teacher_temp)])

    def _head(self, projector, prototypes, h):
        """(N, F) -> bottleneck (N, D) and prototype logits (N, K)."""
        z = projector(h)
        return z, prototypes(F.normalize(z, dim=1))

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z, logits = self._head(self.projector, self.prototypes, torch.cat(h))  # (V*B, D), (V*B, K)
        student = list(logits.chunk(len(views)))  # V x (B, K)
        with torch.no_grad():
            t = self.teacher
            th = encode(t["backbone"], views[:N_GLOBAL])
            teacher = list(self._head(t["projector"], t["prototypes"], torch.cat(th))[1]
                           .chunk(N_GLOBAL))  # 2 x (B, K)
        temp = float(self.teacher_temp)
        loss = dino_loss(student, teacher, self.center, student_temp=self.opts.student_temp,
                         teacher_temp=temp)
        if self.training:  # DINOLoss.update_center, after the loss as in the reference
            self.center.copy_(update_center(self.center, teacher, self.opts.center_momentum,
                                            self.gather))
        embeddings = z[: views[0].shape[0]]  # bottleneck of view 0 (B, D), before the prototypes
        return StepOutput(loss, h[0].detach(), embeddings.detach(),
                          {"teacher_temp": temp, "momentum": self.momentum})

    def before_optimizer_step(self, step, total_steps):
        # main_dino.py utils.cancel_gradients_last_layer, after clipping and before the step
        if step < int(round(self.opts.freeze_last_layer * total_steps)):
            self.prototypes.weight.grad = None

    def after_step(self, step, total_steps):
        o = self.opts
        self.momentum = cosine_at(o.momentum, 1.0, step, total_steps)  # main_dino.py
        for name, student in (("backbone", self.backbone), ("projector", self.projector),
                              ("prototypes", self.prototypes)):
            ema_update_(self.teacher[name], student, self.momentum)
        nxt = min(step + 1, total_steps - 1)
        if self._temps[0] != total_steps:
            self._temps = (total_steps, self.teacher_temp_schedule(total_steps))
        self.teacher_temp.fill_(float(self._temps[1][nxt]))
