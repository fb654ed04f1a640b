"""Scenario files: the YAML schema (pydantic), loading, and precise error messages.

A scenario names a dataset, methods with their operating points, the link (code, QAM order,
CRC), channels, an SNR grid (Es/N0 in dB per complex channel use), an error policy, repeats,
a seed and a device. :func:`load_scenario` turns a YAML file into a validated
:class:`Scenario` or raises :class:`~simlink.errors.ScenarioError` with a message of the form
``scenarios/x.yaml: link.modulation: 12 is not one of 4, 16, 64, 256``. Unknown keys are errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from simlink.data.registry import DATASETS
from simlink.errors import ScenarioError
from simlink.hashing import stable_hash
from simlink.methods.base import METHODS, MethodConfig
from simlink.phy.channels import ChannelConfig
from simlink.phy.config import LinkConfig
from simlink.schema import Strict as _Strict
from simlink.schema import NestedError, format_errors, registered_name, registry_entry, settings_dump
from simlink.sweep.receiver import ERROR_POLICIES
from simlink.tasks.kinds import ARCHITECTURE_OPTIONS, DEFAULT_TASK_KIND, TASK_KINDS

def _not_boolean(noun: str):
    def check(value: Any) -> Any:
        if isinstance(value, bool):  # YAML true/false; pydantic would take it as 1/0
            raise NestedError([("", f"{str(value).lower()} is not {noun}")])
        return value

    return BeforeValidator(check)


#: An integer field that refuses YAML ``true`` / ``false`` (``dataset.n_images: true is not an integer``).
Int = Annotated[int, _not_boolean("an integer")]
OptionalInt = Annotated[int | None, _not_boolean("an integer")]
#: A float field that refuses YAML ``true`` / ``false`` (integers are fine).
Float = Annotated[float, _not_boolean("a number")]

#: One ``methods:`` entry: its ``name`` picks the registered method, whose ``Config`` validates it.
MethodEntry = registry_entry(METHODS, MethodConfig, model_of=lambda m: m.Config)


class DatasetConfig(_Strict):
    """``dataset:`` — which images are sent.

    ``root`` is a folder (relative paths are taken from the current working directory);
    without it, ``$SIMLINK_DATA/<name>`` and ``~/.cache/simlink/datasets/<name>`` are searched.
    ``image_size`` is ``None`` (native size), an int ``s >= 8`` (``s x s``) or ``[H, W]`` (height,
    width, each ``>= 8``); ``[s, s]`` is stored as ``s``, so it hashes like the int. Real data is
    scaled (aspect ratio kept) to cover ``H x W`` and centre-cropped to it.
    What the dataset's registry record declares is checked here, not at run time: ``image_size``
    against its ``sizes`` (synthetic: 32, 64; squares only), ``n_images`` against its ``split_sizes``
    (synthetic: train 10000, val 1000, test 1000), and options such as ``skip_unreadable``
    (``folder`` only: skip files that cannot be decoded, with a warning each) against ``options``.
    """

    name: registered_name(DATASETS) = "synthetic"
    split: str = "test"
    n_images: Int = Field(16, ge=1, description="images sent per cell (a seeded, class-balanced sample)")
    image_size: int | list[int] | None = Field(None, description="an int s (s x s) or [H, W], each >= 8, "
                                               "in pixels; None = native")
    root: str | None = None
    download: bool = False
    skip_unreadable: bool = Field(False, description="folder: skip (with a warning) image files that cannot "
                                  "be decoded instead of failing; the names are kept on the loaded ImageSet")

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, v: Any) -> int | list[int] | None:
        """``None``, an int ``>= 8``, or ``[H, W]`` of two ints ``>= 8`` (``[s, s]`` becomes ``s``).
        Booleans are refused (YAML ``true`` is not a size)."""
        import numbers

        if v is None:
            return None
        if isinstance(v, bool):
            raise NestedError([("", f"{str(v).lower()} is not an integer")])
        if isinstance(v, (list, tuple)):
            return cls._image_size_pair(list(v))
        if not isinstance(v, numbers.Integral):
            raise NestedError([("", f"{v!r} is not an integer or a list [H, W] of two integers")])
        if v < 8:
            raise NestedError([("", f"{v} is not >= 8 (an image side is at least 8 pixels)")])
        return int(v)

    @staticmethod
    def _image_size_pair(v: list) -> int | list[int]:
        """``[H, W]`` checked: two ints (not booleans) ``>= 8``; ``[s, s]`` becomes ``s``."""
        import numbers

        shown = "[" + ", ".join(str(x).lower() if isinstance(x, bool) else repr(x) for x in v) + "]"
        if len(v) != 2:
            raise NestedError([("", f"{shown} is not [H, W]: a size list has two values (height, width), "
                                    f"got {len(v)}")])
        if any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in v):
            raise NestedError([("", f"{shown} is not [H, W] of two integers")])
        if min(v) < 8:
            raise NestedError([("", f"{shown} is not [H, W] with both sides >= 8 pixels")])
        h, w = int(v[0]), int(v[1])
        return h if h == w else [h, w]

    @model_validator(mode="after")
    def _known_split(self) -> "DatasetConfig":
        from simlink.data.registry import show_size, size_allowed

        spec = DATASETS[self.name]
        splits = list(spec.splits)
        if splits and self.split not in splits:
            raise ValueError(f"split {self.split!r} is not one of {', '.join(splits)} for dataset {self.name!r}")
        problems = []
        if not size_allowed(spec, self.image_size):
            allowed = ", ".join(map(show_size, spec.sizes))
            problems.append(("image_size", f"{self.image_size} is not one of {allowed} for dataset {self.name!r}"))
        available = spec.split_sizes.get(self.split)
        if available is not None and self.n_images > available:
            problems.append(("n_images", f"{self.n_images} is more than the {available} images of "
                                         f"{self.name}/{self.split}"))
        if self.skip_unreadable and "skip_unreadable" not in spec.options:
            takes = [n for n, s in DATASETS.items() if "skip_unreadable" in s.options]
            problems.append(("skip_unreadable", f"not an option of dataset {self.name!r} "
                                                f"(only of {', '.join(takes) or 'none'})"))
        if problems:
            raise NestedError(problems)
        return self


class TaskTrainConfig(_Strict):
    """``task.train:`` — train the receiver's task model on the dataset's training split (cached).

    Attributes:
        split: training split of the scenario's dataset.
        n_images: first ``n`` images of the split (``None``: all).
        epochs, lr, batch_size: Adam with cross-entropy (segmentation: pixel-wise, void ignored,
            cosine learning-rate schedule).
        augment: random flips (images and masks together) and, for classifiers, 4-pixel shifts.
        width: base width of ``small_cnn``.
        class_weights: segmentation: ENet class weights from the training masks.
        options: the architecture's own settings (``espnet``: ``p``, ``q``, its block counts).
    """

    split: str = "train"
    n_images: OptionalInt = Field(None, ge=2)
    epochs: Int = Field(10, ge=1)
    lr: Float = Field(1e-3, gt=0)
    batch_size: Int = Field(64, ge=2)
    augment: bool = True
    width: Int = Field(32, ge=1)
    class_weights: bool = True
    options: dict[str, Int] = Field(default_factory=dict)


class TaskConfig(_Strict):
    """``task:`` — the receiver's frozen task model, applied to every decoded image.

    ``kind`` is ``classification`` (the default; the dataset must carry labels; adds ``accuracy``,
    plus ``top5`` above 10 classes) or ``segmentation`` (masks; adds ``miou``, ``pixel_acc``,
    ``class_acc``, the same ``*_vs_orig`` against the segmenter's view of the original, bootstrap
    ``*_ci``, and the per-class table ``results_per_class.parquet``).

    ``model`` is a pretrained name (``resnet20_cifar10``, ``espnet_camvid``), the path of a model file
    written by ``TaskModel.save``, or, with ``train:``, an architecture name (classification:
    ``small_cnn``; segmentation: ``espnet``) trained on the dataset's training split and cached by a
    hash of the settings and the data. ``weights`` is an explicit checkpoint path for a pretrained
    name (otherwise ``$SIMLINK_WEIGHTS``, ``~/.cache/simlink/weights`` and the torch hub cache are
    searched). Learned methods with a task term (``tosc_sr``, ``rtd``) train against it.
    """

    kind: registered_name(TASK_KINDS) = Field(DEFAULT_TASK_KIND, description="a task kind (simlink.tasks.kinds)")
    model: str
    weights: str | None = None
    train: TaskTrainConfig | None = None

    @model_validator(mode="after")
    def _trainable(self) -> "TaskConfig":
        if self.train is not None:
            trainable = TASK_KINDS[self.kind].trainable
            if self.model not in trainable:
                raise ValueError(f"model: {self.model!r} cannot be trained from a scenario for a {self.kind} task; "
                                 f"with 'train:' use one of {', '.join(trainable) or 'none'}")
            if self.weights is not None:
                raise ValueError("weights: not used with 'train:' (the trained model is cached)")
            allowed = ARCHITECTURE_OPTIONS.get(self.model, ())
            unknown = [k for k in self.train.options if k not in allowed]
            if unknown:
                raise NestedError([(f"train.options.{k}", f"not an option of {self.model!r} "
                                    f"(it takes {', '.join(allowed) or 'none'})") for k in unknown])
        return self


class SNRRange(_Strict):
    """``snr_db: {start, stop, step}`` — an inclusive range of Es/N0 values in dB."""

    start: Float
    stop: Float
    step: Float = Field(gt=0)

    def values(self) -> list[float]:
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        if n < 1:
            raise ValueError(f"empty range: start {self.start} > stop {self.stop}")
        return [round(self.start + i * self.step, 6) for i in range(n)]


class Scenario(_Strict):
    """A validated scenario. Field names are the YAML keys."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    plugins: list[str] = Field(default_factory=list, description="modules or .py files that register methods, "
                               "channels, task kinds or datasets; imported before the rest is validated")
    seed: Int = Field(0, ge=0, lt=2**63)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dataset: DatasetConfig = DatasetConfig()
    methods: list[MethodEntry] = Field(min_length=1)
    link: LinkConfig = Field(default_factory=LinkConfig)  # a factory: importing the schema builds no code
    channels: list[ChannelConfig] = Field(min_length=1)
    snr_db: list[float] | SNRRange = Field(description="Es/N0 per complex channel use, dB")
    task: TaskConfig | None = None
    error_policy: Literal[ERROR_POLICIES] = "conceal"
    repeats: Int = Field(1, ge=1, description="independent channel draws per (method, op, channel, SNR)")

    @model_validator(mode="wrap")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any, handler) -> "Scenario":
        """``true`` / ``false`` where a number is expected is an error (pydantic would take it as 1 / 0).
        This module's fields refuse them up front (:data:`Int`, :data:`Float`); this catch-all
        compares the raw data with the validated model, so it also covers the fields of link,
        method and channel models (when the coerced value passed their other checks)."""
        model = handler(data)
        if isinstance(data, dict):
            problems = list(_coerced_booleans(data, model, ""))
            if problems:
                raise NestedError(problems)
        return model

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("plugins"), list):
            for i, spec in enumerate(data["plugins"]):
                if isinstance(spec, str):
                    import_plugin(spec, f"plugins.{i}")
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"{v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @field_validator("snr_db", mode="before")
    @classmethod
    def _snr_not_boolean(cls, v: Any) -> Any:
        if isinstance(v, list):
            bad = [(str(i), f"{str(x).lower()} is not a number") for i, x in enumerate(v) if isinstance(x, bool)]
            if bad:
                raise NestedError(bad)
        return v

    @field_validator("snr_db")
    @classmethod
    def _snr_list(cls, v: Any) -> Any:
        values = v.values() if isinstance(v, SNRRange) else list(v)
        if not values:
            raise ValueError("needs at least one SNR value")
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate SNR values in {values}")
        if any(not math.isfinite(x) for x in values):
            raise ValueError(f"SNR values must be finite, got {values}")
        return v

    @model_validator(mode="after")
    def _unique(self) -> "Scenario":
        labels = [_channel_label(c) for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"channels: duplicate channel entries {labels}")
        names = [m.display_name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"methods: {', '.join(dup)} appear more than once; give each entry a distinct 'label'")
        self._known_parts()
        self._train_split_size()
        self._task_fits_dataset()
        return self

    def _task_fits_dataset(self) -> None:
        """The task kind's ground truth (labels, masks) is one the dataset declares it carries."""
        if self.task is None:
            return
        spec = DATASETS[self.dataset.name]
        needs = TASK_KINDS[self.task.kind].needs
        have = {"labels": spec.has_labels, "masks": spec.has_masks}
        missing = [f for f in needs if have.get(f) is False]
        if missing:
            what = {"labels": "class labels", "masks": "segmentation masks"}
            raise NestedError([("task.kind", f"a {self.task.kind} task needs {what[missing[0]]}, which dataset "
                                             f"{self.dataset.name!r} does not have")])

    def _train_split_size(self) -> None:
        """``task.train.n_images`` fits the training split when the dataset declares its split sizes."""
        train = self.task.train if self.task is not None else None
        if train is None or train.n_images is None:
            return
        available = DATASETS[self.dataset.name].split_sizes.get(train.split)
        if available is not None and train.n_images > available:
            raise NestedError([("task.train.n_images", f"{train.n_images} is more than the {available} images of "
                                                       f"{self.dataset.name}/{train.split}")])

    def _known_parts(self) -> None:
        """Every ``link.parts`` entry names a part that a digital method of the scenario sends."""
        if not self.link.parts:
            return
        from simlink.methods import build_method

        sent: dict[str, None] = {}
        for cfg in self.methods:
            method = build_method(cfg)
            if method.kind == "digital":
                sent.update(dict.fromkeys(p.name for p in method.payload_parts()))
        unknown = [name for name in self.link.parts if name not in sent]
        if unknown:
            raise NestedError([(f"link.parts.{name}", f"no digital method of this scenario sends a part named "
                                f"{name!r} (parts sent: {', '.join(sent) or 'none'})") for name in unknown])

    # ---- derived values -------------------------------------------------------------------
    @property
    def snr_values(self) -> list[float]:
        """The SNR grid as a sorted list of Es/N0 values in dB."""
        v = self.snr_db.values() if isinstance(self.snr_db, SNRRange) else list(self.snr_db)
        return sorted(float(x) for x in v)

    def channel_labels(self) -> list[str]:
        return [_channel_label(c) for c in self.channels]

    def context_hash(self, device: str | None = None) -> str:
        """Hash of everything that changes every cell's result (dataset, link, seed, policy, task).

        ``device``: the torch device the run uses. The LDPC decoder that ``link.decoder``
        resolves to there (:meth:`LinkConfig.decoders_used`) is hashed when it is not Sionna's
        alone, so a folder decoded by one decoder never resumes with the other; with Sionna (and
        with ``device=None``) the hash is what it was before decoders could be chosen.

        Methods, channels, SNRs and repeats are *not* in it: adding any of them to a scenario
        and re-running into the same folder computes only the new cells. Only settings that
        differ from their defaults are hashed (:func:`~simlink.schema.settings_dump`), so a key
        added to the schema later, with a default, leaves the hash of every scenario that does not
        set it unchanged. Result folders written before this rule (hash version 1) are recognised
        through :meth:`legacy_context_hashes`. The flip side: changing a *default* changes results
        without changing the hash, so whoever changes a default of a hashed key must bump
        ``"version"`` here (and keep the previous rule in :meth:`legacy_context_hashes` only if the
        old results stay valid).
        """
        ctx = {
            "version": 2,
            "dataset": settings_dump(self.dataset, exclude={"download"}),
            "link": settings_dump(self.link, exclude={"max_codewords_per_batch"}),  # a speed knob only
            "seed": self.seed,
            "error_policy": self.error_policy,
        }
        if self.task is not None:
            ctx["task"] = settings_dump(self.task)
        ctx["link"].pop("decoder", None)  # what it resolves to is what matters
        if device is not None and self.link.decoders_used(device) != ("sionna",):
            ctx["decoder"] = list(self.link.decoders_used(device))
        return stable_hash(ctx)

    def context_hashes_any_decoder(self) -> list[str]:
        """:meth:`context_hash` under every decoder the scenario can resolve to (for commands that
        read a results folder without decoding, e.g. ``simlink mi``)."""
        return list(dict.fromkeys([self.context_hash(None), self.context_hash("cpu")]))

    def legacy_context_hashes(self) -> list[str]:
        """Context hashes this scenario had under earlier hash versions (folders written by earlier
        simlink versions resume under them). Version 1 hashed every field of dataset, link and task
        as they stood then; a scenario that sets a key added since cannot have a version-1 hash."""
        v1_fields = {
            "dataset": {"name", "split", "n_images", "image_size", "root"},
            "link": {"code", "modulation", "crc"},
            "code": {"name", "k", "n", "num_iter", "cn_update", "early_stop"},
            "task": {"kind", "model", "weights", "train"},
            "train": {"split", "n_images", "epochs", "lr", "batch_size", "augment", "width"},
        }

        def newer_keys_set(model, allowed: set[str]) -> bool:
            # speed knobs, and link.decoder: v1 folders were decoded by Sionna, and the runner offers
            # them only to runs that decode with Sionna (whether pinned or resolved from auto)
            return bool(set(settings_dump(model)) - allowed - {"download", "max_codewords_per_batch", "decoder"})

        if newer_keys_set(self.dataset, v1_fields["dataset"]) or newer_keys_set(self.link, v1_fields["link"]) \
                or newer_keys_set(self.link.code, v1_fields["code"]):
            return []
        ctx = {
            "dataset": self.dataset.model_dump(include=v1_fields["dataset"]),
            "link": self.link.model_dump(include={"modulation": True, "crc": True, "code": v1_fields["code"]}),
            "seed": self.seed,
            "error_policy": self.error_policy,
        }
        if self.task is not None:
            if newer_keys_set(self.task, v1_fields["task"]) or (
                    self.task.train is not None and newer_keys_set(self.task.train, v1_fields["train"])):
                return []
            ctx["task"] = self.task.model_dump(include={"kind": True, "model": True, "weights": True,
                                                        "train": v1_fields["train"]})
        return [stable_hash(ctx)]

    def to_yaml_dict(self) -> dict:
        """Plain data for the manifest (round-trips through :func:`parse_scenario`)."""
        d = self.model_dump(mode="json")
        d["snr_db"] = self.snr_values
        return d


