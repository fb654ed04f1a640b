"""Receiver task models (classifiers): build, train, evaluate, freeze, save, load.

>>> from simlink.tasks import small_cnn, train_classifier, load_resnet20_cifar10, TaskModel
"""

from simlink.tasks.classifier import (
    ARCHITECTURES,
    Normalize,
    TaskModel,
    build_architecture,
    register_architecture,
    small_cnn,
    train_classifier,
)
from simlink.tasks.resnet_cifar import (
    CIFAR10_CLASSES,
    RESNET20_CIFAR10,
    ResNetCifar,
    load_resnet20_cifar10,
    resnet20,
)
from simlink.tasks.loading import PRETRAINED, load_task_model
from simlink.tasks.weights import WeightsRecord, candidate_paths, load_state_dict, resolve_weights, sha256_file

__all__ = [
    "PRETRAINED",
    "load_task_model",
    "ARCHITECTURES",
    "CIFAR10_CLASSES",
    "Normalize",
    "RESNET20_CIFAR10",
    "ResNetCifar",
    "TaskModel",
    "WeightsRecord",
    "build_architecture",
    "candidate_paths",
    "load_resnet20_cifar10",
    "load_state_dict",
    "register_architecture",
    "resnet20",
    "resolve_weights",
    "sha256_file",
    "small_cnn",
    "train_classifier",
]
