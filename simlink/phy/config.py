"""Link configuration: the ``link:`` section of a scenario (code, QAM order, CRC, batching).

The field names are the user-facing YAML keys. Every validator names the offending key and the
allowed values, e.g. ``12 is not one of 4, 16, 64, 256`` for ``link.modulation``.

Example YAML::

    link:
      code: {name: ldpc5g, k: 1024, n: 1536, num_iter: 20, cn_update: boxplus-phi, early_stop: true}
      modulation: 16
      crc: 24A
      max_codewords_per_batch: null  # 128 on CPU, 16384 on GPU
      parts:                         # optional: a payload part's own code, QAM and CRC
        labels: {code: {k: 512, n: 1536}, modulation: 4}

A method whose payload has several named parts (:class:`simlink.methods.base.PayloadPart`) sends
each part in its own code blocks; ``link.parts.<part>`` overrides any of ``code`` (key by key),
``modulation`` and ``crc`` for that part; parts not named there use the link's settings
(:meth:`LinkConfig.for_part`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

QAM_ORDERS: tuple[int, ...] = (4, 16, 64, 256)
"""Allowed values of ``link.modulation`` (square Gray-labelled QAM)."""

CRC_LENGTHS: dict[str, int] = {"24A": 24, "24B": 24, "24C": 24, "16": 16, "11": 11, "6": 6}
"""Allowed values of ``link.crc`` (3GPP TS 38.212 Sec. 5.1 polynomials) and their parity lengths."""


LIFTING_SETS: tuple[tuple[int, ...], ...] = (
    (2, 4, 8, 16, 32, 64, 128, 256),
    (3, 6, 12, 24, 48, 96, 192, 384),
    (5, 10, 20, 40, 80, 160, 320),
    (7, 14, 28, 56, 112, 224),
    (9, 18, 36, 72, 144, 288),
    (11, 22, 44, 88, 176, 352),
    (13, 26, 52, 104, 208),
    (15, 30, 60, 120, 240),
)
"""Lifting sizes Z of TS 38.212 Table 5.3.2-1, one tuple per set index ``i_LS``."""


def _base_graph(k: int, rate: float) -> str:
    """TS 38.212 Sec. 7.2.2 base-graph choice: BG2 for short or low-rate codes, else BG1."""
    return "bg2" if (k <= 292 or (k <= 3824 and rate <= 0.67) or rate <= 0.25) else "bg1"


def ldpc5g_parameters(k: int, n: int) -> dict:
    """The 5G NR LDPC configuration of ``k`` information bits and ``n`` rate-matched bits.

    TS 38.212 Sec. 5.2.2 and 5.3.2, as Sionna's ``LDPC5GEncoder`` applies them (one code block,
    no repetition): base graph 2 if ``k <= 292``, or ``k <= 3824`` and ``R <= 0.67``, or
    ``R <= 0.25``, else base graph 1; ``K_b`` = 22 (BG1) or 10 / 9 / 8 / 6 columns (BG2 by ``k``)
    for the choice of the smallest lifting size ``Z`` with ``K_b Z >= k``; then ``K_b`` = 22 or 10,
    ``N = 68 Z`` or ``52 Z``, the circular buffer ``N_cb = N - 2Z`` and ``k_filler = K_b Z - k``.

    Written in plain Python (not by building Sionna's encoder) so that validating a scenario
    imports neither torch nor Sionna; ``tests/test_phy_config.py`` checks it against Sionna.

    Output: ``{"bg", "z", "i_ls", "k_ldpc", "n_ldpc", "n_cb", "k_filler", "n_cb_comp"}`` (ints;
    ``bg`` is ``"bg1"`` / ``"bg2"``). Assumes ``12 <= k <= 8448`` and ``n > 0``.
    """
    bg = _base_graph(k, k / n)
    if bg == "bg1":
        k_b = 22
    else:
        k_b = 10 if k > 640 else 9 if k > 560 else 8 if k > 192 else 6
    z, i_ls = min((zz, i) for i, zs in enumerate(LIFTING_SETS) for zz in zs if k_b * zz >= k)
    k_ldpc = (22 if bg == "bg1" else 10) * z
    n_ldpc = (68 if bg == "bg1" else 52) * z
    n_cb = n_ldpc - 2 * z
    return {"bg": bg, "z": z, "i_ls": i_ls, "k_ldpc": k_ldpc, "n_ldpc": n_ldpc, "n_cb": n_cb,
            "k_filler": k_ldpc - k, "n_cb_comp": n_cb - (k_ldpc - k)}


@lru_cache(maxsize=4096)
def ldpc5g_problem(k: int, n: int) -> str | None:
    """Why ``(k, n)`` is not a 5G NR LDPC code that simlink can run, or ``None`` if it is.

    The rules of :func:`ldpc5g_parameters` plus the limits of Sionna's encoder (``12 <= k <=
    8448``, ``n <= 316 * 384``, ``1/5 <= k/n <= 0.95``, base graph 1 only for ``k/n >= 1/3``,
    base graph 2 only up to ``k = 3840``) and of this simulator (no repetition: ``n`` at most the
    circular buffer without filler bits). Reasons use Sionna's wording. No torch or Sionna import.
    """
    if k > 8448:
        return "Unsupported code length (k too large)."
    if k < 12:
        return "Unsupported code length (k too small)."
    if n > 316 * 384:
        return "Unsupported code length (n too large)."
    if n <= 0:
        return "Unsupported code length (n must be positive)."
    r = k / n
    if r > 0.95:
        return f"Unsupported coderate (r>0.95) for n={n}, k={k}."
    if r < 1 / 5:
        return "Unsupported coderate (r<1/5)."
    bg = _base_graph(k, r)
    if bg == "bg2" and k > 3840:
        return f"K is not supported by BG2 (too large) k={k}."
    if bg == "bg1" and r < 1 / 3:
        return "Only coderate>1/3 supported for BG1. Remark: Repetition coding is currently not supported."
    buffer = ldpc5g_parameters(k, n)["n_cb_comp"]
    if n > buffer:
        return f"n exceeds the circular buffer ({buffer} bits), repetition is not supported"
    return None


class CodeConfig(BaseModel):
    """``link.code``: the 5G NR LDPC code (3GPP TS 38.212, Sionna's ``LDPC5GEncoder/Decoder``).

    Attributes:
        name: code family; only ``"ldpc5g"``.
        k: information bits per codeword, CRC bits included (5G: 12 <= k <= 8448, base graph 2 only
            up to k = 3840 at rate <= 0.67).
        n: codeword bits after rate matching (code rate ``k / n``, 1/5 <= rate <= 0.95).
        num_iter: maximum number of belief-propagation iterations.
        cn_update: check-node rule of the BP decoder (Sionna's names).
        early_stop: stop BP per codeword once its hard decision satisfies all parity checks
            (see :mod:`simlink.phy.ldpc`); ``False`` always runs ``num_iter`` iterations.
    """

    model_config = ConfigDict(extra="forbid")

    name: Literal["ldpc5g"] = "ldpc5g"
    k: int = Field(1024, ge=1, description="LDPC information bits per codeword (CRC included)")
    n: int = Field(1536, ge=1, description="codeword bits after rate matching")
    num_iter: int = Field(20, ge=1, description="maximum BP iterations")
    cn_update: Literal["boxplus-phi", "boxplus", "minsum", "offset-minsum"] = "boxplus-phi"
    early_stop: bool = True

    @model_validator(mode="after")
    def _valid_5g_code(self) -> CodeConfig:
        if self.k >= self.n:
            raise ValueError(f"link.code.k must be smaller than link.code.n (got k={self.k}, n={self.n})")
        problem = ldpc5g_problem(self.k, self.n)
        if problem is not None:
            raise ValueError(
                f"link.code.k={self.k}, link.code.n={self.n} is not a valid 5G LDPC code: {problem} "
                "(5G NR needs 12 <= k <= 8448 and 1/5 <= k/n <= 0.95; k > 3840 needs k/n > 0.67)"
            )
        return self

    @property
    def rate(self) -> float:
        """Code rate ``k / n`` (CRC bits counted as information)."""
        return self.k / self.n


INHERIT = "inherit"
"""Value of ``link.parts.<part>.crc`` meaning "the link's CRC" (its default; ``null`` is no CRC)."""


class PartCodeConfig(BaseModel):
    """``link.parts.<part>.code``: the keys of :class:`CodeConfig` to change for one part; a key not
    given keeps the link's value (``{k: 512, n: 1536}`` keeps ``num_iter``, ``cn_update`` ...)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["ldpc5g"] | None = None
    k: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    num_iter: int | None = Field(None, ge=1)
    cn_update: Literal["boxplus-phi", "boxplus", "minsum", "offset-minsum"] | None = None
    early_stop: bool | None = None


class PartLinkConfig(BaseModel):
    """``link.parts.<part>``: one payload part's own link settings (unequal error protection).

    Attributes:
        code: code keys to override (see :class:`PartCodeConfig`).
        modulation: the part's QAM order (default: the link's).
        crc: the part's CRC, ``null`` for none; default ``inherit`` (the link's).
    """

    model_config = ConfigDict(extra="forbid")

    code: PartCodeConfig = Field(default_factory=PartCodeConfig)
    modulation: int | None = None
    crc: Literal["24A", "24B", "24C", "16", "11", "6", "inherit"] | None = INHERIT

    def overrides(self) -> dict:
        """The link keys this entry sets: ``{"code": {...}, "modulation": M, "crc": ...}`` (only those given)."""
        out: dict = {}
        code = self.code.model_dump(exclude_none=True)
        if code:
            out["code"] = code
        if self.modulation is not None:
            out["modulation"] = self.modulation
        if self.crc != INHERIT:
            out["crc"] = self.crc
        return out


PART_NAME = r"^[a-z][a-z0-9_]*$"
"""Payload part names: lower-case identifiers (they become column suffixes, ``bler_<part>``)."""

DEFAULT_PART = "stream"
"""Name of the one part of a payload that does not name its parts (it uses ``link``'s settings)."""

RESERVED_PART_NAMES = frozenset({"ci", "clean"})
"""Names a part may not have: ``bler_ci``, ``lost_frac_ci`` ... are columns of their own."""


def part_name_problem(name) -> str | None:
    """Why ``name`` cannot name a payload part, or ``None`` if it can."""
    import re

    if not isinstance(name, str) or not re.fullmatch(PART_NAME, name):
        return f"{name!r} is not a valid part name (lower-case letters, digits and _, starting with a letter)"
    if name in RESERVED_PART_NAMES:
        return f"{name!r} is reserved (table columns end in _{name}); choose another part name"
    return None


class LinkConfig(BaseModel):
    """``link``: the bit-true digital link (code-block segmentation + CRC + LDPC + QAM).

    Attributes:
        code: the LDPC code, see :class:`CodeConfig`.
        modulation: QAM order ``M``, one of 4, 16, 64, 256 (``log2(M)`` bits per complex symbol).
        crc: CRC attached to every code block (Sionna ``CRC24A`` ... ``CRC6``), or ``null`` for none.
            Without a CRC the receiver cannot detect block errors itself; simlink then marks a block
            ok by comparing with the sent bits (a genie check, see :class:`simlink.phy.link.RxResult`).
        max_codewords_per_batch: at most this many codewords are demapped and decoded at once
            (a speed / device-memory knob; results do not depend on it). ``None`` (default):
            128 on CPU, 16384 on a GPU.
        decoder: the BP decoder implementation: ``sionna`` (Sionna's ``LDPC5GDecoder``, the
            reference, any device), ``numba`` (simlink's compiled CPU decoder on Sionna's graph,
            :mod:`simlink.phy.ldpc_numba`; ``cn_update: boxplus-phi`` only) or ``auto`` (default:
            ``numba`` on a CPU device when the code's ``cn_update`` is ``boxplus-phi``, else
            ``sionna``); see :meth:`resolved_decoder`.
    """

    model_config = ConfigDict(extra="forbid")

    code: CodeConfig = Field(default_factory=CodeConfig)  # a factory: no Sionna check at import
    modulation: int = 16
    crc: Literal["24A", "24B", "24C", "16", "11", "6"] | None = "24A"
    max_codewords_per_batch: int | None = Field(
        None, ge=1, description="codewords per device batch; None = 128 on CPU, 16384 on a GPU"
    )
    parts: dict[str, PartLinkConfig] = Field(
        default_factory=dict, description="per payload part: its own code, modulation and CRC")
    decoder: Literal["auto", "sionna", "numba"] = Field(
        "auto", description="BP decoder: sionna (reference), numba (compiled CPU), auto (numba on CPU)")

    @model_validator(mode="after")
    def _decoder_supports_the_code(self) -> "LinkConfig":
        if self.decoder == "numba":
            rules = {self.code.cn_update} | {p.code.cn_update for p in self.parts.values()
                                             if p.code is not None and p.code.cn_update is not None}
            if rules != {"boxplus-phi"}:
                raise ValueError(f"link.decoder: numba implements cn_update boxplus-phi only, the link uses "
                                 f"{sorted(rules)}; use decoder: sionna (or auto) for the others")
        return self

    def resolved_decoder(self, device: str) -> str:
        """``"sionna"`` or ``"numba"``: what :attr:`decoder` means on torch device ``device``."""
        if self.decoder != "auto":
            return self.decoder
        if not str(device).startswith("cpu") or self.code.cn_update != "boxplus-phi":
            return "sionna"
        import importlib.util

        return "numba" if importlib.util.find_spec("numba") is not None else "sionna"

    def decoders_used(self, device: str) -> tuple[str, ...]:
        """The resolved decoders of the link and of each of its parts (sorted, unique)."""
        links = [self] + [self.for_part(name) for name in self.parts]
        return tuple(sorted({link.resolved_decoder(device) for link in links}))

    def for_part(self, part: str) -> "LinkConfig":
        """The link settings of payload part ``part``: ``parts[part]``'s keys over this link's
        (``self`` itself for a part not named in ``parts``). The result has no ``parts``."""
        entry = self.parts.get(part)
        if entry is None:
            return self if not self.parts else self.model_copy(update={"parts": {}})
        return _resolve_part(self, part, entry)

    @property
    def transmitter_key(self) -> tuple:
        """What a transmitted frame depends on: ``(k, n, modulation, crc)``."""
        return (self.code.k, self.code.n, self.modulation, self.crc)

    def batch_codewords(self, device: str) -> int:
        """Codewords per decoding batch on ``device``: the configured value, else a default that
        suits it (on CPU, small batches are fastest: measured 0.23 Mbit/s at 128 vs 0.20 at 512 and 1024)."""
        if self.max_codewords_per_batch is not None:
            return self.max_codewords_per_batch
        return 128 if str(device).startswith("cpu") else 16384

    @field_validator("modulation", mode="after")
    @classmethod
    def _qam_order(cls, v: int) -> int:
        if v not in QAM_ORDERS:
            raise ValueError(f"{v} is not one of {', '.join(str(q) for q in QAM_ORDERS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LinkConfig:
        m = self.bits_per_symbol
        if self.code.n % m:
            raise ValueError(
                f"link.code.n={self.code.n} is not divisible by log2(link.modulation)={m} "
                f"(bits per {self.modulation}-QAM symbol)"
            )
        if self.code.k <= self.crc_length:
            raise ValueError(
                f"link.code.k={self.code.k} must be larger than the CRC length {self.crc_length} (link.crc={self.crc})"
            )
        return self

    @model_validator(mode="after")
    def _valid_parts(self) -> LinkConfig:
        problems = []
        for name, entry in self.parts.items():
            problem = part_name_problem(name)
            if name == DEFAULT_PART:
                problem = (f"{name!r} is the one part of a payload without named parts; "
                           "its settings are link's own (code, modulation, crc)")
            if problem:
                problems.append((f"parts.{name}", problem))
                continue
            try:
                _resolve_part(self, name, entry)
            except ValidationError as e:
                from simlink.schema import error_lines

                for path, text in error_lines(e):
                    problems.append((f"parts.{name}.{path}".rstrip("."), text.replace("link.", f"link.parts.{name}.")))
        if problems:
            from simlink.schema import NestedError

            raise NestedError(problems)
        return self

    @property
    def bits_per_symbol(self) -> int:
        """``log2(modulation)``: coded bits per complex channel use."""
        return int(math.log2(self.modulation))

    @property
    def crc_length(self) -> int:
        """CRC parity bits per code block (0 without CRC)."""
        return CRC_LENGTHS[self.crc] if self.crc is not None else 0

    @property
    def payload_bits_per_block(self) -> int:
        """Source payload bits per code block: ``k - crc_length``."""
        return self.code.k - self.crc_length

    @property
    def symbols_per_codeword(self) -> int:
        """Complex channel uses per codeword: ``n / log2(modulation)``."""
        return self.code.n // self.bits_per_symbol


def _resolve_part(link: LinkConfig, name: str, entry: PartLinkConfig) -> LinkConfig:
    """``link`` with ``entry``'s overrides applied (validated as a whole link; no ``parts``)."""
    over = entry.overrides()
    data = link.model_dump(exclude={"parts"})
    data["code"] = {**data["code"], **over.pop("code", {})}
    data.update(over)
    return LinkConfig.model_validate(data)
