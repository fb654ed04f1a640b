"""The receiver's task model named by a scenario: a pretrained record or a saved TaskModel file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from simlink.errors import SimlinkError
from simlink.tasks.classifier import TaskModel
from simlink.tasks.resnet_cifar import load_resnet20_cifar10

#: Pretrained task models by name: ``loader(weights_path_or_None) -> TaskModel``.
PRETRAINED: dict[str, Callable[[str | None], TaskModel]] = {
    "resnet20_cifar10": load_resnet20_cifar10,
}


def load_task_model(model: str, weights: str | None = None) -> TaskModel:
    """A frozen classifier for the receiver.

    Args:
        model: a name in :data:`PRETRAINED` (its weights are found as in
            :func:`~simlink.tasks.weights.resolve_weights`, or at ``weights``), or the path of a
            file written by :meth:`TaskModel.save`.
        weights: explicit checkpoint path for a pretrained model (ignored for a file).

    Raises:
        SimlinkError: unknown name and no such file, or the weights cannot be found / verified.
    """
    if model in PRETRAINED:
        return PRETRAINED[model](weights).freeze()
    if Path(model).is_file():
        return TaskModel.load(model).freeze()
    raise SimlinkError(
        f"task.model: {model!r} is neither one of {', '.join(sorted(PRETRAINED))} nor an existing task-model file"
    )
