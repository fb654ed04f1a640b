"""One resumable training loop for every learned model in simlink.

:func:`train_resumable` runs Adam with reduce-on-plateau over a uint8 image set, checkpoints
atomically every ``checkpoint_every_s`` seconds, at every epoch end and on Ctrl-C / SIGTERM, and
resumes from the checkpoint when called again with the same :class:`~simlink.learned.cache.ModelCache`.

Determinism: the batch order of epoch ``e`` and all the randomness of step ``s`` (additive
quantisation noise, flips) are drawn from seeds derived from ``(seed, e)`` and ``(seed, s)``, so a
run that was interrupted and resumed ends with the same weights as one that was not (on the
same device and software).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from simlink.errors import SimlinkError
from simlink.atomic import atomic_torch_save, atomic_write_json
from simlink.learned.cache import ModelCache, safe_torch_load

#: ``loss_fn(net, x, labels) -> (loss, {name: float})``; ``x`` is ``float32[B, 3, H, W]`` in [0, 1]
#: on the training device, ``labels`` ``int64[B]`` or ``None``.
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, dict]]


class OptimSettings(BaseModel):
    """Optimiser settings of one training stage (a scenario's ``train:`` block uses these names).

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step.
        lr: initial Adam learning rate.
        lr_min: reduce-on-plateau never goes below this.
        plateau_patience: epochs without a 0.1 % improvement of the mean training loss before
            the learning rate is multiplied by ``plateau_factor``.
        plateau_factor: learning-rate decay factor on a plateau.
        grad_clip: maximum gradient norm (``None``: no clipping).
    """

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-4, gt=0)
    lr_min: float = Field(1e-6, gt=0)
    plateau_patience: int = Field(2, ge=0)
    plateau_factor: float = Field(0.3, gt=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) training run reports."""

    history: list[dict] = field(default_factory=list)  # one dict of mean losses per epoch
    wall_s: float = 0.0  # training seconds in total, over every resumed call
    resumed_from: tuple[int, int] | None = None  # (epoch, step in epoch) of the checkpoint used


def _derived_seed(*parts: int) -> int:
    h = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int(h[0]) << 32 | int(h[1])


def train_resumable(
    net: torch.nn.Module,
    loss_fn: LossFn,
    images: np.ndarray,
    labels: np.ndarray | None,
    settings: OptimSettings,
    cache: ModelCache,
    *,
    seed: int = 0,
    device: str = "cpu",
    augment_flip: bool = True,
    checkpoint_every_s: float = 60.0,
    log: Callable[[str], None] | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train ``net`` in place; resume from ``cache.checkpoint_path`` if it exists.

    Args:
        net: the model (moved to ``device``).
        loss_fn: see :data:`LossFn`; only parameters with ``requires_grad`` are optimised.
        images: ``uint8[N, H, W, 3]`` training images.
        labels: ``int64[N]`` or ``None``.
        settings: optimiser settings.
        cache: where the checkpoint lives (the finished model is saved by the caller).
        seed: seeds batch order and per-step randomness.
        device: torch device string.
        augment_flip: random horizontal flips.
        checkpoint_every_s: save a checkpoint at least this often (plus at each epoch end).
        log: per-epoch progress lines.
        stop_after_steps: testing hook: behave as if interrupted after this many steps in this
            call (checkpoint saved, ``KeyboardInterrupt`` raised).

    Returns:
        :class:`TrainResult`. ``net`` holds the trained weights, in eval mode.

    Raises:
        KeyboardInterrupt: re-raised after saving a checkpoint.
        SimlinkError: the loss became NaN / infinite (the checkpoint of the last good state stays).
    """
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    n = len(images)
    if n < 2:
        raise SimlinkError(f"training needs at least 2 images, got {n}")
    batch = min(settings.batch_size, n)
    steps_per_epoch = n // batch
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=settings.plateau_factor, patience=settings.plateau_patience,
        threshold=1e-3, min_lr=settings.lr_min)
    result = TrainResult()
    epoch, step_in_epoch, sums, wall_before = 0, 0, {}, 0.0
    if cache.checkpoint_path.is_file():
        ck = safe_torch_load(cache.checkpoint_path)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        epoch, step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        sums = {k: float(v) for k, v in ck["sums"].items()}
        result.history = [dict(h) for h in ck["history"]]
        wall_before = float(ck.get("wall_s", 0.0))
        result.resumed_from = (epoch, step_in_epoch)
        log(f"resuming {cache.dir.name} at epoch {epoch + 1}/{settings.epochs}, step {step_in_epoch}/{steps_per_epoch}")

    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # uint8 [N, H, W, 3]
    y_all = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(device)

    def save() -> None:
        atomic_torch_save({
            "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "sums": sums, "history": result.history,
            "wall_s": wall_before + time.perf_counter() - t0,
        }, cache.checkpoint_path)

    last_save = time.perf_counter()
    steps_done = 0
    net.train()
    try:
        while epoch < settings.epochs:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_derived_seed(seed, 1, epoch)))
            while step_in_epoch < steps_per_epoch:
                if stop_after_steps is not None and steps_done >= stop_after_steps:
                    raise KeyboardInterrupt
                global_step = epoch * steps_per_epoch + step_in_epoch
                torch.manual_seed(_derived_seed(seed, 2, global_step))
                idx = order[step_in_epoch * batch:(step_in_epoch + 1) * batch].to(device)
                x = x_all[idx].permute(0, 3, 1, 2).float().div_(255.0)
                if augment_flip:
                    flip = torch.rand(len(idx), device=device) < 0.5
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                y = None if y_all is None else y_all[idx]
                loss, stats = loss_fn(net, x, y)
                if not torch.isfinite(loss):
                    raise SimlinkError(
                        f"{cache.kind}: loss became {float(loss.detach())} at epoch {epoch + 1}, step {step_in_epoch}; "
                        "lower the learning rate (train.lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                opt.step()
                for k, v in {"loss": float(loss.detach()), **stats}.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                step_in_epoch += 1
                steps_done += 1
                if time.perf_counter() - last_save > checkpoint_every_s:
                    save()
                    last_save = time.perf_counter()
            means = {k: v / max(steps_per_epoch, 1) for k, v in sums.items()}
            means["lr"] = opt.param_groups[0]["lr"]
            result.history.append(means)
            sched.step(means["loss"])
            epoch, step_in_epoch, sums = epoch + 1, 0, {}
            save()
            last_save = time.perf_counter()
            log(f"{cache.kind} {cache.key[:8]} epoch {epoch}/{settings.epochs}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
    except KeyboardInterrupt:
        save()
        raise
    finally:
        net.eval()
        result.wall_s = wall_before + time.perf_counter() - t0
    return result


def save_finished(net: torch.nn.Module, cache: ModelCache, info: dict, result: TrainResult) -> None:
    """Write ``model.pt`` (state dict) and ``info.json`` (``info`` + history + total training
    seconds), then delete the checkpoint."""
    atomic_torch_save({k: v.detach().cpu() for k, v in net.state_dict().items()}, cache.model_path)
    atomic_write_json({**info, "history": result.history, "wall_s": round(result.wall_s, 3),
                       "resumed_from": result.resumed_from}, cache.info_path)
    cache.checkpoint_path.unlink(missing_ok=True)


def train_or_load(
    net: torch.nn.Module,
    cache: ModelCache,
    key: dict,
    make_loss: Callable[[], LossFn],
    settings: OptimSettings,
    ctx,
    *,
    split: str = "train",
    n_images: int | None = None,
    checkpoint_every_s: float = 60.0,
    augment_flip: bool = True,
    describe: str = "",
) -> bool:
    """One cached training stage: load ``net``'s weights from ``cache`` if that stage finished
    earlier, else train it (resuming from a checkpoint) and save it there.

    Args:
        net: the model (its current weights are the stage's starting point).
        cache: the stage's :class:`ModelCache` (keyed by a hash of ``key``).
        key: what identifies the stage (stored in ``info.json``).
        make_loss: builds the :data:`LossFn`; only called when training is needed (so missing
            inputs such as a task model are reported only then).
        settings: optimiser settings of the stage.
        ctx: :class:`simlink.learned.context.TrainingContext` (data, seed, device, log).
        split, n_images: training images (``ctx.train_images(split, n_images)``).
        checkpoint_every_s, augment_flip: passed to :func:`train_resumable`.
        describe: what is trained, for the log line.

    Returns:
        True if the stage was trained now, False if it was loaded from the cache.
    """
    if cache.is_done():
        net.load_state_dict(safe_torch_load(cache.model_path))
        return False
    loss_fn = make_loss()
    train = ctx.train_images(split, n_images)
    ctx.log(f"training {describe} on {len(train)} images, {settings.epochs} epochs, device {ctx.device} -> {cache.dir}")
    result = train_resumable(net, loss_fn, train.images, train.labels, settings, cache, seed=ctx.seed,
                             device=ctx.device, augment_flip=augment_flip, checkpoint_every_s=checkpoint_every_s,
                             log=ctx.log)
    save_finished(net, cache, {"key": key, "device": str(ctx.device)}, result)
    return True


def stages_report(op_label: str, status: str, caches: list[ModelCache]) -> dict:
    """One row of :meth:`Method.training_report` for a model trained in cached stages.

    Inputs: the operating point's label, ``"trained"`` or ``"cached"``, the stages' caches in
    training order. Output: ``op``, ``status``, ``cache`` (the last stage's folder), ``last_epoch``
    (mean losses of the last epoch of the latest stage with a history) and ``wall_s`` (training
    seconds summed over the stages)."""
    infos = [c.info() for c in caches]
    history = next((i["history"] for i in reversed(infos) if i.get("history")), [{}])
    return {"op": op_label, "status": status, "cache": str(caches[-1].dir), "last_epoch": history[-1],
            "wall_s": sum(i.get("wall_s", 0.0) for i in infos)}
