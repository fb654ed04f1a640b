"""Scenario files: the YAML schema (pydantic), loading, and precise error messages.

A scenario names a dataset, methods with their operating points, the link (code, QAM order,
CRC), channels, an SNR grid (Es/N0 in dB per complex channel use), an error policy, repeats,
a seed and a device. :func:`load_scenario` turns a YAML file into a validated
:class:`Scenario` or raises :class:`~simlink.errors.ScenarioError` with a message of the form
``scenarios/x.yaml: link.modulation: 12 is not one of 4, 16, 64, 256``. Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simlink.errors import ScenarioError
from simlink.methods import METHODS
from simlink.methods.base import MethodConfig
from simlink.phy.channels import ChannelConfig
from simlink.phy.config import LinkConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """``dataset:`` — which images are sent.

    ``root`` is a folder (relative paths are taken from the current working directory);
    without it, ``$SIMLINK_DATA/<name>`` and ``~/.cache/simlink/datasets/<name>`` are searched.
    """

    name: str = "synthetic"
    split: str = "test"
    n_images: int = Field(16, ge=1, description="images sent per cell (a seeded, class-balanced sample)")
    image_size: int | None = Field(None, ge=8, description="square size in pixels; None = native")
    root: str | None = None
    download: bool = False

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from simlink.data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"{v!r} is not one of {', '.join(sorted(DATASETS))}")
        return v

    @model_validator(mode="after")
    def _known_split(self) -> "DatasetConfig":
        from simlink.data import DATASETS

        splits = list(DATASETS[self.name].splits)
        if splits and self.split not in splits:
            raise ValueError(f"split {self.split!r} is not one of {', '.join(splits)} for dataset {self.name!r}")
        return self


class TaskTrainConfig(_Strict):
    """``task.train:`` — train the receiver classifier on the dataset's training split (cached).

    Attributes:
        split: training split of the scenario's dataset.
        n_images: first ``n`` images of the split (``None``: all).
        epochs, lr, batch_size: Adam with cross-entropy.
        augment: random flips and 4-pixel shifts.
        width: base width of the architecture (``small_cnn``).
    """

    split: str = "train"
    n_images: int | None = Field(None, ge=2)
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=2)
    augment: bool = True
    width: int = Field(32, ge=1)


class TaskConfig(_Strict):
    """``task:`` — the receiver's frozen task model, applied to every decoded image.

    ``model`` is a pretrained name (``resnet20_cifar10``), the path of a model file written by
    ``TaskModel.save``, or, with ``train:``, an architecture name (``small_cnn``) trained on the
    dataset's training split and cached by a hash of the settings and the data. ``weights`` is an
    explicit checkpoint path for a pretrained name (otherwise ``$SIMLINK_WEIGHTS``,
    ``~/.cache/simlink/weights`` and the torch hub cache are searched). The dataset must carry
    labels. Adds ``accuracy`` (top-1; plus ``top5`` when there are more than 10 classes) to the
    results table. Learned methods with a task term (``tosc_sr``, ``rtd``) train against it.
    """

    kind: Literal["classification"] = "classification"
    model: str
    weights: str | None = None
    train: TaskTrainConfig | None = None

    @model_validator(mode="after")
    def _trainable(self) -> "TaskConfig":
        if self.train is not None:
            trainable = ("small_cnn",)
            if self.model not in trainable:
                raise ValueError(f"model: {self.model!r} cannot be trained from a scenario; with 'train:' use one of "
                                 f"{', '.join(trainable)}")
            if self.weights is not None:
                raise ValueError("weights: not used with 'train:' (the trained model is cached)")
        return self


class SNRRange(_Strict):
    """``snr_db: {start, stop, step}`` — an inclusive range of Es/N0 values in dB."""

    start: float
    stop: float
    step: float = Field(gt=0)

    def values(self) -> list[float]:
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        if n < 1:
            raise ValueError(f"empty range: start {self.start} > stop {self.stop}")
        return [round(self.start + i * self.step, 6) for i in range(n)]


class Scenario(_Strict):
    """A validated scenario. Field names are the YAML keys."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dataset: DatasetConfig = DatasetConfig()
    methods: list[MethodConfig] = Field(min_length=1)
    link: LinkConfig = LinkConfig()
    channels: list[ChannelConfig] = Field(min_length=1)
    snr_db: list[float] | SNRRange = Field(description="Es/N0 per complex channel use, dB")
    task: TaskConfig | None = None
    error_policy: Literal["conceal", "decode_anyway"] = "conceal"
    repeats: int = Field(1, ge=1, description="independent channel draws per (method, op, channel, SNR)")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"{v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _method_configs(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for i, entry in enumerate(v):
            if isinstance(entry, MethodConfig):
                out.append(entry)
                continue
            if not isinstance(entry, dict) or "name" not in entry:
                raise _NestedError(f"methods.{i}", "each method needs a 'name'", entry)
            name = entry["name"]
            if name not in METHODS:
                raise _NestedError(f"methods.{i}.name", f"{name!r} is not one of {', '.join(sorted(METHODS))}", name)
            try:
                out.append(METHODS[name].Config.model_validate(entry))
            except ValidationError as e:
                raise _NestedError(f"methods.{i}", _format_errors(e), entry, nested=True) from None
        return out

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
        return self

    # ---- derived values -------------------------------------------------------------------
    @property
    def snr_values(self) -> list[float]:
        """The SNR grid as a sorted list of Es/N0 values in dB."""
        v = self.snr_db.values() if isinstance(self.snr_db, SNRRange) else list(self.snr_db)
        return sorted(float(x) for x in v)

    def channel_labels(self) -> list[str]:
        return [_channel_label(c) for c in self.channels]

    def context_hash(self) -> str:
        """Hash of everything that changes every cell's result (dataset, link, seed, policy).

        Methods, channels, SNRs and repeats are *not* in it: adding any of them to a scenario
        and re-running into the same folder computes only the new cells.
        """
        ctx = {
            "dataset": self.dataset.model_dump(exclude={"download"}),
            "link": self.link.model_dump(exclude={"max_codewords_per_batch"}),  # a speed knob only
            "seed": self.seed,
            "error_policy": self.error_policy,
        }
        if self.task is not None:  # only when set, so scenarios without a task keep their hash
            ctx["task"] = self.task.model_dump()
        return stable_hash(ctx)

    def to_yaml_dict(self) -> dict:
        """Plain data for the manifest (round-trips through :func:`parse_scenario`)."""
        d = self.model_dump(mode="json")
        d["snr_db"] = self.snr_values
        return d


