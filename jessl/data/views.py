"""View recipes: what each of the V views of an image goes through, and the named presets.

A `View` lists its ops with torchvision's names and meanings (RandomResizedCrop's `scale` and
`ratio`, ColorJitter's four strengths and its RandomApply `p` ...). `jessl.data.sampler` draws
the parameters of every view (all the randomness); `jessl.data.render` applies them with the
pure kernels of `jessl.data.ops` into the batch.

`magnitude` in [0, 1] scales augmentation strength between epochs (Kocyigit et al. 2023,
Super Progressive Learning, section 4: "scale the colour jittering linearly"): by default it
multiplies the four colour-jitter strengths (brightness, contrast, saturation, hue) and nothing
else, as the paper does. `scales="photometric"` is jessl's earlier, broader variant, kept as an
explicit option: every photometric strength (jitter, noise std) and the probability of every
photometric op (jitter, grey, blur, solarize, noise). Geometry (crop, flip) is never scaled.
1 is the recipe as written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB on [0, 1], torchvision reference scripts
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # RGB on [0, 1], CIFAR-10 train set (solo-learn, lightly)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CROPS = ("random", "center", "full")
MAGNITUDE_SCALES = ("jitter", "photometric")  # what View.scaled multiplies (module docstring)


@dataclass(frozen=True)
class View:
    """One view pipeline: crop -> flip -> jitter -> grey -> blur -> solarize -> noise + normalize."""
    size: int | tuple[int, int] = 224  # px output (h, w); an int means square
    crop: str = "random"  # random: RandomResizedCrop; center: Resize + CenterCrop; full: Resize
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area fraction (SimCLR)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio w/h
    resize: int | None = None  # center crop: shorter side first (default size * 256 / 224)
    flip_p: float = 0.5  # RandomHorizontalFlip
    jitter_p: float = 0.0  # RandomApply(ColorJitter(...), p)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grey_p: float = 0.0  # RandomGrayscale
    blur_p: float = 0.0  # RandomApply(GaussianBlur(kernel_size, sigma), p)
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # px, SimCLR appendix A
    blur_kernel: int | None = None  # px, odd; None: 10% of the view side (SimCLR appendix A)
    solarize_p: float = 0.0  # RandomSolarize
    solarize_threshold: int = 128  # uint8 levels (BYOL's 0.5)
    noise_p: float = 0.0  # RandomApply(GaussianNoise(0, noise_std), p)
    noise_std: float = 0.1  # on [0, 1] images, torchvision GaussianNoise default
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        h, w = self.hw
        if h < 1 or w < 1:
            raise ValueError(f"view size must be positive, got {self.size}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, not {self.crop!r}")
        for name in ("flip_p", "jitter_p", "grey_p", "blur_p", "solarize_p", "noise_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    @property
    def kernel_size(self) -> int:
        if self.blur_kernel is not None:
            return self.blur_kernel
        k = max(3, int(0.1 * min(self.hw)))
        return k if k % 2 else k + 1

    def scaled(self, magnitude: float, scales: str = "jitter") -> "View":
        """This view with its colour-jitter strengths multiplied by `magnitude` (the paper's
        SPL), or with scales="photometric" every photometric strength and probability too."""
        if not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"magnitude must be in [0, 1], got {magnitude}")
        if scales not in MAGNITUDE_SCALES:
            raise ValueError(f"scales must be one of {MAGNITUDE_SCALES}, got {scales!r}")
        if magnitude == 1.0:
            return self
        m = magnitude
        jitter = replace(self, brightness=self.brightness * m, contrast=self.contrast * m,
                         saturation=self.saturation * m, hue=self.hue * m)
        if scales == "jitter":
            return jitter
        return replace(jitter, jitter_p=self.jitter_p * m, grey_p=self.grey_p * m,
                       blur_p=self.blur_p * m, solarize_p=self.solarize_p * m,
                       noise_p=self.noise_p * m, noise_std=self.noise_std * m)


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
