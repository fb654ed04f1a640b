"""Learned-codec entropy layers: GDN, factorized prior, (mixture) Gaussian conditionals and
real range coding of their integer symbols with constriction.

Training uses additive U(-1/2, 1/2) noise (``add_noise``) in place of rounding; inference
rounds and codes symbols with ``encode_*``/``decode_*`` so rates come from actual bytes.
"""

from simlink.entropy.coder import (
    decode_factorized,
    decode_gaussian,
    decode_mixture,
    SymbolReader,
    SymbolWriter,
    encode_factorized,
    encode_gaussian,
    encode_mixture,
    gaussian_support,
    mixture_model,
    mixture_models,
    mixture_support,
    MixtureModel,
)
from simlink.entropy.conditional import (
    LIKELIHOOD_BOUND,
    SCALE_BOUND,
    GaussianConditional,
    GaussianMixtureConditional,
    add_noise,
    quantize,
)
from simlink.entropy.factorized import FactorizedPrior, PmfTables
from simlink.entropy.gdn import GDN

__all__ = [
    "GDN",
    "FactorizedPrior",
    "PmfTables",
    "GaussianConditional",
    "GaussianMixtureConditional",
    "add_noise",
    "quantize",
    "SCALE_BOUND",
    "LIKELIHOOD_BOUND",
    "encode_gaussian",
    "decode_gaussian",
    "encode_mixture",
    "decode_mixture",
    "encode_factorized",
    "decode_factorized",
    "SymbolWriter",
    "SymbolReader",
    "gaussian_support",
    "mixture_support",
    "mixture_model",
    "mixture_models",
    "MixtureModel",
]
