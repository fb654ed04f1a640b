"""The receiver's task model named by a scenario: a pretrained record, a saved TaskModel file,
or an architecture trained on the scenario's training split (cached)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from simlink.errors import SimlinkError
from simlink.tasks.classifier import TaskModel, small_cnn, train_classifier
from simlink.tasks.resnet_cifar import load_resnet20_cifar10

#: Pretrained task models by name: ``loader(weights_path_or_None) -> TaskModel``.
PRETRAINED: dict[str, Callable[[str | None], TaskModel]] = {
    "resnet20_cifar10": load_resnet20_cifar10,
}


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


def train_task_model(arch: str, train, ctx) -> TaskModel:
    """Train ``arch`` (``small_cnn``) on ``ctx``'s training split, or load it from the model cache.

    The cache key hashes the architecture, the training settings, the training images and
    labels, and the seed; the model is saved with :meth:`TaskModel.save` (atomically).
    """
    from simlink.atomic import atomic_write_json
    from simlink.learned.cache import CODE_VERSION, ModelCache, fingerprint

    if arch != "small_cnn":
        raise SimlinkError(f"task.model: {arch!r} cannot be trained; use small_cnn")
    key = {"arch": arch, "train": train.model_dump(), "data": ctx.data_identity(train.split, train.n_images),
           "seed": ctx.seed, "code": CODE_VERSION}
    cache = ModelCache("task", fingerprint(key), ctx.cache_root)
    if cache.is_done():
        return TaskModel.load(cache.model_path)
    data = ctx.train_images(train.split, train.n_images)
    if data.labels is None:
        raise SimlinkError(f"task.train: {data.name}/{data.split} has no class labels")
    num_classes = max(len(data.classes or []), int(data.labels.max()) + 1)
    ctx.log(f"task: training {arch} on {len(data)} {data.name}/{data.split} images, {train.epochs} epochs -> {cache.dir}")
    model = small_cnn(num_classes, width=train.width, classes=data.classes, seed=ctx.seed)
    train_classifier(model, data, epochs=train.epochs, lr=train.lr, batch_size=train.batch_size, seed=ctx.seed,
                     device=str(ctx.device), augment=train.augment)
    model.save(cache.model_path)  # atomic
    atomic_write_json({"key": key, "meta": model.meta}, cache.info_path)
    return model
