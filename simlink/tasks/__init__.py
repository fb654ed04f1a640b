"""Receiver task models (classifiers, segmenters): build, train, evaluate, freeze, save, load;
and the task kinds (:mod:`simlink.tasks.kinds`).

>>> from simlink.tasks import small_cnn, train_classifier, load_resnet20_cifar10, TaskModel

Importing the package is cheap: torch loads when a model name is first used.
"""

from simlink.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["ARCHITECTURES", "ClassifierStep", "Normalize", "TaskModel", "build_architecture",
                     "fit_classifier", "register_architecture",
                     "small_cnn", "train_classifier", "images_to_tensor", "tensor_to_images"],
                    "simlink.tasks.classifier"),
    **dict.fromkeys(["CIFAR10_CLASSES", "RESNET20_CIFAR10", "ResNetCifar", "load_resnet20_cifar10", "resnet20"],
                    "simlink.tasks.resnet_cifar"),
    **dict.fromkeys(["PRETRAINED", "load_task_model"], "simlink.tasks.loading"),
    **dict.fromkeys(["SegmentationModel", "SegmenterStep", "SoftmaxSegmenter", "enet_class_weights", "fit_segmenter"],
                    "simlink.tasks.segmenter"),
    **dict.fromkeys(["ESPNET_CAMVID", "load_espnet_camvid"], "simlink.tasks.espnet"),
    **dict.fromkeys(["WeightsRecord", "candidate_paths", "load_state_dict", "resolve_weights"],
                    "simlink.tasks.weights"),
    **dict.fromkeys(["TASK_KINDS", "TaskKind", "register_task_kind"], "simlink.tasks.kinds"),
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
