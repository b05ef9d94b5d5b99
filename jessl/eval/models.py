"""The network an evaluation measures, from one of three sources, and its random-init twin.

  * a checkpoint of `jessl train` (a file, or a run folder: its newest checkpoint): the backbone
    name, stem and seed come from the config stored in it; its projector comes along when the
    method has one, so embeddings can be probed too;
  * a plain backbone state dict (torchvision / timm style) and a backbone name; a classifier
    head (`fc.*`, `head.*`, `classifier.*`) and `module.` / `backbone.` prefixes are dropped;
  * `random_init`: the architecture at its initialisation for a seed, the baseline every
    trained network is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from jessl.eval.datasets import EvalError
from jessl.eval.report import BASELINE

PREFIXES = ("module.", "backbone.", "_orig_mod.")  # DDP, jessl methods, torch.compile
HEADS = ("fc.", "head.", "classifier.")  # torchvision / timm classifier heads, not features


@dataclass
class EvalModel:
    label: str  # the model's name in reports: a run folder, a weights file, or "random-init"
    backbone: nn.Module  # images (B, 3, H, W) -> features (B, F)
    arch: str  # jessl.models.BACKBONES name or timm:<name>
    cifar_stem: bool
    seed: int  # of the random init this network was (or the baseline is) drawn with
    projector: nn.Module | None = None  # features (B, F) -> embeddings (B, D)
    method: dict | None = field(default=None, repr=False)  # to rebuild the projector at init


def check_arch(arch: str | None) -> str:
    from jessl.models import BACKBONES
    if not arch:
        raise EvalError("--backbone NAME is needed with --weights and --random-init")
    if arch not in BACKBONES and not arch.startswith("timm:"):
        raise EvalError(f"unknown backbone {arch!r}; known: {', '.join(sorted(BACKBONES))} "
                        f"or timm:<name>")
    return arch


def build(arch: str, cifar_stem: bool, seed: int) -> nn.Module:
    """The backbone at its initialisation for `seed`, the global RNG left as it was (the same
    weights as jessl.train.trainer.make_backbone for that seed)."""
    from jessl.models import build_backbone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return build_backbone(arch, cifar_stem)
        except (ImportError, ValueError) as err:
            raise EvalError(str(err)) from None


def random_init(arch: str, cifar_stem: bool, seed: int = 0, method: dict | None = None,
                label: str = BASELINE) -> EvalModel:
    """The untrained network; with `method` ({"name", "projector", "options"}) its projector too."""
    backbone = build(check_arch(arch), cifar_stem, seed)
    projector = None
    if method is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            projector = _method(method, build(arch, cifar_stem, seed)).projector
    return EvalModel(label, backbone.eval(), arch, cifar_stem, seed, projector, method)


def baseline_of(model: EvalModel) -> EvalModel:
    """The same architecture (and projector) at random initialisation, with the model's seed."""
    return random_init(model.arch, model.cifar_stem, model.seed, model.method)


# --- checkpoints of jessl train -----------------------------------------------------------

def checkpoint_file(path) -> Path:
    """A checkpoint file, or a run folder -> its newest checkpoint; EvalError when none."""
    from jessl.checkpoint import latest_checkpoint
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise EvalError(f"{path} holds no checkpoint (looked for checkpoints/epoch-*.pt)")
        return found
    if not path.is_file():
        raise EvalError(f"checkpoint {path} does not exist")
    return path


