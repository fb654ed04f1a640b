"""The receiver's task model named by a scenario: a pretrained record, a saved TaskModel file,
or an architecture trained on the scenario's training split (cached, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from simlink.errors import SimlinkError
from simlink.registry import Registry

if TYPE_CHECKING:
    from simlink.tasks.classifier import TaskModel

# simlink.tasks.classifier is imported inside the functions: resnet_cifar imports this module
# (for PRETRAINED) while classifier.py may still be loading its built-in architectures.

#: Pretrained task models by name: ``loader(weights_path_or_None) -> TaskModel``, registered with
#: ``@PRETRAINED.register(name)`` (a name taken twice raises); the built-in ones
#: (``resnet20_cifar10``) register on first look-up.
PRETRAINED: Registry[Callable[[str | None], TaskModel]] = Registry(
    "pretrained task model", builtins=("simlink.tasks.resnet_cifar", "simlink.tasks.espnet"))

#: Version of the task-training loop in the cache key: 2 = the shared resumable loop
#: (models cached by the earlier loop are not reused; they were trained differently).
TASK_LOOP_VERSION = 2


def load_task_model(model: str, weights: str | None = None, train=None, ctx=None,
                    kind: str = "classification") -> TaskModel:
    """A frozen task model for the receiver (a classifier, or a
    :class:`~simlink.tasks.segmenter.SegmentationModel` for ``kind="segmentation"``).

    Args:
        model: a name in :data:`PRETRAINED` (its weights are found as in
            :func:`~simlink.tasks.weights.resolve_weights`, or at ``weights``), the path of a
            file written by :meth:`TaskModel.save`, or with ``train`` an architecture name.
        weights: explicit checkpoint path for a pretrained model (ignored for a file).
        train: a :class:`simlink.scenario.TaskTrainConfig` to train ``model`` (needs ``ctx``).
        ctx: :class:`simlink.learned.context.TrainingContext` (data, seed, device, cache).
        kind: the scenario's ``task.kind``; the model must serve it.

    Raises:
        SimlinkError: unknown name and no such file, the weights cannot be found / verified, or
            the model is of another kind (a classifier for a segmentation task ...).
    """
    from simlink.tasks.classifier import TaskModel

    if train is not None:
        if ctx is None:
            raise SimlinkError("training a task model needs a TrainingContext")
        return train_task_model(model, train, ctx, kind=kind).freeze()
    if model in PRETRAINED:
        out = PRETRAINED[model](weights)
    elif Path(model).is_file():
        out = TaskModel.load(model)
    else:
        raise SimlinkError(
            f"task.model: {model!r} is neither one of {', '.join(sorted(PRETRAINED))} nor an existing task-model file")
    if out.kind != kind:
        raise SimlinkError(f"task.model: {model!r} is a {out.kind} model but task.kind is {kind!r}")
    return out.freeze()


def train_task_model(arch: str, train, ctx, checkpoint_every_s: float = 60.0,
                     kind: str = "classification") -> TaskModel:
    """Train ``arch`` (``small_cnn`` for classification, ``espnet`` for segmentation) on ``ctx``'s
    training split, or load it from the model cache.

    The cache key hashes the architecture, the training settings, the training images and
    labels (masks for segmentation), the seed and the loop version. Training runs the shared resumable loop: it checkpoints
    into the cache folder (every ``checkpoint_every_s`` seconds, each epoch end, on Ctrl-C /
    SIGTERM) and a killed training resumes from there. The finished model is saved with
    :meth:`TaskModel.save` (atomically) plus ``info.json`` (key, meta, per-epoch history and the
    sha256 of ``model.pt``, verified on load: a corrupt entry is moved aside and retrained). One
    process trains an entry at a time; another that needs it waits and loads it
    (:func:`~simlink.learned.cache.load_or_build`).

    Raises:
        SimlinkError: ``arch`` cannot be trained for ``kind``, or the split has no / out-of-range
            labels (no masks, for segmentation).
    """
    from simlink.hashing import stable_hash
    from simlink.learned.cache import CODE_VERSION, ModelCache, load_or_build
    from simlink.tasks.classifier import TaskModel
    from simlink.tasks.kinds import TASK_KINDS

    trainable = TASK_KINDS[kind].trainable
    if arch not in trainable:
        raise SimlinkError(f"task.model: {arch!r} cannot be trained for a {kind} task; use one of "
                           f"{', '.join(trainable) or 'none'}")
    segmentation = kind == "segmentation"
    # classifier keys stay what they were before segmentation options existed
    dump = train.model_dump(exclude=None if segmentation else {"options", "class_weights"})
    key = {"arch": arch, "train": dump,
           "data": ctx.data_identity(train.split, train.n_images, masks=segmentation),
           "seed": ctx.seed, "code": CODE_VERSION, "loop": TASK_LOOP_VERSION}
    if segmentation:
        key["kind"] = kind
    cache = ModelCache("task", stable_hash(key), ctx.cache_root)

    def load() -> TaskModel:
        obj = cache.load_model()  # sha256-verified; a corrupt entry is moved aside
        try:
            return TaskModel.from_saved(obj, cache.model_path)
        except SimlinkError as exc:
            cache.quarantine(f"model.pt is not a task model ({exc})")

    def build() -> TaskModel:
        data = ctx.train_images(train.split, train.n_images)
        ctx.log(f"task: training {arch} on {len(data)} {data.name}/{data.split} images, {train.epochs} epochs "
                f"-> {cache.dir}")
        fit = _fit_segmenter if segmentation else _fit_classifier
        model, result = fit(arch, train, data, ctx, cache, checkpoint_every_s)
        model.save(cache.model_path)  # atomic
        cache.publish({"key": key, "meta": model.meta, "history": result.history, "wall_s": round(result.wall_s, 3),
                       "resumed_from": result.resumed_from})  # + sha256 of model.pt, checkpoint deleted
        return model

    return load_or_build(cache, load, build, ctx.log)[0]


def _fit_classifier(arch, train, data, ctx, cache, checkpoint_every_s):
    """A ``small_cnn`` trained on ``data`` (labels); ``(model, TrainResult)``."""
    from simlink.learned.settings import OptimSettings
    from simlink.tasks.classifier import fit_classifier, small_cnn

    if data.labels is None:
        raise SimlinkError(f"task.train: {data.name}/{data.split} has no class labels")
    num_classes = max(len(data.classes or []), int(data.labels.max()) + 1)
    model = small_cnn(num_classes, width=train.width, classes=data.classes, seed=ctx.seed)
    settings = OptimSettings(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr, grad_clip=None)
    result = fit_classifier(model, data, settings, seed=ctx.seed, device=str(ctx.device), augment=train.augment,
                            cache=cache, log=ctx.log, checkpoint_every_s=checkpoint_every_s)
    return model, result


def _fit_segmenter(arch, train, data, ctx, cache, checkpoint_every_s):
    """A segmenter ``arch`` (``espnet`` with ``train.options``) trained from scratch on ``data``
    (masks); ``(model, TrainResult)``."""
    import torch

    from simlink.learned.settings import OptimSettings
    from simlink.tasks.classifier import build_architecture
    from simlink.tasks.segmenter import SegmentationModel, check_masks, fit_segmenter

    check_masks(data, "task.train")
    kwargs = {"num_outputs": len(data.classes), **train.options}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        net = build_architecture(arch, **kwargs)
    model = SegmentationModel(net, arch, kwargs, data.classes)
    settings = OptimSettings(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr, grad_clip=None)
    result = fit_segmenter(model, data, settings, seed=ctx.seed, device=str(ctx.device), augment=train.augment,
                           class_weights=train.class_weights, cache=cache, log=ctx.log,
                           checkpoint_every_s=checkpoint_every_s)
    return model, result
