"""Source-coding methods behind one protocol (see :mod:`simlink.methods.base`).

:data:`METHODS` is the registry of every method; the built-in ones (classic codecs, TOSC-SR /
RRD / RTD, multi-user deep JSCC) register themselves on first use of the registry. Importing
this package imports neither torch nor Sionna.
"""

from simlink.methods.base import (
    DEFAULT_PART,
    METHODS,
    AnalogPayload,
    DigitalPayload,
    ImageKeys,
    Method,
    MethodConfig,
    OperatingPoint,
    Payload,
    PayloadPart,
    Reception,
    default_keys,
    image_seed,
    register_method,
)


def build_method(config: MethodConfig) -> Method:
    """Instantiate the registered method for a validated scenario entry."""
    return METHODS[config.name](config)


__all__ = [
    "DEFAULT_PART",
    "METHODS",
    "AnalogPayload",
    "DigitalPayload",
    "ImageKeys",
    "Method",
    "MethodConfig",
    "OperatingPoint",
    "Payload",
    "PayloadPart",
    "Reception",
    "build_method",
    "default_keys",
    "image_seed",
    "register_method",
]