def import_plugin(spec: str, where: str = "plugins") -> None:
    """Import a plugin: a module name (``my_pkg.methods``) or the path of a ``.py`` file (relative
    to the current folder), whose import registers methods, channels, task kinds or datasets with
    the registries' decorators. A module is imported once per process. Raises ``ValueError``
    ``"<where>: cannot import ..."`` (the scenario loader turns it into a one-line error)."""
    import importlib
    import importlib.util
    import sys

    try:
        if spec.endswith(".py"):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file {path}")
            name = f"simlink_plugin_{path.stem}_{stable_hash(str(path), 8)}"
            if name in sys.modules:
                return
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            importlib.import_module(spec)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as the field's error
        raise ValueError(f"{where}: cannot import {spec!r}: {type(exc).__name__}: {exc}") from None


def _coerced_booleans(raw: Any, value: Any, path: str):
    """``(path, text)`` for each YAML boolean in ``raw`` that validation turned into a number in
    ``value`` (walks models, mappings and lists in parallel)."""
    from pydantic import BaseModel

    if isinstance(raw, bool):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            noun = "an integer" if isinstance(value, int) else "a number"
            yield path, f"{str(raw).lower()} is not {noun}"
    elif isinstance(value, BaseModel) and isinstance(raw, dict):
        for name, info in type(value).model_fields.items():
            key = info.alias or name
            if key in raw:
                yield from _coerced_booleans(raw[key], getattr(value, name, None), f"{path}.{key}".lstrip("."))
    elif isinstance(raw, dict) and isinstance(value, dict):
        for key, item in raw.items():
            if key in value:
                yield from _coerced_booleans(item, value[key], f"{path}.{key}".lstrip("."))
    elif isinstance(raw, (list, tuple)) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        for i, (r, v) in enumerate(zip(raw, value)):
            yield from _coerced_booleans(r, v, f"{path}.{i}".lstrip("."))


def _channel_label(c: Any) -> str:
    return getattr(c, "label", None) or c.name


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data. Raises :class:`ScenarioError` naming ``source``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        body = format_errors(e)
        raise ScenarioError("\n".join(f"{source}: {line}" for line in body.splitlines())) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises:
        ScenarioError: file missing, a directory, unreadable or not UTF-8 text, YAML syntax error (with line/column), or
            invalid content (one line per problem: ``file: field.path: what is wrong``).
    """
    p = Path(path)
    if p.is_dir():
        raise ScenarioError(f"{p}: is a directory, not a scenario file (give the path of a .yaml file)")
    if not p.is_file():
        raise ScenarioError(f"{p}: scenario file not found")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read the scenario file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not a text file (UTF-8): byte 0x{raw[e.start]:02x} at offset {e.start} "
                            "cannot be decoded; a scenario is a YAML text file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ScenarioError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_scenario(data, source=str(p))
