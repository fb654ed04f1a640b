"""One resumable, cached training loop for every learned model in simlink.

A model says how it trains by implementing the :class:`TrainingStep` protocol — its modules,
its optimisers (and schedulers), and one training step on a :class:`Batch`. :func:`train_resumable`
drives any step: seeded batch order, per-step seeding, atomic checkpoints every
``checkpoint_every_s`` seconds, at every epoch end and on Ctrl-C / SIGTERM, and resumption from the
checkpoint when called again with the same :class:`~simlink.learned.cache.ModelCache`. So a
codec trained on one loss (:class:`LossStep`, Adam + reduce-on-plateau), a generator and a
discriminator updated in turn, a policy-gradient stage against a frozen decoder, and the
receiver's classifier (:class:`simlink.tasks.classifier.ClassifierStep`) all share one loop.

:func:`train_or_load` adds the model cache around one stage (load it if finished, else train and
save it) and :func:`train_stages` chains cached stages (pre-train, then fine-tune ...) of one
operating point::

    report = train_stages("tosc_sr", net, [
        Stage("pretrain", pre_key, c.train.pretrain, lambda: LossStep(net, rd_loss, c.train.pretrain)),
        Stage("finetune", fine_key, c.train.finetune, lambda: LossStep(net, task_loss, c.train.finetune)),
    ], ctx, op_label=op.label, cache_root=c.cache_dir, split=..., n_images=..., describe="TOSC-SR")

Determinism: the batch order of epoch ``e`` comes from a seed derived from ``(seed, 1, e)``; before
global step ``s`` the loop seeds torch's global RNG (every device) with a seed derived from
``(seed, 2, s)``, draws the flips, then calls the step, so all the randomness a step draws from
torch's global RNG (quantisation noise, channel noise, crops, dropout) is fixed by ``(seed, s)``.
A run that was interrupted and resumed therefore ends with the same weights as one that was not
(on the same device and software).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from simlink.atomic import atomic_torch_save
from simlink.errors import SimlinkError
from simlink.hashing import stable_hash
from simlink.learned.cache import ModelCache, load_or_build
from simlink.learned.settings import OptimSettings

__all__ = [
    "Batch",
    "LossFn",
    "LossStep",
    "NonFiniteLoss",
    "OptimSettings",
    "Stage",
    "TrainResult",
    "TrainingStep",
    "load_finished",
    "save_finished",
    "stages_report",
    "train_or_load",
    "train_resumable",
    "train_stages",
]

#: ``loss_fn(net, x, labels) -> (loss, {name: float})``; ``x`` is ``float32[B, 3, H, W]`` in [0, 1]
#: on the training device, ``labels`` ``int64[B]`` or ``None``.
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, dict]]

#: Format tag of a finished model file holding several modules (one module: a bare state dict).
_MODULES_FORMAT = "simlink.modules/1"


# ---------------------------------------------------------------------- the protocol
@dataclass
class Batch:
    """One training batch, on the training device.

    Attributes:
        images: ``float32[B, 3, H, W]`` in [0, 1].
        labels: ``int64[B]`` class ids, or ``None`` (the data has no labels).
        masks: ``int64[B, H, W]`` per-pixel class ids, or ``None``; flipped with ``images``
            (the same flip per sample) when the loop's ``augment_flip`` is on.
        index: ``int64[B]`` positions of the samples in the training set.
        epoch: 0-based epoch.
        step: 0-based global step (``epoch * steps_per_epoch + step in epoch``).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    masks: torch.Tensor | None
    index: torch.Tensor
    epoch: int
    step: int


class NonFiniteLoss(ArithmeticError):
    """A loss was NaN or infinite; raised by :meth:`TrainingStep.optimise` before ``backward``.

    Attributes: ``value`` (the loss as a float) and ``optimizer`` (the optimiser's name)."""

    def __init__(self, value: float, optimizer: str | None = None) -> None:
        self.value = float(value)
        self.optimizer = optimizer
        super().__init__(f"loss became {self.value}" + (f" (optimizer {optimizer!r})" if optimizer else ""))


