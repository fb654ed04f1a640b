"""Throughput of simlink's digital link vs a bare Sionna chain (same code, QAM, iterations, batch).

Measured in one run, information bits per second through encode -> channel -> decode:

* **bare Sionna**: ``BinarySource -> LDPC5GEncoder -> Mapper -> AWGN -> Demapper(app) -> LDPC5GDecoder``
  on ``num_cw`` codewords of ``k`` random bits;
* **simlink**: ``DigitalLink.prepare`` (bytes -> segmentation -> CRC -> LDPC -> QAM) +
  ``DigitalLink.transmit`` (AWGN -> ZF/demapper -> BP -> CRC check -> bytes, bit-error count) on
  random byte streams filling the same number of codewords, ``early_stop=False`` (like for like);
* **simlink, early stop**: the same with ``early_stop=True``.

All passes run at the same high Es/N0 (BLER 0): without early stopping the work does not depend
on the SNR; with it, this is the regime where early stopping pays off most.

Each configuration gets one warm-up run, then the median of ``repeats`` timed runs; the
configurations are interleaved within each repeat so that load changes hit them alike.
``ratio`` = simlink payload bits/s / bare information bits/s (CRC bits count as overhead for
simlink); ``ratio_codewords`` compares codewords/s (LDPC information bits, CRC included).

Usage: ``python benchmarks/bench_link.py [--full] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simlink.phy import AWGNChannel, CodeConfig, DigitalLink, LinkConfig  # noqa: E402
from simlink.phy.link import sionna_seed, torch_device  # noqa: E402
from simlink.phy.snr import esno_db_to_no  # noqa: E402

K, N, MODULATION, NUM_ITER = 1024, 1536, 16, 20
ESNO_DB = 14.0  # Es/N0 of all passes: well past the waterfall of the rate-2/3 16-QAM code (BLER 0)


class BareSionnaChain:
    """BinarySource -> LDPC5GEncoder -> Mapper -> AWGN -> Demapper -> LDPC5GDecoder, nothing else."""

    def __init__(self, device: str):
        from sionna.phy.channel import AWGN
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import BinarySource, Demapper, Mapper

        m = int(np.log2(MODULATION))
        self.source = BinarySource(device=device)
        self.encoder = LDPC5GEncoder(K, N, num_bits_per_symbol=m, device=device)
        self.mapper = Mapper("qam", m, device=device)
        self.channel = AWGN(device=device)
        self.demapper = Demapper("app", "qam", m, device=device)
        self.decoder = LDPC5GDecoder(self.encoder, num_iter=NUM_ITER, hard_out=True, device=device)
        self.device = device

    def __call__(self, num_cw: int, esno_db: float) -> float:
        """One pass; returns the block error rate."""
        no = torch.tensor(esno_db_to_no(esno_db), device=self.device)
        bits = self.source([num_cw, K])
        llr = self.demapper(self.channel(self.mapper(self.encoder(bits)), no), no)
        bits_hat = self.decoder(llr)
        return float((bits_hat != bits).any(dim=1).float().mean())


def _streams(num_cw: int, payload_bits: int, seed: int) -> list[bytes]:
    """Random byte streams that fill exactly ``num_cw`` code blocks (16 images)."""
    rng = np.random.default_rng(seed)
    images = 16 if num_cw % 16 == 0 else 1
    per_image_bytes = (num_cw // images) * payload_bits // 8
    return [rng.bytes(per_image_bytes) for _ in range(images)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn, device: str) -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def run(quick: bool = True, device: str | None = None, threads: int | None = None) -> dict:
    """Run the benchmark and return its numbers.

    Inputs: ``quick`` (192 codewords, 3 repeats, < ~60 s on 2 idle CPU cores; else 1024
    codewords, 5 repeats); ``device`` (torch device string, default CUDA if available else CPU);
    ``threads`` (torch intra-op threads; default: leave torch's setting).
    Output: dict with throughputs in Mbit/s (``bare_mbps``, ``simlink_mbps`` payload bits,
    ``simlink_codeword_mbps`` LDPC information bits, ``simlink_early_stop_mbps``), ``ratio``,
    ``ratio_codewords``, ``early_stop_speedup`` (time without / with early stop), mean BP
    iterations, BLERs, median and all times in s, and the setup.
    """
    device = torch_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(threads)
    num_cw = 192 if quick else 1024
    repeats = 3 if quick else 5
    base = LinkConfig(code=CodeConfig(k=K, n=N, num_iter=NUM_ITER), modulation=MODULATION, crc="24A",
                      max_codewords_per_batch=max(4096, num_cw), decoder="sionna")  # like for like
    cfg_full = base.model_copy(update={"code": base.code.model_copy(update={"early_stop": False})})
    cfg_early = base.model_copy(update={"code": base.code.model_copy(update={"early_stop": True})})
    bare = BareSionnaChain(device)
    link_full, link_early = DigitalLink(cfg_full, device), DigitalLink(cfg_early, device)
    streams = _streams(num_cw, base.payload_bits_per_block, seed=1)

    def simlink_pass(link: DigitalLink, esno_db: float, seed: int):
        return link.transmit(link.prepare(streams), AWGNChannel(), esno_db, seed)

    def bare_pass(seed: int):
        with sionna_seed(seed):
            return bare(num_cw, ESNO_DB)

    cases = {
        "bare": lambda r: bare_pass(r),
        "simlink": lambda r: simlink_pass(link_full, ESNO_DB, r),
        "simlink_early": lambda r: simlink_pass(link_early, ESNO_DB, r),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    last: dict[str, object] = {}
    for name, fn in cases.items():  # warm-up
        fn(0)
    for r in range(1, repeats + 1):
        for name, fn in cases.items():
            dt, last[name] = _timed(lambda: fn(r), device)
            times[name].append(dt)
    med = {name: statistics.median(v) for name, v in times.items()}

    info_bits = num_cw * K
    payload_bits = num_cw * base.payload_bits_per_block
    rx_full, rx_early = last["simlink"], last["simlink_early"]
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "k": K, "n": N, "modulation": MODULATION, "num_iter": NUM_ITER, "crc": base.crc,
        "num_codewords": num_cw, "repeats": repeats, "esno_db": ESNO_DB,
        "bare_mbps": info_bits / med["bare"] / 1e6,
        "simlink_mbps": payload_bits / med["simlink"] / 1e6,
        "simlink_codeword_mbps": info_bits / med["simlink"] / 1e6,
        "ratio": (payload_bits / med["simlink"]) / (info_bits / med["bare"]),
        "ratio_codewords": med["bare"] / med["simlink"],
        "simlink_early_stop_mbps": payload_bits / med["simlink_early"] / 1e6,
        "early_stop_speedup": med["simlink"] / med["simlink_early"],
        "mean_iterations_early_stop": float(np.mean(rx_early.bp_iterations)),
        "bler_bare": float(last["bare"]),
        "bler_simlink": rx_full.num_block_errors / rx_full.num_blocks,
        "bler_simlink_early_stop": rx_early.num_block_errors / rx_early.num_blocks,
        "median_s": med,
        "times_s": times,
    }


def print_table(res: dict) -> None:
    """Human-readable summary of :func:`run`'s result."""
    print(
        f"LDPC5G k={res['k']} n={res['n']}, {res['modulation']}-QAM, {res['num_iter']} BP iterations, "
        f"CRC{res['crc']}, {res['num_codewords']} codewords per pass, device {res['device']} "
        f"({res['torch_threads']} torch threads), median of {res['repeats']}"
    )
    rows = [
        ("bare Sionna chain", res["median_s"]["bare"], res["bare_mbps"], res["bler_bare"], res["num_iter"]),
        ("simlink, early_stop=False", res["median_s"]["simlink"], res["simlink_mbps"], res["bler_simlink"],
         res["num_iter"]),
        ("simlink, early_stop=True", res["median_s"]["simlink_early"], res["simlink_early_stop_mbps"],
         res["bler_simlink_early_stop"], res["mean_iterations_early_stop"]),
    ]
    print(f"{'chain':<28}{'time s':>9}{'Mbit/s':>9}{'BLER':>8}{'iters':>7}   (Es/N0 {res['esno_db']:g} dB)")
    for name, t, mbps, bler, it in rows:
        print(f"{name:<28}{t:>9.3f}{mbps:>9.4f}{bler:>8.3f}{it:>7.2f}")
    print("(Mbit/s: information bits for the bare chain; source payload bits for simlink, CRC excluded)")
    print(f"ratio simlink/bare: {res['ratio']:.3f} (payload bits/s), {res['ratio_codewords']:.3f} (codewords/s)")
    print(f"early-stop speed-up: {res['early_stop_speedup']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1024 codewords, 5 repeats (default: quick)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    res = run(quick=not args.full, device=args.device, threads=args.threads)
    print_table(res)
    return 0 if res["ratio"] >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
