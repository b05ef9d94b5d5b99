"""`train(cfg)`: SSL pretraining as one linear loop (nanoGPT's train.py, DINO's main_dino.py).

Read it top to bottom: the process (threads, JIT switch, seeds), the data, the model, the
optimizer and its schedules (arrays, one value per step), the online probe, the run folder and
a resume, then the loop; after every epoch the probe's validation accuracy and a checkpoint;
at the end kNN and RankMe. The one hook a method gets is `after_step` (EMA teachers).

Only rank 0 writes files and prints. A resumed run continues exactly: the loader's batches are
a pure function of (seed, epoch, batch), and the checkpoint holds the model, the optimizers,
the probe, the step and every RNG, so the next losses equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jessl import __version__, distributed
from jessl.checkpoint import (atomic_save, checkpoint_path, latest_checkpoint, load_checkpoint,
                               prune_checkpoints, rng_state, set_rng_state)
from jessl.config import RunConfig, default_threads
from jessl.files import write_atomic
from jessl.train.curve import read_metrics, stopped_epoch
from jessl.train.flops import PETA, FlopMeter, shape_key
from jessl.train.probe import (OnlineProbe, probe_dims, probe_inputs, projector_blocks,
                               recalibration_sample)


def train(cfg: RunConfig) -> dict:
    """Pretrain as `cfg` says; returns the final metrics (rank 0; other ranks: training ones)."""
    from jessl.train.inputs import check_inputs
    cfg.validate()
    check_inputs(cfg)  # the run folder and the data files, before anything is written
    t, is_main = cfg.train, distributed.rank() == 0
    world = distributed.world_size()
    run_dir = Path(t.out)
    say = print if is_main else (lambda *a, **k: None)

    # --- the process: threads, the JIT switch and the seeds, set here and nowhere else ---------
    threads = setup_process(cfg, say)
    device = pick_device(t.device)

    # --- data --------------------------------------------------------------------------------
    from jessl.data.loader import Loader  # after setup_process: the JIT switch is read at import
    from jessl.data.facts import eval_preset, small_images
    from jessl.eval.features import extract_features
    from jessl.train import hard_augment
    small = small_images(cfg.data.train)
    views = cfg.views_preset()
    # Hard Augment: the loader draws m candidates of the pair, the loop mines the hardest
    hard, loader_views = hard_augment.from_config(cfg.hard_augment, cfg.view_list())
    loader = build_loader(cfg, Loader, loader_views, world, device)
    steps_per_epoch = len(loader)
    total_steps = t.epochs * steps_per_epoch
    sizes, magnitudes = view_schedule(cfg, min(loader.views[0].hw))
    if cfg.progressive.active:
        from jessl.train.progressive import relative_cost
        cost = relative_cost(sizes, max(sizes))
        say(f"progressive: view size per epoch {sizes}, magnitude "
            f"{[round(m, 2) for m in magnitudes]} ({cfg.progressive.magnitude_scales}); "
            f"pixels {cost['pixel_cost']:.2f} of full size (eq. 9 speed-up "
            f"{cost['eq9_speedup']:.2f})")
    labels = loader.labels
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    eval_views = eval_preset(small)
    say(f"data: {cfg.data.train} ({len(loader.indices):,} images, {num_classes} classes), "
        f"views {views}, batch {cfg.data.batch_size} ({world} x {loader.batch_size}), "
        f"{steps_per_epoch} steps/epoch x {t.epochs} epochs")
    if hard is not None:
        say(f"hard augment: hardest of {len(hard.first)} pairs of {hard.m} candidates per "
            f"image, selection at {hard.size} px (bn {hard.bn}, scorer {hard.scorer})"
            + (f", not in epochs of views <= {hard.size} px" if hard.skip_small else "")
            + (f", from epoch {hard.start_epoch + 1}" if hard.start_epoch else ""))

    # --- model: backbone + method (projector, predictor, EMA teacher, loss) --------------------
    from jessl.methods import build_method
    cifar_stem = small if cfg.model.cifar_stem is None else cfg.model.cifar_stem
    backbone = make_backbone(cfg, cifar_stem)
    gather = distributed.gather_with_grad if distributed.is_distributed() else None
    method = build_method(cfg.method.name, backbone, cfg.model.projector,
                          cfg.method.resolved_options(), gather)
    if t.sync_bn and distributed.is_distributed():  # before the probe's projector blocks
        method = distributed.convert_sync_batchnorm(method)
    method = method.to(device)  # in place: `backbone` is the same module, now on `device`
    if t.channels_last:
        method = method.to(memory_format=torch.channels_last)
    model = method
    if distributed.is_distributed():  # averages gradients; the loss itself is global already
        model = nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        model = torch.compile(model)
    say(f"model: {cfg.method.name} on {cfg.model.backbone} (cifar_stem={cifar_stem}, "
        f"{backbone.feature_dim} features), {_count(method.parameters_to_optimize()):,} "
        f"trained parameters, on {device}")

    # --- optimizer and schedules (arrays, one value per step) ---------------------------------
    from jessl.train.optim import build_optimizer, param_groups, set_hyperparams
    params = list(method.parameters_to_optimize())
    schedule = build_schedules(cfg, steps_per_epoch)
    # no decay on 1-D parameters; SimSiam's predictor at the peak lr throughout
    groups = param_groups(nn.ParameterList(params), cfg.optim.weight_decay,
                          fixed_lr=method.fixed_lr_parameters(),
                          fixed_lr_value=schedule["peak_lr"])
    optimizer = build_optimizer(cfg.optim.optimizer, groups, lr=float(schedule["lr"][0]),
                                weight_decay=cfg.optim.weight_decay,
                                momentum=float(schedule["momentum"][0]))
    say(f"optim: {cfg.optim.optimizer}, peak lr {schedule['peak_lr']:.4g} ({cfg.optim.lr} per "
        f"256 images, {cfg.optim.scaling} rule), {cfg.optim.schedule} with "
        f"{schedule['warmup_steps']} warm-up steps")

    # --- the online probe: detached features, its own optimizer -------------------------------
    blocks = projector_blocks(getattr(method, "projector", None)) \
        if cfg.probe.projector_layers else []
    probe = None
    if cfg.probe.enabled and num_classes > 1:
        probe = OnlineProbe(probe_dims(backbone.feature_dim, blocks), num_classes, cfg.probe.lr,
                            cfg.probe.momentum, cfg.probe.weight_decay).to(device)
    elif cfg.probe.enabled:
        say(f"probe: off, the train file has {'one class' if num_classes else 'no labels'}")
    # recalibration: a fixed, seeded sample of the training records, seen as the test images
    recal_indices = recalibration_sample(loader.indices, cfg.probe.recalibrate, t.seed) \
        if probe is not None and cfg.data.val else None
    if recal_indices is not None:
        say(f"probe: BN statistics recalibrated before each validation on {len(recal_indices):,} "
            f"training images at the test size")
    if probe is not None and distributed.is_distributed():
        # the probe trains outside DDP: average its gradients too, so every rank holds the
        # probe that rank 0 checkpoints (and, with sync_bn, the single-process probe)
        if t.sync_bn:
            probe = distributed.convert_sync_batchnorm(probe)
        distributed.average_gradients_before_step(probe.optimizer)

    # --- resume --------------------------------------------------------------------------------
    step = 0  # optimizer steps done
    # compute accounting (jessl.train.flops): FLOPs of every process's steps, and training
    # seconds (data wait + steps, no evaluation), both cumulative over the run
    meter, wall_s = FlopMeter(scale=world), 0.0
    resume = latest_checkpoint(run_dir) if t.resume == "auto" else \
        (Path(t.resume) if t.resume else None)
    if t.resume == "auto" and resume is None:
        say(fresh_start_notice(run_dir))
    if resume is not None:
        ckpt = load_checkpoint(resume)
        method.load_state_dict(ckpt["method"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if probe is not None and ckpt.get("probe") is not None:
            probe.load_state_dict(ckpt["probe"])
            probe.optimizer.load_state_dict(ckpt["probe_optimizer"])
        loader.load_state_dict(ckpt["loader"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        meter.total, wall_s = float(ckpt.get("flops", 0.0)), float(ckpt.get("wall_s", 0.0))
        meter.by_part = dict(ckpt.get("flops_by_part", {}))
        if ckpt.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
            raise ValueError(f"{resume} was written with {ckpt['steps_per_epoch']} steps per "
                             f"epoch, this config gives {steps_per_epoch}: batch size or data "
                             f"changed, so the run cannot continue exactly")
        say(f"resume: {resume} (epoch {ckpt['epoch']}, step {step})")

    # --- the run folder: config, versions, environment, metrics --------------------------------
    log = RunLog(run_dir, enabled=is_main, resume_step=step if resume is not None else None)
    if is_main:
        cfg.to_yaml(run_dir / "config.yaml")
        _write_json(run_dir / "version.json", version_info())
        _write_json(run_dir / "env.json", environment(threads, loader.num_threads, cfg, device))

    # --- the loop ------------------------------------------------------------------------------
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    start_epoch = step // steps_per_epoch
    stop_epoch = t.stop_after or t.epochs
    embeddings: list[torch.Tensor] = []  # this epoch's newest rankme_samples embeddings
    result = {}
    for epoch in range(start_epoch, stop_epoch):
        # RankMe is of the last epoch's embeddings only (its help says so), and only then is
        # a resumed run's value the uninterrupted one: the buffer is not in the checkpoint
        embeddings.clear()
        model.train()
        loader.set_size(sizes[epoch])
        loader.set_magnitude(magnitudes[epoch], cfg.progressive.magnitude_scales)
        first = step - epoch * steps_per_epoch  # > 0 only when resuming mid-epoch
        bar = _progress(steps_per_epoch, first, f"epoch {epoch + 1}/{t.epochs}",
                        is_main and t.progress)
        epoch_loss, epoch_steps, wait, busy = 0.0, 0, 0.0, 0.0
        window = {"loss": 0.0, "n": 0, "wait": 0.0, "time": 0.0}
        probe_logs: dict = {}
        tick, epoch_flops = time.perf_counter(), meter.total
        mining = hard is not None and hard.mines(sizes[epoch], epoch)
        for batch in loader.iter_epoch(epoch, start=first):
            got = time.perf_counter()
            set_hyperparams(optimizer, lr=schedule["lr"][step],
                            momentum=schedule["momentum"][step],
                            weight_decay=schedule["weight_decay"][step])
            views_in = loader.on_device(batch.views, device)  # uint8 is normalised there
            if mining:  # m candidates -> the hardest pair
                with autocast:
                    views_in = hard.select(method, views_in, meter)
            elif hard is not None:  # skip_small's too-small epoch, or before start_epoch
                views_in = hard.unmined(views_in)
            key = shape_key(views_in)
            with meter.measure("forward", key), autocast:
                out = model(views_in)
            optimizer.zero_grad(set_to_none=True)
            with meter.measure("backward", key):
                out.loss.backward()
            meter.add("forward", key)
            meter.add("backward", key)
            if cfg.optim.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad)
            method.before_optimizer_step(step, total_steps)
            optimizer.step()
            method.after_step(step, total_steps)
            if probe is not None:
                probe_logs = probe.step(probe_inputs(out.features, blocks),
                                        batch.labels.to(device, non_blocking=True))
            if cfg.eval.rankme:
                _keep_newest(embeddings, out.embeddings.float().cpu(), cfg.eval.rankme_samples)
            step += 1

            # the mean over ranks: the single-process loss of the global batch, on every rank
            loss = distributed.mean_over_ranks(out.loss.detach()).item()
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at epoch {epoch + 1}, step {step}: "
                                         f"lower optim.lr or set optim.clip_grad")
            done = time.perf_counter()
            wait += got - tick
            busy += done - got
            epoch_loss += loss
            epoch_steps += 1
            window["loss"] += loss
            window["n"] += 1
            window["wait"] += got - tick
            window["time"] += done - tick
            tick = done
            ips = cfg.data.batch_size * window["n"] / max(window["time"], 1e-9)
            wait_share = window["wait"] / max(window["time"], 1e-9)
            bar.set_postfix_str(f"loss {loss:.3f}, {ips:,.0f} img/s, data wait "
                                f"{100 * wait_share:.0f}%", refresh=False)
            bar.update(1)
            if step % t.log_every == 0 or step == total_steps:
                log.write({"kind": "step", "epoch": epoch + 1, "step": step, "loss": loss,
                           "loss_avg": window["loss"] / window["n"],
                           "lr": optimizer.param_groups[0]["lr"],
                           "momentum": float(schedule["momentum"][step - 1]),
                           "weight_decay": float(schedule["weight_decay"][step - 1]),
                           "images_per_s": ips, "data_wait": wait_share,
                           "flops": meter.total, "wall_s": wall_s + wait + busy,
                           **{k: _number(v) for k, v in out.logs.items()}, **probe_logs})
                window = {"loss": 0.0, "n": 0, "wait": 0.0, "time": 0.0}
        bar.close()

        # --- end of epoch: probe on the val file, checkpoint ---------------------------------
        seconds = wait + busy
        wall_s += seconds
        record = {"kind": "epoch", "epoch": epoch + 1, "step": step,
                  "loss": epoch_loss / max(epoch_steps, 1), "seconds": seconds,
                  "images_per_s": cfg.data.batch_size * epoch_steps / max(seconds, 1e-9),
                  "data_wait": wait / max(seconds, 1e-9), "view_size": sizes[epoch],
                  "magnitude": magnitudes[epoch], "flops": meter.total, "wall_s": wall_s,
                  **probe_logs}
        if mining:  # the selection's share, measured, beside eq. 11's prediction
            record.update(hard.summary(meter.total - epoch_flops - hard.stats["flops"], busy,
                                       sizes[epoch]))
        if is_main and probe is not None and cfg.data.val:
            feats, val_labels = extract_features(backbone, cfg.data.val, eval_views,
                                                 cfg.eval.batch_size, cfg.data.threads or None,
                                                 channels_last=t.channels_last)
            val_inputs, val_labels = probe_inputs(feats.to(device), blocks), val_labels.to(device)
            stats = None
            if recal_indices is not None:  # the BN statistics at the test images' resolution
                ref, _ = extract_features(backbone, cfg.data.train, eval_views,
                                          cfg.eval.batch_size, cfg.data.threads or None,
                                          indices=recal_indices, channels_last=t.channels_last)
                stats = OnlineProbe.statistics(probe_inputs(ref.to(device), blocks))
                record.update({f"{k}_view_stats": v for k, v in
                               probe.accuracy(val_inputs, val_labels).items()})
            record.update(probe.accuracy(val_inputs, val_labels, stats))
        last = epoch + 1 == stop_epoch
        if is_main and _knn_due(cfg, epoch):  # the last one: final_evaluation
            record["knn_top1"] = knn_eval(cfg, backbone, eval_views)[0]
        log.write(record)
        say(_summary(record))
        result = record
        if is_main and (last or (t.checkpoint_every and (epoch + 1) % t.checkpoint_every == 0)):
            atomic_save({
                "epoch": epoch + 1, "step": step, "steps_per_epoch": steps_per_epoch,
                "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                "probe": probe.state_dict() if probe is not None else None,
                "probe_optimizer": probe.optimizer.state_dict() if probe is not None else None,
                "loader": loader.state_dict(), "rng": rng_state(), "config": cfg.to_dict(),
                "flops": meter.total, "flops_by_part": meter.by_part, "wall_s": wall_s,
            }, checkpoint_path(run_dir, epoch + 1))
            prune_checkpoints(run_dir, t.keep_checkpoints)

    # --- the end: kNN of backbone features, RankMe; the random-init baseline -----------------
    final = {k: v for k, v in result.items() if k not in ("kind",)}
    if step < total_steps:
        say(f"stopped after epoch {stop_epoch} of {t.epochs} (train.stop_after); continue "
            f"with --train.resume auto")
        log.close()
        return final
    say(f"compute: {meter.total / PETA:.4g} PFLOPs (" + ", ".join(
        f"{part} {flops / PETA:.3g}" for part, flops in meter.by_part.items()) +
        f"), {wall_s / 60:.1f} min of training")
    final.update({f"flops_{part}": flops for part, flops in meter.by_part.items()})
    if is_main:
        final.update(final_evaluation(cfg, backbone, cifar_stem, embeddings, eval_views, say))
        log.write({"kind": "final", "step": step, **final})
        _write_json(run_dir / "results.json", final)
    log.close()
    return final


# --- the pieces train() calls, in the order it calls them ---------------------------------

def setup_process(cfg: RunConfig, say=print) -> int:
    """Seeds (python, numpy, torch), torch and numba threads and the numba JIT switch: the one
    place a run sets them, and logs them. Returns the torch thread count."""
    t = cfg.train
    threads = t.threads or default_threads()
    from jessl.runtime import set_jit
    jit = set_jit(t.jit)  # the kernels are built with it when jessl.data.ops is first imported
    if jit != t.jit:
        say(f"warning: train.jit={t.jit} ignored, the augmentation kernels were already "
            f"loaded with the JIT {'on' if jit else 'off'} in this process")
    try:  # numba first: launching its threading layer resets OpenMP's thread count, which
        # (in a process that already ran torch ops) undid torch's setting for the first run
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass
    torch.set_num_threads(threads)
    random.seed(t.seed)
    np.random.seed(t.seed)
    torch.manual_seed(t.seed)
    from jessl.runtime import keep_freed_memory
    malloc = keep_freed_memory()  # batch tensors reuse freed memory instead of page faults
    say(f"process: seed {t.seed}, torch threads {threads}, loader threads "
        f"{cfg.data.threads or default_threads()}, numba JIT {'on' if jit else 'off'}, "
        f"precision {t.precision}, rank {distributed.rank()} of {distributed.world_size()}, "
        f"malloc keeps freed memory: {malloc}")
    return threads


def build_loader(cfg: RunConfig, Loader, views, world: int, device=torch.device("cpu")):
    """The training loader, after the checks that a run can learn at all; a run that cannot
    stops here with a ConfigError, before it writes anything (issue 15: SimCLR on one image or
    with batch size 1 ran to the end with a loss of exactly 0.0, learning nothing). Its output
    is data.output's; "auto" = uint8 bytes normalised on a GPU (`Loader.on_device`)."""
    from jessl.config import ConfigError
    from jessl.data.facts import shared_reader
    from jessl.data.loader import output_for
    from jessl.data.reader import Reader
    if cfg.data.val:  # opened (and validated) now, not after the first epoch
        Reader(cfg.data.val).close()
    reader = shared_reader(cfg.data.train)  # the one the config's checks opened
    images = len(reader)
    if images < 2 or cfg.data.batch_size < 2:
        what = f"{images} image" if images < 2 else f"data.batch_size {cfg.data.batch_size}"
        raise ConfigError(f"{what}: a batch of one image leaves a method nothing to compare it "
                          f"with (no negatives, no batch statistics), so it cannot learn; "
                          f"train on at least 2 images a batch")
    output = output_for(device, views) if cfg.data.output == "auto" else cfg.data.output
    try:
        return Loader(reader, cfg.data.batch_size // world, views,
                      order=cfg.data.order, seed=cfg.train.seed, drop_last=True,
                      num_threads=cfg.data.threads or None, rank=distributed.rank(),
                      world_size=world, prefetch=cfg.data.prefetch, output=output,
                      pin_memory=device.type == "cuda", channels_last=cfg.train.channels_last,
                      exact=cfg.data.exact)
    except ValueError as err:  # too few images for one batch, a bad order name ...
        raise ConfigError(str(err)) from None