def from_checkpoint(path, cifar_stem: bool | None = None, data_small: bool | None = None,
                    say=print) -> EvalModel:
    """A `jessl train` checkpoint (file or run folder) -> its backbone (and projector).

    cifar_stem: None reads it from the stored config; a config that left it to the trainer
    (None there too) gets the trainer's rule applied to its train file, or, if that file is
    gone, to the conv1 kernel of a ResNet, or finally to the evaluation data (data_small).
    """
    from jessl.checkpoint import load_checkpoint
    file = checkpoint_file(path)
    try:
        ckpt = load_checkpoint(file)
    except Exception as err:  # not a torch file at all
        raise EvalError(f"{file} is not a checkpoint torch can read: {err}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) \
            or "method" not in ckpt:
        raise EvalError(f"{file} has no stored config and method weights, so it was not written "
                        f"by `jessl train`; for a plain state dict use --weights FILE "
                        f"--backbone NAME")
    config, state = ckpt["config"], ckpt["method"]
    model_cfg = config.get("model") or {}
    arch = check_arch(model_cfg.get("backbone"))
    backbone_state = {k[len("backbone."):]: v for k, v in state.items()
                      if k.startswith("backbone.")}
    if not backbone_state:
        raise EvalError(f"{file}: its method weights hold no backbone.* entries")
    if cifar_stem is None:
        cifar_stem = model_cfg.get("cifar_stem")
    if cifar_stem is None:
        cifar_stem = _stem_of_run(config, backbone_state, data_small, say)
    seed = int((config.get("train") or {}).get("seed", 0))
    backbone = build(arch, cifar_stem, seed)
    _load(backbone, backbone_state, f"{file} ({arch}, cifar_stem={cifar_stem})")
    method_spec = _method_spec(config)
    projector = None
    if method_spec is not None:
        try:
            method = _method(method_spec, backbone)
            method.load_state_dict(state)
            projector = getattr(method, "projector", None)
        except Exception as err:  # the backbone alone still evaluates
            say(f"note: {file}: projector not rebuilt ({type(err).__name__}: {err}); "
                f"evaluating backbone features only")
            method_spec = None
    label = f"{file.parent.parent.name}@{file.stem}" if file.parent.name == "checkpoints" \
        else file.stem
    return EvalModel(label, backbone.eval(), arch, cifar_stem, seed,
                     projector.eval() if projector is not None else None,
                     method_spec if projector is not None else None)


def _stem_of_run(config: dict, backbone_state: dict, data_small: bool | None, say) -> bool:
    from jessl.data.facts import small_images
    train = (config.get("data") or {}).get("train")
    if train and Path(train).is_file():
        return small_images(train)  # what the trainer decided, from the same file
    conv1 = backbone_state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4:
        return conv1.shape[-1] == 3  # ResNet: 3x3 stride-1 CIFAR stem, 7x7 ImageNet stem
    if data_small is None:
        raise EvalError("cannot tell whether the checkpoint used the CIFAR stem: its train file "
                        "is gone; pass --cifar-stem on or off")
    say(f"note: the checkpoint's train file {train} is gone: cifar_stem={data_small}, from "
        f"the evaluation images' size (--cifar-stem sets it)")
    return data_small


def _method_spec(config: dict) -> dict | None:
    """{"name", "projector", "options"} of the run's method, or None when it cannot be read."""
    from jessl.config import ConfigError, RunConfig
    try:
        cfg = RunConfig.from_dict(config)
    except ConfigError:  # a config from another jessl version: the backbone is enough
        return None
    return {"name": cfg.method.name, "projector": cfg.model.projector,
            "options": cfg.method.resolved_options()}


def _method(spec: dict, backbone: nn.Module) -> nn.Module:
    from jessl.methods import build_method
    return build_method(spec["name"], backbone, spec["projector"], spec["options"])


# --- plain state dicts ------------------------------------------------------------------

def from_weights(path, arch: str, cifar_stem: bool | None = None,
                 data_small: bool | None = None, seed: int = 0) -> EvalModel:
    """A backbone state dict file (torch.save(model.state_dict())) -> EvalModel.

    cifar_stem None: a ResNet's conv1 kernel decides (3 = CIFAR stem), else the evaluation
    images' size (data_small), as the trainer decides it.
    """
    arch = check_arch(arch)
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise EvalError(f"{path} is not a plain state dict torch can load with weights_only "
                        f"(a `jessl train` checkpoint? use --checkpoint): "
                        f"{str(err).splitlines()[0]}") from None
    state = clean_state_dict(state)
    if cifar_stem is None:
        conv1 = state.get("conv1.weight")
        cifar_stem = conv1.shape[-1] == 3 if conv1 is not None and conv1.ndim == 4 \
            else bool(data_small)
    backbone = build(arch, cifar_stem, seed)
    _load(backbone, state, f"{path} ({arch}, cifar_stem={cifar_stem})")
    return EvalModel(path.stem, backbone.eval(), arch, cifar_stem, seed)


def clean_state_dict(state) -> dict:
    """Unwrap {"state_dict" | "model": ...}, strip DDP / method / compile prefixes, drop heads."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalError("the weights file does not hold a state dict (name -> tensor)")
    out = {}
    for name, tensor in state.items():
        while name.startswith(PREFIXES):
            name = name[next(len(p) for p in PREFIXES if name.startswith(p)):]
        if not name.startswith(HEADS):
            out[name] = tensor
    return out


def _load(backbone: nn.Module, state: dict, what: str) -> None:
    """load_state_dict(strict) with a one-line account of what did not fit."""
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]}: "
                 f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})" if wrong else ""]
        raise EvalError(f"weights do not fit {what}: " + ", ".join(p for p in parts if p)
                        + "; check --backbone and --cifar-stem")
    backbone.load_state_dict(state)
