"""View recipes: what each of the V views of an image goes through, and the named presets.

A `View` lists its ops with torchvision's names and meanings (RandomResizedCrop's `scale` and
`ratio`, ColorJitter's four strengths and its RandomApply `p` ...). Its fields are generated
from the registered ops (`jessl.data.ops.registry.PIPELINE`: each op file declares its own, with
defaults, units and sources; `help(View)` lists them). `jessl.data.sampler` draws the
parameters of every view (all the randomness); `jessl.data.render` applies them with the pure
kernels of `jessl.data.ops` into the batch.

`magnitude` in [0, 1] scales augmentation strength between epochs (Kocyigit et al. 2023,
Super Progressive Learning, section 4: "scale the colour jittering linearly"): by default it
multiplies the four colour-jitter strengths (brightness, contrast, saturation, hue) and nothing
else, as the paper does. `scales="photometric"` is jessl's earlier, broader variant, kept as an
explicit option: every photometric strength (jitter, noise std) and the probability of every
photometric op (jitter, grey, blur, solarize, noise). Geometry (crop, flip) is never scaled.
1 is the recipe as written.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass, replace

from jessl.data.ops.blur import kernel_size
from jessl.data.ops.crop import CROPS  # noqa: F401 (re-exported: View.crop's values)
from jessl.data.ops.registry import PIPELINE
from jessl.data.ops.spec import JITTER, PHOTOMETRIC, PROBABILITY

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB on [0, 1], torchvision reference scripts
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # RGB on [0, 1], CIFAR-10 train set (solo-learn, lightly)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
MAGNITUDE_SCALES = (JITTER, PHOTOMETRIC)  # what View.scaled multiplies (module docstring)
FIELDS = tuple(f for spec in PIPELINE for f in spec.fields)  # every op's, in pipeline order
FIELD_BY_NAME = {f.name: f for f in FIELDS}


class ViewRules:
    """What every View does; its fields are the registered ops' (`View.__doc__` lists them)."""

    def __post_init__(self):
        for spec in PIPELINE:
            for f in spec.fields:
                value = getattr(self, f.name)
                if f.kind == PROBABILITY and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be a probability, got {value}")
            if spec.check is not None:
                spec.check(self)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    @property
    def kernel_size(self) -> int:
        return kernel_size(self)

    def scaled(self, magnitude: float, scales: str = JITTER) -> "View":
        """This view with its colour-jitter strengths multiplied by `magnitude` (the paper's
        SPL), or with scales="photometric" every photometric strength and probability too."""
        if not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"magnitude must be in [0, 1], got {magnitude}")
        if scales not in MAGNITUDE_SCALES:
            raise ValueError(f"scales must be one of {MAGNITUDE_SCALES}, got {scales!r}")
        if magnitude == 1.0:
            return self
        chosen = (JITTER,) if scales == JITTER else (JITTER, PHOTOMETRIC)
        return replace(self, **{f.name: getattr(self, f.name) * magnitude for f in FIELDS
                                if f.scaled in chosen})


def _view_doc() -> str:
    lines = ["One view pipeline: crop -> flip -> jitter -> grey -> blur -> solarize -> noise + "
             "normalize.", "", "Fields (from the registered ops, jessl.data.ops.registry):"]
    lines += [f"    {f.name} = {f.default!r}  # {f.doc}" for f in FIELDS]
    return "\n".join(lines)


View = make_dataclass("View", [(f.name, object, field(default=f.default)) for f in FIELDS],
                      bases=(ViewRules,), frozen=True)
View.__module__, View.__doc__ = __name__, _view_doc()  # pickle finds it here


# --- presets, named after their sources ----------------------------------------------------

def _simclr(size, blur, mean, std):
    # SimCLR (Chen et al. 2020) appendix A: jitter 0.8 x (0.4, 0.4, 0.4, 0.1) at strength 0.5
    # as most reproductions use; grey 0.2; blur 0.5 on ImageNet, none on CIFAR
    v = View(size=size, jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
             grey_p=0.2, blur_p=0.5 if blur else 0.0, mean=mean, std=std)
    return [v, v]