def pick_device(name: str) -> torch.device:
    """train.device -> this process's device (`jessl.runtime.resolve_device`); a GPU becomes the
    current device, so NCCL and new tensors use it."""
    from jessl.runtime import resolve_device
    device = resolve_device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def make_backbone(cfg: RunConfig, cifar_stem: bool) -> nn.Module:
    """The backbone at its random initialisation for `train.seed`: the same weights every call
    (the kNN baseline rebuilds it), whatever the global RNG has done before."""
    from jessl.models import build_backbone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return build_backbone(cfg.model.backbone, cifar_stem)


def view_schedule(cfg: RunConfig, full: int, epochs: int | None = None
                  ) -> tuple[list[int], list[float]]:
    """(first view's size, augmentation magnitude) for every one of `epochs` epochs (default
    train.epochs), the first view's side being `full`: constant, or Super Progressive Learning
    when progressive.min_size is set (jessl.train.progressive)."""
    from jessl.train.progressive import progressive_schedule
    g, epochs = cfg.progressive, cfg.train.epochs if epochs is None else epochs
    if not g.active:
        return [full] * epochs, [1.0] * epochs
    warmup = cfg.optim.warmup_epochs if g.warmup_epochs < 0 else g.warmup_epochs
    return progressive_schedule(epochs, full, g.min_size, warmup, g.step, g.min_magnitude)


