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
    "pretrained task model", builtins=("simlink.tasks.resnet_cifar",))

#: Version of the task-training loop in the cache key: 2 = the shared resumable loop
#: (models cached by the earlier loop are not reused; they were trained differently).
TASK_LOOP_VERSION = 2


def load_task_model(model: str, weights: str | None = None, train=None, ctx=None) -> TaskModel:
    """A frozen classifier for the receiver.

    Args:
        model: a name in :data:`PRETRAINED` (its weights are found as in
            :func:`~simlink.tasks.weights.resolve_weights`, or at ``weights``), the path of a
            file written by :meth:`TaskModel.save`, or with ``train`` an architecture name.
        weights: explicit checkpoint path for a pretrained model (ignored for a file).
        train: a :class:`simlink.scenario.TaskTrainConfig` to train ``model`` (needs ``ctx``).
        ctx: :class:`simlink.learned.context.TrainingContext` (data, seed, device, cache).

    Raises:
        SimlinkError: unknown name and no such file, or the weights cannot be found / verified.
    """
    from simlink.tasks.classifier import TaskModel

    if train is not None:
        if ctx is None:
            raise SimlinkError("training a task model needs a TrainingContext")
        return train_task_model(model, train, ctx).freeze()
    if model in PRETRAINED:
        return PRETRAINED[model](weights).freeze()
    if Path(model).is_file():
        return TaskModel.load(model).freeze()
    raise SimlinkError(
        f"task.model: {model!r} is neither one of {', '.join(sorted(PRETRAINED))} nor an existing task-model file"
    )


def train_task_model(arch: str, train, ctx, checkpoint_every_s: float = 60.0) -> TaskModel:
    """Train ``arch`` (``small_cnn``) on ``ctx``'s training split, or load it from the model cache.

    The cache key hashes the architecture, the training settings, the training images and
    labels, the seed and the loop version. Training runs the shared resumable loop: it checkpoints
    into the cache folder (every ``checkpoint_every_s`` seconds, each epoch end, on Ctrl-C /
    SIGTERM) and a killed training resumes from there. The finished model is saved with
    :meth:`TaskModel.save` (atomically) plus ``info.json`` (key, meta, per-epoch history and the
    sha256 of ``model.pt``, verified on load: a corrupt entry is moved aside and retrained). One
    process trains an entry at a time; another that needs it waits and loads it
    (:func:`~simlink.learned.cache.load_or_build`).

    Raises:
        SimlinkError: ``arch`` cannot be trained, or the split has no / out-of-range labels.
    """
    from simlink.hashing import stable_hash
    from simlink.learned.cache import CODE_VERSION, ModelCache, load_or_build
    from simlink.learned.settings import OptimSettings
    from simlink.tasks.classifier import TaskModel, fit_classifier, small_cnn
    from simlink.tasks.kinds import TRAINABLE_ARCHITECTURES

    if arch not in TRAINABLE_ARCHITECTURES:
        raise SimlinkError(f"task.model: {arch!r} cannot be trained; use one of {', '.join(TRAINABLE_ARCHITECTURES)}")
    key = {"arch": arch, "train": train.model_dump(), "data": ctx.data_identity(train.split, train.n_images),
           "seed": ctx.seed, "code": CODE_VERSION, "loop": TASK_LOOP_VERSION}
    cache = ModelCache("task", stable_hash(key), ctx.cache_root)

    def load() -> TaskModel:
        obj = cache.load_model()  # sha256-verified; a corrupt entry is moved aside
        try:
            return TaskModel.from_saved(obj, cache.model_path)
        except SimlinkError as exc:
            cache.quarantine(f"model.pt is not a task model ({exc})")

    def build() -> TaskModel:
        data = ctx.train_images(train.split, train.n_images)
        if data.labels is None:
            raise SimlinkError(f"task.train: {data.name}/{data.split} has no class labels")
        num_classes = max(len(data.classes or []), int(data.labels.max()) + 1)
        ctx.log(f"task: training {arch} on {len(data)} {data.name}/{data.split} images, {train.epochs} epochs "
                f"-> {cache.dir}")
        model = small_cnn(num_classes, width=train.width, classes=data.classes, seed=ctx.seed)
        settings = OptimSettings(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr, grad_clip=None)
        result = fit_classifier(model, data, settings, seed=ctx.seed, device=str(ctx.device), augment=train.augment,
                                cache=cache, log=ctx.log, checkpoint_every_s=checkpoint_every_s)
        model.save(cache.model_path)  # atomic
        cache.publish({"key": key, "meta": model.meta, "history": result.history, "wall_s": round(result.wall_s, 3),
                       "resumed_from": result.resumed_from})  # + sha256 of model.pt, checkpoint deleted
        return model

    return load_or_build(cache, load, build, ctx.log)[0]