def _byol(size, blur, mean, std):
    # BYOL (Grill et al. 2020) table 6: jitter 0.8 x (0.4, 0.4, 0.2, 0.1), grey 0.2, blur 1.0 /
    # 0.1, solarize 0.0 / 0.2; VICReg and Barlow Twins use the same asymmetric pair
    base = View(size=size, jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                grey_p=0.2, mean=mean, std=std)
    return [replace(base, blur_p=1.0 if blur else 0.0),
            replace(base, blur_p=0.1 if blur else 0.0, solarize_p=0.2)]


def _crop(size, blur, mean, std):
    # FFCV-SSL section 3.2 / Figure 6's "crop" arm: random resized crops + flip, nothing else
    v = View(size=size, mean=mean, std=std)
    return [v, v]


def _crop_grey(size, blur, mean, std):
    # FFCV-SSL (Bordes et al. 2023) section 3.2: crops + flip, and greyscale "on one branch",
    # the cheap recipe; the paper gives no probability: SimCLR's 0.2 (appendix A)
    v = _crop(size, blur, mean, std)[0]
    return [v, replace(v, grey_p=0.2)]


def _noise(size, blur, mean, std):
    # FFCV-SSL section 3.4, instance SimCLR: the whole image, Gaussian noise the only change
    v = View(size=size, crop="full", flip_p=0.0, noise_p=1.0, noise_std=0.1, mean=mean, std=std)
    return [v, v]


def _instance(size, blur, mean, std):
    # FFCV-SSL section 3.4, instance SimCLR: the two noise views are the positive pair and a
    # small random patch of the same image, resized to the view size, its single negative (the
    # paper gives no patch size: 5-25% of the area, below SimCLR's typical crop). The patch
    # gets the same noise: without it "is there noise?" tells the negative apart, a shortcut
    # that drove the loss to 0.000 in 3 epochs while the features learned little
    noise = _noise(size, blur, mean, std)[0]
    patch = replace(noise, crop="random", scale=(0.05, 0.25))
    return [noise, noise, patch]


def _multicrop(size, blur, mean, std, local_size=96, n_local=6):
    # DINO (Caron et al. 2021): 2 global crops (scale 0.4-1) as BYOL's pair, n local (0.05-0.4)
    global_views = [replace(v, scale=(0.4, 1.0)) for v in _byol(size, blur, mean, std)]
    local = replace(global_views[0], size=local_size, scale=(0.05, 0.4),
                    blur_p=0.5 if blur else 0.0)
    return global_views + [local] * n_local


def _swav(size, blur, mean, std, local_size=96, n_local=6):
    # SwAV (Caron et al. 2020) appendix A.1/A.2, main_swav.py: 2 global crops (scale 0.14-1) and
    # n local ones (0.05-0.14), every crop with SimCLR's distortion at strength 1 (jitter 0.8 x
    # (0.8, 0.8, 0.8, 0.2), grey 0.2) and blur 0.5; the CIFAR variant drops the blur as SimCLR's
    v = View(size=size, scale=(0.14, 1.0), jitter_p=0.8, brightness=0.8, contrast=0.8,
             saturation=0.8, hue=0.2, grey_p=0.2, blur_p=0.5 if blur else 0.0, mean=mean, std=std)
    return [v, v] + [replace(v, size=local_size, scale=(0.05, 0.14))] * n_local