def _channel_label(c: Any) -> str:
    return getattr(c, "label", None) or c.name


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of a JSON-serialisable object with sorted keys."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


# ---- errors -------------------------------------------------------------------------------
class _NestedError(ValueError):
    """Raised inside validators to report a location deeper than the field itself."""

    def __init__(self, loc: str, msg: str, value: Any, nested: bool = False):
        self.loc, self.msg, self.value, self.nested = loc, msg, value, nested
        super().__init__(msg)


def _fmt_value(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _format_one(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    typ, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        allowed = expected.replace(" or ", ", ").replace("'", "")
        text = f"{_fmt_value(value)} is not one of {allowed}"
    elif typ == "extra_forbidden":
        text = "unknown key (not allowed here; check spelling)"
    elif typ == "missing":
        text = "required key is missing"
    elif typ == "union_tag_invalid":
        text = f"{_fmt_value(ctx.get('tag'))} is not one of {ctx.get('expected_tags', '').replace(chr(39), '')}"
    elif typ == "value_error" and isinstance(ctx.get("error"), _NestedError):
        return f"{ctx['error'].loc}: {ctx['error'].msg}"  # nested ones are expanded by _format_errors
    else:
        msg = err["msg"].removeprefix("Value error, ")
        shown = _fmt_value(value)
        if isinstance(value, dict) and loc and re.match(r"^[A-Za-z_][\w.]*: ", msg):
            return f"{loc}.{msg}"  # a model-level check that names its field: "field: problem"
        if value is None or isinstance(value, dict) or msg.startswith((shown, str(value))):
            text = msg
        else:
            text = f"{shown}: {msg}"
    return f"{loc}: {text}" if loc else text


def _format_errors(e: ValidationError) -> str:
    """One line per problem, ``field.path: what is wrong`` (nested method errors expanded)."""
    lines = []
    for err in e.errors():
        ctx = err.get("ctx") or {}
        ne = ctx.get("error")
        if isinstance(ne, _NestedError) and ne.nested:
            for line in ne.msg.splitlines():
                lines.append(f"{ne.loc}.{line}")
            continue
        lines.append(_format_one(err))
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data. Raises :class:`ScenarioError` naming ``source``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        body = _format_errors(e)
        raise ScenarioError("\n".join(f"{source}: {line}" for line in body.splitlines())) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises:
        ScenarioError: file missing or unreadable, YAML syntax error (with line/column), or
            invalid content (one line per problem: ``file: field.path: what is wrong``).
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: scenario file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ScenarioError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_scenario(data, source=str(p))