class TrainingStep(ABC):
    """How one model trains; :func:`train_resumable` drives it.

    The loop calls :meth:`modules` (moves them to the device, ``train()`` during the loop,
    ``eval()`` after), then :meth:`optimizers` once and :meth:`schedulers` once, restores their
    states from a checkpoint if there is one, and calls :meth:`step` once per batch. At every epoch
    end a ``ReduceLROnPlateau`` scheduler gets ``.step(epoch mean of "loss")``, any other
    scheduler ``.step()``. Frozen networks a step only evaluates (a task classifier) need not be
    listed in :meth:`modules`.
    """

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """Everything trained or stateful, by name (checkpointed under these names)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by name; called once by the loop. The first one's learning rate is
        logged as ``lr``, the others' as ``lr_<name>``."""

    def schedulers(self) -> dict[str, object]:
        """Learning-rate schedulers by name (default none); called once, after :meth:`optimizers`."""
        return {}

    @abstractmethod
    def step(self, batch: Batch) -> dict[str, float]:
        """One training step on ``batch``: forward, losses, and the updates (zero_grad, backward,
        optimiser step — :meth:`optimise` does all three). Returns ``{name: float}`` with at least
        ``"loss"``; the loop logs the epoch mean of every entry."""

    # ------------------------------------------------------------------ helpers
    def bound_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """:meth:`optimizers`, called on first use and remembered (what the loop and
        :meth:`optimise` use)."""
        opts = self.__dict__.get("_bound_optimizers")
        if opts is None:
            opts = dict(self.optimizers())
            if not opts:
                raise TypeError(f"{type(self).__name__}.optimizers() returned no optimiser")
            self.__dict__["_bound_optimizers"] = opts
        return opts

    def bound_schedulers(self) -> dict[str, object]:
        """:meth:`schedulers`, called on first use (after the optimisers) and remembered."""
        scheds = self.__dict__.get("_bound_schedulers")
        if scheds is None:
            self.bound_optimizers()
            scheds = self.__dict__["_bound_schedulers"] = dict(self.schedulers())
        return scheds

    def optimise(
        self,
        loss: torch.Tensor,
        optimizer_name: str,
        grad_clip: float | None = None,
        params: list[torch.nn.Parameter] | None = None,
    ) -> None:
        """``zero_grad`` + ``loss.backward()`` + optional ``clip_grad_norm_`` + ``step`` of the
        optimiser ``optimizer_name``.

        Args:
            loss: scalar tensor.
            optimizer_name: a key of :meth:`optimizers`.
            grad_clip: maximum gradient norm (``None``: no clipping).
            params: the parameters whose gradient norm is clipped (default: the optimiser's).

        Raises:
            NonFiniteLoss: ``loss`` is NaN / infinite (checked before ``backward``, so no
                gradient or weight is touched).
        """
        opt = self.bound_optimizers()[optimizer_name]
        if not torch.isfinite(loss):
            raise NonFiniteLoss(float(loss.detach()), optimizer_name)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            if params is None:
                params = [p for g in opt.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()


class LossStep(TrainingStep):
    """One network, one loss: Adam on the parameters with ``requires_grad`` (collected when the
    loop asks for the optimisers), ``ReduceLROnPlateau(mode="min", factor=plateau_factor,
    patience=plateau_patience, threshold=1e-3, min_lr=lr_min)`` and gradient clipping from
    :class:`OptimSettings`.

    Args:
        net: the model (checkpointed as ``"net"``).
        loss_fn: see :data:`LossFn`; called as ``loss_fn(net, batch.images, batch.labels)``.
        settings: ``lr``, ``lr_min``, ``plateau_*``, ``grad_clip`` are used here.
    """

    def __init__(self, net: torch.nn.Module, loss_fn: LossFn, settings: OptimSettings) -> None:
        self.net = net
        self.loss_fn = loss_fn
        self.settings = settings
        self._params: list[torch.nn.Parameter] | None = None
        self._opt: torch.optim.Optimizer | None = None
        self._sched = None

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._opt is None:
            self._params = [p for p in self.net.parameters() if p.requires_grad]
            self._opt = torch.optim.Adam(self._params, lr=self.settings.lr)
        return {"adam": self._opt}

    def schedulers(self) -> dict[str, object]:
        if self._sched is None:
            s = self.settings
            self._sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizers()["adam"], mode="min", factor=s.plateau_factor, patience=s.plateau_patience,
                threshold=1e-3, min_lr=s.lr_min)
        return {"plateau": self._sched}

    def step(self, batch: Batch) -> dict[str, float]:
        loss, stats = self.loss_fn(self.net, batch.images, batch.labels)
        self.optimise(loss, "adam", grad_clip=self.settings.grad_clip, params=self._params)
        return {"loss": float(loss.detach()), **stats}


