"""Features once, then every probe is a function of them.

`extract_features` runs a backbone over a dataset file through the Loader (sequential order, no
dropped tail, eval views) and returns (N, F) float32 features with their labels. With a
`cache_dir`, the result is stored under a hash of everything it depends on (the backbone's
weights, the file's path, size and modification time, the views, the records), so a second
probe of the same network costs a file read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jessl.config import EvalConfig
from jessl.data.facts import eval_views

def extract_features(backbone: nn.Module, path, views=None,
                     batch_size: int = EvalConfig.batch_size,
                     num_threads: int | None = None, indices=None, cache_dir=None,
                     channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """backbone over `path` -> (features (N, F) float32, labels (N,) int64), in file order.

    `views`: a preset name or list of View (only the first view is used); None picks "eval" or
    "eval_cifar" by image size. The images go to the backbone's device (a CUDA backbone runs on
    its GPU); the features come back on the CPU. Runs under torch.no_grad in eval mode and restores the
    backbone's training mode afterwards. `cache_dir`: folder for the on-disk cache (None: off).
    """
    from jessl.data.loader import Loader, output_for
    from jessl.data.views import resolve_views

    views = resolve_views(eval_views(path) if views is None else views)[:1]
    cache_file = None
    if cache_dir is not None:
        key = cache_key(backbone, path, views, indices)
        cache_file = Path(cache_dir) / f"features-{key}.pt"
        if cache_file.is_file():
            try:
                saved = torch.load(cache_file, map_location="cpu", weights_only=True)
                return saved["features"], saved["labels"]
            except Exception:  # a damaged cache file is recomputed, never trusted
                pass
    device = device_of(backbone)  # images go where the weights are; features come back to the CPU
    loader = Loader(path, batch_size, views, order="sequential", drop_last=False,
                    num_threads=num_threads, indices=indices, channels_last=channels_last,
                    output=output_for(device, views))
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        with torch.no_grad():
            for batch in loader.iter_epoch(0):
                x = loader.on_device(batch.views, device)[0]
                feats.append(backbone(x).float().cpu())  # (B, F)
                labels.append(batch.labels)
    finally:
        backbone.train(was_training)
    features, labels = torch.cat(feats), torch.cat(labels)
    if cache_file is not None:
        from jessl.checkpoint import atomic_save
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"features": features, "labels": labels}, cache_file)
    return features, labels


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for one without either."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def cache_key(backbone: nn.Module, path, views, indices=None) -> str:
    """SHA-256 (first 24 hex digits) of the weights, the file's identity and the views."""
    h = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    path = Path(path).resolve()
    stat = path.stat()
    h.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{views!r}".encode())
    if indices is not None:
        h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:24]