PRESETS = {
    "simclr": lambda: _simclr(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "byol": lambda: _byol(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "crop": lambda: _crop(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "crop_grey": lambda: _crop_grey(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "noise": lambda: _noise(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "instance": lambda: _instance(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "multicrop": lambda: _multicrop(224, True, IMAGENET_MEAN, IMAGENET_STD),
    "swav": lambda: _swav(224, True, IMAGENET_MEAN, IMAGENET_STD),
    # 32 px CIFAR variants: no blur (it destroys 32 px images; SimCLR appendix B.9)
    "simclr_cifar": lambda: _simclr(32, False, CIFAR_MEAN, CIFAR_STD),
    "byol_cifar": lambda: _byol(32, False, CIFAR_MEAN, CIFAR_STD),
    "crop_cifar": lambda: _crop(32, False, CIFAR_MEAN, CIFAR_STD),
    "crop_grey_cifar": lambda: _crop_grey(32, False, CIFAR_MEAN, CIFAR_STD),
    "noise_cifar": lambda: _noise(32, False, CIFAR_MEAN, CIFAR_STD),
    "instance_cifar": lambda: _instance(32, False, CIFAR_MEAN, CIFAR_STD),
    "multicrop_cifar": lambda: _multicrop(32, False, CIFAR_MEAN, CIFAR_STD, local_size=16),
    "swav_cifar": lambda: _swav(32, False, CIFAR_MEAN, CIFAR_STD, local_size=16),
    # evaluation: Resize(256) + CenterCrop(224), or the whole 32 px image
    "eval": lambda: [View(size=224, crop="center", flip_p=0.0)],
    "eval_cifar": lambda: [View(size=32, crop="full", flip_p=0.0, mean=CIFAR_MEAN,
                                std=CIFAR_STD)],
}


def with_local_views(views: list[View], n_local: int, name: str = "") -> list[View]:
    """A multi-crop preset's 2 global views then `n_local` copies of its local view (view 2):
    the multi-crop count without a preset per count. ValueError if `views` has no local view."""
    if n_local and len(views) < 3:
        raise ValueError(f"view preset {name or 'given'} has no local view to repeat; multi-crop "
                         f"needs a multicrop preset (multicrop, swav and their _cifar variants)")
    return views[:2] + views[2:3] * n_local


def parse_field(name: str, text: str):
    """A View field's value from text, by the type of its default: "a:b" for a pair (scale,
    ratio, blur_sigma, mean/std as "a:b:c", size as "h:w"), "none" for an unset optional."""
    field_ = FIELD_BY_NAME.get(name)
    if field_ is None:
        raise ValueError(f"no view field {name!r}; fields: {', '.join(FIELD_BY_NAME)}")
    text = text.strip()
    if text.lower() == "none":
        return None
    if isinstance(field_.default, str):
        return text
    parts = text.split(":")
    try:
        numbers = tuple(int(p) if p.strip().lstrip("-").isdigit() else float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number or numbers a:b") from None
    pair = isinstance(field_.default, tuple)
    if pair and len(numbers) != len(field_.default):
        raise ValueError(f"{name} takes {len(field_.default)} numbers "
                         f"{':'.join('abc'[:len(field_.default)])}, got {text!r}")
    if not pair and len(numbers) > (2 if name == "size" else 1):
        raise ValueError(f"{name} takes one number{' or h:w' if name == 'size' else ''}, "
                         f"got {text!r}")
    return numbers if pair or len(numbers) > 1 else numbers[0]


def set_fields(views: list[View], spec: str) -> list[View]:
    """The views with some fields set by `spec`, `data.view_set`'s syntax: "V.FIELD=VALUE"
    assignments separated by ";", applied in order; V a view's index from 0, "all", "global"
    (views 0 and 1, the pair every preset starts with) or "local" (views 2 on: a multi-crop
    preset's local crops, however many `data.local_views` made) (`2.scale=0.02:0.08;
    all.grey_p=0.5`, `global.scale=0.2:1;local.scale=0.05:0.2`). One knob of a preset varied
    from the config, as a study's grid does, without a preset per value. ValueError naming the
    assignment that cannot apply."""
    views = list(views)
    groups = {"all": range(len(views)), "global": range(min(2, len(views))),
              "local": range(2, len(views))}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        target, sep, value = item.partition("=")
        index, dot, name = target.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"{item!r}: write VIEW.FIELD=VALUE, VIEW a view index, 'all', "
                             f"'global' or 'local'")
        if index in groups and len(groups[index]):
            chosen = groups[index]
        elif index.isdigit() and int(index) < len(views):
            chosen = [int(index)]
        else:
            raise ValueError(f"{item!r}: view {index!r} is not one of 0..{len(views) - 1}, "
                             f"'all', 'global' or 'local' (with views beyond the first two) "
                             f"({len(views)} views)")
        try:
            parsed = parse_field(name, value)
            for i in chosen:
                views[i] = replace(views[i], **{name: parsed})
        except ValueError as err:
            raise ValueError(f"{item!r}: {err}") from None
    return views


def resolve_views(views) -> list[View]:
    """A preset name or a list of View -> list of View."""
    if isinstance(views, str):
        if views not in PRESETS:
            raise ValueError(f"unknown view preset {views!r}; known: {sorted(PRESETS)}")
        return PRESETS[views]()
    views = list(views)
    if not views or not all(isinstance(v, View) for v in views):
        raise ValueError("views must be a preset name or a non-empty list of View")
    return views
