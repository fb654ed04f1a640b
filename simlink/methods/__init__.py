"""Source-coding methods behind one protocol (see :mod:`simlink.methods.base`).

Importing this package registers every built-in method in :data:`METHODS`.
"""

from simlink.methods.base import (
    METHODS,
    AnalogPayload,
    DigitalPayload,
    Method,
    MethodConfig,
    OperatingPoint,
    Payload,
    register_method,
)
from simlink.methods import classic  # noqa: F401  (registers jpeg, jpeg2000, webp, avif, heif)
from simlink.methods import tosc_sr  # noqa: F401  (registers tosc_sr, rrd, rtd)
from simlink.methods import jscc_multiuser  # noqa: F401  (registers jscc_multiuser)


def build_method(config: MethodConfig) -> Method:
    """Instantiate the registered method for a validated scenario entry."""
    return METHODS[config.name](config)


__all__ = [
    "METHODS",
    "AnalogPayload",
    "DigitalPayload",
    "Method",
    "MethodConfig",
    "OperatingPoint",
    "Payload",
    "build_method",
    "register_method",
]
