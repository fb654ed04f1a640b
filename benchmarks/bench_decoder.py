"""Throughput of simlink's numba LDPC decoder vs Sionna's, on the same LLRs (issue 13).

Both decoders get the same channel LLRs (16-QAM, AWGN, Sionna's APP demapper) of ``num_cw``
codewords of the quickstart's code (k = 1024, n = 1536, 20 iterations), in batches of the CPU
batch size (128 codewords), both with early termination (Sionna's: simlink's
:class:`~simlink.phy.ldpc.BPDecoder` on top of ``LDPC5GDecoder``, which alone gives ~3.5x at
high SNR; numba's: its own per-codeword stop). Three Es/N0 points: below the waterfall (every
codeword runs all iterations), in it, and above it (most stop after a few iterations).

Each decoder gets one warm-up call (numba compiles once, then caches), then the median of
``repeats`` timed passes, the two interleaved within each repeat so that load changes hit them
alike. ``ratio`` = numba info bits/s / Sionna info bits/s at each point; ``agree`` = fraction of
codewords whose hard decisions are identical.

Usage: ``python benchmarks/bench_decoder.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K, N, BITS, NUM_ITER, BATCH = 1024, 1536, 4, 20, 128
ESNO_DB = {"below": 8.0, "waterfall": 9.3, "above": 11.0}


def _llrs(enc, num_cw: int, esno_db: float, seed: int) -> torch.Tensor:
    from sionna.phy.mapping import Demapper, Mapper

    g = torch.Generator().manual_seed(seed)
    x = Mapper("qam", BITS)(enc(torch.randint(0, 2, (num_cw, K), generator=g).float()))
    no = 10 ** (-esno_db / 10)
    noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)) * np.sqrt(no / 2)
    return Demapper("app", "qam", BITS)(x + noise, torch.tensor(no))


def _decode_all(decoder, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bits, iters = zip(*(decoder(llr[a:a + BATCH]) for a in range(0, llr.shape[0], BATCH)))
    return torch.cat(bits), torch.cat(iters)


def run(quick: bool = False, repeats: int | None = None) -> dict:
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    from simlink.phy.ldpc import BPDecoder
    from simlink.phy.ldpc_numba import NumbaBPDecoder

    num_cw = 256 if quick else 768
    repeats = repeats or (2 if quick else 3)
    enc = LDPC5GEncoder(K, N, num_bits_per_symbol=BITS)
    decoders = {"sionna": BPDecoder(enc, NUM_ITER, early_stop=True), "numba": NumbaBPDecoder(enc, NUM_ITER)}
    out: dict = {"setup": {"k": K, "n": N, "qam": 2**BITS, "num_iter": NUM_ITER, "batch": BATCH, "codewords": num_cw,
                           "torch_threads": torch.get_num_threads(), "repeats": repeats}}
    for name, snr in ESNO_DB.items():
        llr = _llrs(enc, num_cw, snr, seed=7)
        results = {d: _decode_all(dec, llr[:BATCH]) for d, dec in decoders.items()}  # warm-up (compiles numba)
        times: dict[str, list[float]] = {d: [] for d in decoders}
        for _ in range(repeats):
            for d, dec in decoders.items():
                t0 = time.perf_counter()
                results[d] = _decode_all(dec, llr)
                times[d].append(time.perf_counter() - t0)
        med = {d: statistics.median(t) for d, t in times.items()}
        (b_s, i_s), (b_n, i_n) = results["sionna"], results["numba"]
        out[name] = {
            "esno_db": snr, "sionna_mbit_s": round(num_cw * K / med["sionna"] / 1e6, 4),
            "numba_mbit_s": round(num_cw * K / med["numba"] / 1e6, 4), "ratio": round(med["sionna"] / med["numba"], 2),
            "agree": float((b_s == b_n).all(dim=1).float().mean()), "mean_iterations": float(i_s.float().mean()),
            "iterations_agree": float((i_s == i_n).float().mean()),
            "times_s": times,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=ap.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