# ---------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) training run reports."""

    history: list[dict] = field(default_factory=list)  # one dict of mean stats (+ lr) per epoch
    wall_s: float = 0.0  # training seconds in total, over every resumed call
    resumed_from: tuple[int, int] | None = None  # (epoch, step in epoch) of the checkpoint used


def _derived_seed(*parts: int) -> int:
    h = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int(h[0]) << 32 | int(h[1])


def _training_arrays(data) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(images uint8[N, H, W, 3], labels int[N] | None, masks int[N, H, W] | None)`` of an
    :class:`~simlink.data.base.ImageSet`, an image array, or a tuple ``(images, labels[, masks])``."""
    if hasattr(data, "images"):
        if hasattr(data, "require_uniform"):
            data.require_uniform("training data")
        return data.images, getattr(data, "labels", None), getattr(data, "masks", None)
    if isinstance(data, (tuple, list)):
        if not 1 <= len(data) <= 3:
            raise TypeError(f"training data tuple must be (images, labels[, masks]), got {len(data)} entries")
        images, labels, masks = (tuple(data) + (None, None))[:3]
        return images, labels, masks
    return data, None, None


def _step_modules(step: TrainingStep) -> dict[str, torch.nn.Module]:
    mods = dict(step.modules())
    if not mods:
        raise TypeError(f"{type(step).__name__}.modules() returned no module")
    return mods


def _load_checkpoint(ck: dict, mods: dict, opts: dict, scheds: dict, where: str) -> None:
    """Restore modules / optimisers / schedulers from a checkpoint (today's or the legacy
    ``net / opt / sched`` layout of a one-network loop)."""
    if "modules" not in ck and "net" in ck:  # checkpoint of the one-loss loop before TrainingStep
        if not (len(mods) == len(opts) == 1 and len(scheds) <= 1):
            raise SimlinkError(f"{where}: single-network checkpoint, but this training has modules {sorted(mods)} "
                               f"and optimizers {sorted(opts)}; delete the file to retrain")
        ck = {"modules": {next(iter(mods)): ck["net"]}, "optimizers": {next(iter(opts)): ck["opt"]},
              "schedulers": {next(iter(scheds)): ck["sched"]} if scheds and "sched" in ck else {}}
    for what, have, saved in (("modules", mods, ck.get("modules", {})), ("optimizers", opts, ck.get("optimizers", {})),
                              ("schedulers", scheds, ck.get("schedulers", {}))):
        if set(have) != set(saved):
            raise SimlinkError(f"{where}: checkpoint holds {what} {sorted(saved)}, this training has {sorted(have)}; "
                               "delete the file to retrain")
        for name, obj in have.items():
            obj.load_state_dict(saved[name])


def train_resumable(
    step: TrainingStep,
    data,
    settings: OptimSettings,
    cache: ModelCache | None,
    *,
    seed: int = 0,
    device: str = "cpu",
    augment_flip: bool = True,
    checkpoint_every_s: float = 60.0,
    log: Callable[[str], None] | None = None,
    stop_after_steps: int | None = None,
    describe: str = "",
) -> TrainResult:
    """Train ``step``'s modules in place; resume from ``cache.checkpoint_path`` if it exists.

    Args:
        step: the :class:`TrainingStep` (its modules are moved to ``device``).
        data: the training set: an :class:`~simlink.data.base.ImageSet` (``images
            uint8[N, H, W, 3]``, ``labels int64[N] | None``, ``masks uint8[N, H, W] | None``), a
            ``uint8[N, H, W, 3]`` array, or a tuple ``(images, labels[, masks])``.
        settings: ``epochs`` and ``batch_size`` are used here (the step uses the rest).
        cache: where the checkpoint lives (the finished model is saved by the caller);
            ``None``: train in memory, no checkpoints, no resumption.
        seed: seeds batch order and per-step randomness (module docstring).
        device: torch device string.
        augment_flip: random horizontal flips of images and masks.
        checkpoint_every_s: save a checkpoint at least this often (plus at each epoch end).
        log: per-epoch progress lines.
        stop_after_steps: testing hook: behave as if interrupted after this many steps in this
            call (checkpoint saved, ``KeyboardInterrupt`` raised).
        describe: what is trained, for messages (default: the cache's kind).

    Returns:
        :class:`TrainResult`; ``history`` holds per epoch the mean of every stat the step
        returned, plus ``lr`` (first optimiser) and ``lr_<name>`` (the others). The modules hold
        the trained weights, in eval mode.

    Raises:
        KeyboardInterrupt: re-raised after saving a checkpoint.
        SimlinkError: a loss became NaN / infinite (the checkpoint of the last good state stays),
            or a checkpoint does not fit this training.
    """
    log = log or (lambda s: None)
    what = " ".join(filter(None, [cache.kind if cache is not None else "", f"({describe})" if describe else ""]))
    what = what or "training"
    t0 = time.perf_counter()
    images, labels, masks = _training_arrays(data)
    n = len(images)
    if n < 2:
        raise SimlinkError(f"{what}: training needs at least 2 images, got {n}")
    batch = min(settings.batch_size, n)
    steps_per_epoch = n // batch
    mods = _step_modules(step)
    for m in mods.values():
        m.to(device)
    opts = step.bound_optimizers()
    scheds = step.bound_schedulers()
    result = TrainResult()
    epoch, step_in_epoch, sums, wall_before = 0, 0, {}, 0.0
    ck = cache.load_checkpoint() if cache is not None else None  # unreadable: moved aside, None
    if ck is not None:
        _load_checkpoint(ck, mods, opts, scheds, str(cache.checkpoint_path))
        epoch, step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        sums = {k: float(v) for k, v in ck["sums"].items()}
        result.history = [dict(h) for h in ck["history"]]
        wall_before = float(ck.get("wall_s", 0.0))
        result.resumed_from = (epoch, step_in_epoch)
        log(f"resuming {cache.dir.name} at epoch {epoch + 1}/{settings.epochs}, step {step_in_epoch}/{steps_per_epoch}")

    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # uint8 [N, H, W, 3]
    y_all = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(device)
    m_all = None if masks is None else torch.from_numpy(np.ascontiguousarray(masks)).to(device)  # [N, H, W]
    if m_all is not None and tuple(m_all.shape[:3]) != tuple(x_all.shape[:3]):
        raise SimlinkError(f"{what}: masks {list(m_all.shape)} do not match images {list(x_all.shape[:3])}")

    def save() -> None:
        if cache is None:
            return
        atomic_torch_save({
            "modules": {k: m.state_dict() for k, m in mods.items()},
            "optimizers": {k: o.state_dict() for k, o in opts.items()},
            "schedulers": {k: s.state_dict() for k, s in scheds.items()},
            "epoch": epoch, "step_in_epoch": step_in_epoch, "sums": sums, "history": result.history,
            "wall_s": wall_before + time.perf_counter() - t0,
        }, cache.checkpoint_path)

    def lrs() -> dict[str, float]:
        out = {}
        for i, (name, o) in enumerate(opts.items()):
            out["lr" if i == 0 else f"lr_{name}"] = o.param_groups[0]["lr"]
        return out

    last_save = time.perf_counter()
    steps_done = 0
    for m in mods.values():
        m.train()
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
                mk = None if m_all is None else m_all[idx].long()
                if augment_flip:
                    flip = torch.rand(len(idx), device=device) < 0.5
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                    if mk is not None:
                        mk = torch.where(flip.view(-1, 1, 1), mk.flip(2), mk)
                y = None if y_all is None else y_all[idx]
                try:
                    stats = step.step(Batch(x, y, mk, idx, epoch, global_step))
                except NonFiniteLoss as exc:
                    raise SimlinkError(
                        f"{what}: loss became {exc.value} at epoch {epoch + 1}, step {step_in_epoch}"
                        + (f" (optimizer {exc.optimizer!r})" if exc.optimizer and len(opts) > 1 else "")
                        + "; lower the learning rate (train.lr)") from None
                if "loss" not in stats:
                    raise TypeError(f"{type(step).__name__}.step() must return a 'loss' entry, got {sorted(stats)}")
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                step_in_epoch += 1
                steps_done += 1
                if time.perf_counter() - last_save > checkpoint_every_s:
                    save()
                    last_save = time.perf_counter()
            means = {k: v / max(steps_per_epoch, 1) for k, v in sums.items()}
            means.update(lrs())
            result.history.append(means)
            for s in scheds.values():
                if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    s.step(means["loss"])
                else:
                    s.step()
            epoch, step_in_epoch, sums = epoch + 1, 0, {}
            save()
            last_save = time.perf_counter()
            # the method's name and op first (``rrd λ=0.01 stage pretrain``), the cache entry after it
            tag = (describe or what) + (f" [{cache.kind} {cache.key[:8]}]" if cache is not None else "")
            log(f"{tag} epoch {epoch}/{settings.epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
    except KeyboardInterrupt:
        save()
        raise
    finally:
        for m in mods.values():
            m.eval()
        result.wall_s = wall_before + time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------- cached stages
def _as_modules(modules: Mapping[str, torch.nn.Module] | torch.nn.Module) -> dict[str, torch.nn.Module]:
    if isinstance(modules, torch.nn.Module):
        return {"net": modules}
    mods = dict(modules)
    if not mods:
        raise TypeError("no module to train or load")
    return mods


def save_finished(
    modules: Mapping[str, torch.nn.Module] | torch.nn.Module, cache: ModelCache, info: dict, result: TrainResult
) -> None:
    """Write ``model.pt`` and ``info.json`` (``info`` + history + total training seconds +
    ``resumed_from``), then delete the checkpoint.

    ``model.pt`` is the bare state dict (CPU tensors) for one module — the format of every model
    cached before :class:`TrainingStep` — and ``{"format", "modules": {name: state dict}}`` for
    several."""
    mods = _as_modules(modules)
    states = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in mods.items()}
    obj = next(iter(states.values())) if len(states) == 1 else {"format": _MODULES_FORMAT, "modules": states}
    atomic_torch_save(obj, cache.model_path)
    cache.publish({**info, "history": result.history, "wall_s": round(result.wall_s, 3),
                   "resumed_from": result.resumed_from})  # + sha256 of model.pt, checkpoint deleted


def load_finished(modules: Mapping[str, torch.nn.Module] | torch.nn.Module, cache: ModelCache) -> None:
    """Load ``cache.model_path`` (written by :func:`save_finished`, or a bare state dict of one
    network) into ``modules``. Raises :class:`SimlinkError` when the file's modules differ, and
    :class:`~simlink.learned.cache.CorruptCacheEntry` (entry moved aside) when it is corrupt."""
    mods = _as_modules(modules)
    obj = cache.load_model()
    if isinstance(obj, dict) and isinstance(obj.get("modules"), dict) and obj.get("format") == _MODULES_FORMAT:
        saved = obj["modules"]
    elif len(mods) == 1:
        saved = {next(iter(mods)): obj}
    else:
        raise SimlinkError(f"{cache.model_path}: holds one network, expected modules {sorted(mods)}; "
                           f"delete {cache.dir} to retrain")
    if len(mods) == 1 and len(saved) == 1:
        saved = {next(iter(mods)): next(iter(saved.values()))}
    if set(saved) != set(mods):
        raise SimlinkError(f"{cache.model_path}: holds modules {sorted(saved)}, expected {sorted(mods)}; "
                           f"delete {cache.dir} to retrain")
    for name, m in mods.items():
        m.load_state_dict(saved[name])


def _as_step(made, mods: dict[str, torch.nn.Module], settings: OptimSettings) -> TrainingStep:
    if isinstance(made, TrainingStep):
        return made
    if callable(made):  # a LossFn (callers from before TrainingStep)
        if len(mods) != 1:
            raise TypeError(f"a loss function trains one network, got modules {sorted(mods)}; return a TrainingStep")
        return LossStep(next(iter(mods.values())), made, settings)
    raise TypeError(f"make_step must return a TrainingStep (or a LossFn), got {type(made).__name__}")


def train_or_load(
    modules: Mapping[str, torch.nn.Module] | torch.nn.Module,
    cache: ModelCache,
    key: dict,
    make_step: Callable[[], TrainingStep | LossFn],
    settings: OptimSettings,
    ctx,
    *,
    split: str = "train",
    n_images: int | None = None,
    checkpoint_every_s: float = 60.0,
    augment_flip: bool = True,
    describe: str = "",
) -> bool:
    """One cached training stage: load the modules' weights from ``cache`` if that stage finished
    earlier, else train them (resuming from a checkpoint) and save them there.

    Args:
        modules: the model(s) (their current weights are the stage's starting point): one
            ``nn.Module`` or ``{name: nn.Module}``; what is saved to and loaded from ``model.pt``.
        cache: the stage's :class:`ModelCache` (keyed by a hash of ``key``).
        key: what identifies the stage (stored in ``info.json``).
        make_step: builds the :class:`TrainingStep` (whose modules are, or include, ``modules``);
            only called when training is needed (so missing inputs such as a task model are
            reported only then). A factory returning a :data:`LossFn` is wrapped in
            :class:`LossStep` (one module only).
        settings: optimiser settings of the stage.
        ctx: :class:`simlink.learned.context.TrainingContext` (data, seed, device, log).
        split, n_images: training images (``ctx.train_images(split, n_images)``).
        checkpoint_every_s, augment_flip: passed to :func:`train_resumable`.
        describe: what is trained, for the log line and error messages.

    Returns:
        True if the stage was trained now, False if it was loaded from the cache.
    """
    mods = _as_modules(modules)

    def train() -> None:
        step = _as_step(make_step(), mods, settings)
        images = ctx.train_images(split, n_images)
        ctx.log(f"training {describe} on {len(images)} images, {settings.epochs} epochs, device {ctx.device} "
                f"-> {cache.dir}")
        result = train_resumable(step, images, settings, cache, seed=ctx.seed, device=ctx.device,
                                 augment_flip=augment_flip, checkpoint_every_s=checkpoint_every_s, log=ctx.log,
                                 describe=describe)
        save_finished(mods, cache, {"key": key, "device": str(ctx.device)}, result)

    _, trained = load_or_build(cache, lambda: load_finished(mods, cache), train, ctx.log)
    return trained


@dataclass
class Stage:
    """One cached training stage of :func:`train_stages`.

    Attributes:
        name: stage name (``"pretrain"``, ``"finetune"``, ``"joint"`` ...), for log lines.
        key: everything that identifies the stage (the cache folder is ``stable_hash(key)``); a
            later stage's key should name its parent (e.g. ``"parent": stable_hash(parent_key)``).
        settings: optimiser settings of the stage.
        make_step: builds the :class:`TrainingStep` (or a :data:`LossFn`), only if it trains.
        prepare: run before the stage is loaded or trained (e.g. freeze the encoders).
        describe: what is trained, for log lines (default ``"<describe> stage <name>"``).
    """

    name: str
    key: dict
    settings: OptimSettings
    make_step: Callable[[], TrainingStep | LossFn]
    prepare: Callable[[], None] | None = None
    describe: str | None = None


def train_stages(
    kind: str,
    modules: Mapping[str, torch.nn.Module] | torch.nn.Module,
    stages: list[Stage],
    ctx,
    *,
    op_label: str,
    cache_root=None,
    split: str = "train",
    n_images: int | None = None,
    checkpoint_every_s: float = 60.0,
    describe: str = "",
    augment_flip: bool = True,
) -> dict:
    """Train (or load) a model in cached stages, each starting from the previous one's weights.

    Stage ``i`` is cached in ``ModelCache(kind, stable_hash(stages[i].key), cache_root)``. If the
    last stage is cached, the earlier ones are skipped (status ``"cached"``); otherwise every stage
    in turn runs ``prepare`` and is loaded (done earlier, or by another process this one waited
    for) or trained; the status is ``"trained"`` when any stage was trained here.

    Args:
        kind: cache folder kind (the method's name).
        modules: what the stages train, as for :func:`train_or_load`.
        stages: in training order.
        ctx: :class:`simlink.learned.context.TrainingContext`.
        op_label: the operating point's label, for the report.
        cache_root: model cache root (``None``: ``ctx.cache_root``).
        split, n_images, checkpoint_every_s, augment_flip: as for :func:`train_or_load`.
        describe: what is trained, for log lines.

    Returns:
        The :func:`stages_report` row (``op``, ``status``, ``cache``, ``last_epoch``, ``wall_s``).
    """
    if not stages:
        raise ValueError("train_stages needs at least one stage")
    root = cache_root if cache_root is not None else getattr(ctx, "cache_root", None)
    caches = [ModelCache(kind, stable_hash(s.key), root) for s in stages]
    last_cached = caches[-1].is_done()
    trained = False
    for i, (stage, cache) in enumerate(zip(stages, caches)):
        if last_cached and i < len(stages) - 1:
            continue
        if stage.prepare is not None:
            stage.prepare()
        trained |= train_or_load(modules, cache, stage.key, stage.make_step, stage.settings, ctx, split=split,
                                 n_images=n_images, checkpoint_every_s=checkpoint_every_s, augment_flip=augment_flip,
                                 describe=stage.describe or f"{describe} stage {stage.name}".strip())
    return stages_report(op_label, "trained" if trained else "cached", caches)


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