def build_schedules(cfg: RunConfig, steps_per_epoch: int) -> dict:
    """{"lr", "momentum", "weight_decay"}: arrays of one value per step, plus "peak_lr" (the
    per-256 lr scaled to the global batch, SSL Cookbook 3.8.1) and "warmup_steps"."""
    from jessl.schedules import one_cycle_f1clr, scaled_lr, warmup_cosine
    from jessl.train.optim import weight_decay_schedule
    o = cfg.optim
    total = cfg.train.epochs * steps_per_epoch
    peak = scaled_lr(o.lr, cfg.data.batch_size, o.scaling)
    # warm-up is capped at half the run so a short run still anneals
    warmup = min(int(round(o.warmup_epochs * steps_per_epoch)), total // 2)
    if o.schedule == "f1clr":
        warmup = min(max(warmup, 1), total - 1) if total > 1 else 0
        if total > 1:
            lr, momentum = one_cycle_f1clr(peak, total, warmup, o.f1clr_momentum_high,
                                           o.f1clr_momentum_low)
        else:
            lr, momentum = np.full(1, peak), np.full(1, o.momentum)
    else:
        lr = warmup_cosine(peak, peak * o.final_lr, total, warmup)
        momentum = np.full(total, o.momentum)
    return {"lr": lr, "momentum": momentum,
            "weight_decay": weight_decay_schedule(o.weight_decay, o.weight_decay_end, total),
            "peak_lr": peak, "warmup_steps": warmup}


def final_evaluation(cfg: RunConfig, backbone: nn.Module, cifar_stem: bool, embeddings: list,
                     eval_views: str, say=print) -> dict:
    """kNN top-1 of backbone features (train file -> val file), RankMe of the embeddings and
    of the val features, and optionally the kNN of the same network at random init."""
    from jessl.eval.features import device_of
    from jessl.eval.rankme import rankme
    e, out = cfg.eval, {}
    if e.rankme and embeddings:
        out["rankme"] = rankme(torch.cat(embeddings))
    elif e.rankme:  # checkpoints do not hold the embeddings (up to 25,600 x D floats)
        say("rankme: not computed, the run resumed after its last epoch's checkpoint, so "
            "that epoch's embeddings are gone")
    if not (e.knn and cfg.data.val):
        return out
    out["knn_top1"], val_f = knn_eval(cfg, backbone, eval_views)
    if e.rankme:
        out["rankme_features"] = rankme(val_f)
    if e.baseline:
        baseline = make_backbone(cfg, cifar_stem).to(device_of(backbone))
        out["knn_top1_random_init"], _ = knn_eval(cfg, baseline, eval_views)
    line = f"kNN top-1 (k={e.k}, T={e.temperature}): {out['knn_top1']:.2f}%"
    if e.baseline:
        line += f" (random init: {out['knn_top1_random_init']:.2f}%)"
    if "rankme" in out:
        line += f"; RankMe {out['rankme']:.1f}"
    say(line)
    return out


def knn_eval(cfg: RunConfig, net: nn.Module, eval_views: str) -> tuple[float, torch.Tensor]:
    """(kNN top-1 of `net`'s features, train file -> val file, as eval.k and eval.temperature
    say; the val features (N, F))."""
    from jessl.eval.features import extract_features
    from jessl.eval.knn import knn_accuracy
    e, threads = cfg.eval, cfg.data.threads or None
    cache = Path(cfg.train.out) / "features" if e.cache else None
    train_f, train_y = extract_features(net, cfg.data.train, eval_views, e.batch_size, threads,
                                        cache_dir=cache)
    val_f, val_y = extract_features(net, cfg.data.val, eval_views, e.batch_size, threads,
                                    cache_dir=cache)
    keep = train_y >= 0
    acc = knn_accuracy(train_f[keep], train_y[keep], val_f, val_y, ks=(e.k,),
                       temperature=e.temperature)
    return acc[f"k{e.k}_top1"], val_f


def _knn_due(cfg: RunConfig, epoch: int) -> bool:
    """A kNN evaluation after this epoch (eval.knn_every), except after the run's last epoch,
    which final_evaluation covers."""
    e = cfg.eval
    return bool(e.knn and e.knn_every and cfg.data.val and (epoch + 1) % e.knn_every == 0
                and epoch + 1 < cfg.train.epochs)


# --- the run folder -------------------------------------------------------------------------

class RunLog:
    """metrics.jsonl (one JSON object per line) and TensorBoard events, rank 0 only.

    A resumed run first drops the records written after its checkpoint (a crash may have left
    some), so the file reads as one uninterrupted run."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # read_metrics drops the torn last line a kill mid-write leaves
            kept = [r for r in read_metrics(run_dir) if _kept(r, resume_step)]
            write_atomic(self.path, lambda tmp: Path(tmp).write_text(
                "".join(json.dumps(r) + "\n" for r in kept)))  # a kill now leaves the old file
        elif self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir), purge_step=resume_step or None)
        except ImportError:  # tensorboard is optional: metrics.jsonl has everything
            print("tensorboard is not installed: metrics go to metrics.jsonl only")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {"time": time.time(), **record}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            kind = record.get("kind", "step")
            for key, value in record.items():
                if key not in ("time", "kind", "step", "epoch") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{kind}/{key}", value, record.get("step", 0))

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def fresh_start_notice(run_dir: Path) -> str:
    """What `train.resume=auto` says when RUN holds no checkpoint: starting fresh, and, where an
    earlier run left its records there (a run stopped in one session and continued from a
    fresh checkout: checkpoints stay out of git), that it trains again from epoch 0 and
    replaces them, instead of looking like a resume."""
    where = f"resume: no checkpoint in {Path(run_dir) / 'checkpoints'}"
    epoch = stopped_epoch(run_dir)
    if epoch is None:
        return f"{where}, starting fresh"
    return (f"{where}: the run here stopped after epoch {epoch}, and its checkpoint is gone "
            f"(checkpoints are not kept in git): training it again from epoch 0, its "
            f"metrics.jsonl replaced")


def _kept(record: dict, resume_step: int) -> bool:
    return record.get("kind") != "final" and record.get("step", 0) <= resume_step


def version_info() -> dict:
    """jessl's version and, when the package sits in a git checkout, its commit."""
    info = {"jessl": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parents[2]
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
            timeout=10, check=True).stdout.strip() or None
        info["git_dirty"] = bool(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, timeout=10, check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment(torch_threads: int, loader_threads: int, cfg: RunConfig,
                device: torch.device | None = None) -> dict:
    """What the numbers depend on: versions, CPU, threads, the process layout."""
    import numba

    from jessl.runtime import jit_in_force
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "numba": numba.__version__, "platform": platform.platform(),
            "cpu": cpu, "cores_available": default_threads(), "cores_machine": os.cpu_count(),
            "torch_threads": torch_threads, "loader_threads": loader_threads,
            "jit": jit_in_force(), "precision": cfg.train.precision,
            "device": str(device) if device is not None else cfg.train.device,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "world_size": distributed.world_size()}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


# --- small helpers --------------------------------------------------------------------------

def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=0.5)


def _keep_newest(buffer: list, rows: torch.Tensor, limit: int) -> None:
    buffer.append(rows)
    total = sum(len(b) for b in buffer)
    while len(buffer) > 1 and total - len(buffer[0]) >= limit:
        total -= len(buffer.pop(0))


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _number(v):
    return float(v) if isinstance(v, (int, float, np.floating, torch.Tensor)) else v


def _summary(record: dict) -> str:
    parts = [f"epoch {record['epoch']}: loss {record['loss']:.4f}",
             f"{record['images_per_s']:,.0f} img/s", f"data wait {100 * record['data_wait']:.0f}%",
             f"{record['flops'] / PETA:.4g} PFLOPs, {record['wall_s'] / 60:.1f} min so far"]
    for key, value in record.items():
        if key.startswith("probe/") and key.endswith("top1"):
            parts.append(f"{key[6:]} {value:.1f}%")
    return ", ".join(parts)
