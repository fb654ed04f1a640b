"""Entropy-coding symbol rate of the learned codecs' mixture coder vs constriction's raw rate.

Workload (seeded, learned-codec-like): 1000 images x 3072 latent symbols, 2-component Gaussian
mixtures per symbol (softmax weights of N(0, 1) logits, means N(0, 3), scales log-uniform in
[0.08, 6]), symbols drawn from the mixtures. Measured in one run:

* ``mixture``: simlink's coder as ``encode_streams`` uses it — the distributions of 8 images
  built in one pass (:func:`simlink.entropy.mixture_models`), then one range-coded stream per
  image (:meth:`SymbolWriter.mixture_model`); and the decoder likewise;
* ``raw_gaussian``: constriction alone on the same symbols with ``QuantizedGaussian`` batches
  (one component per symbol: no PMF construction at all) — constriction's raw symbol rate;
* ``raw_categorical``: constriction alone on the rows simlink builds, precomputed (the coding
  share of ``mixture``).

The figure is ``ratio_vs_raw_gaussian`` = raw seconds / mixture seconds (goal >= 1/3), each the
median of ``repeats`` passes, the candidates interleaved within each pass.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def workload(n_images: int, n: int = 3072, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_images, n, k))
    w = np.exp(logits - logits.max(axis=2, keepdims=True))
    w /= w.sum(axis=2, keepdims=True)
    mu = rng.normal(0.0, 3.0, (n_images, n, k))
    s = np.exp(rng.uniform(np.log(0.08), np.log(6.0), (n_images, n, k)))
    comp = (rng.random((n_images, n))[..., None] > np.cumsum(w, axis=2)).sum(axis=2).clip(0, k - 1)
    pick = lambda a: np.take_along_axis(a, comp[..., None], axis=2)[..., 0]  # noqa: E731
    sym = np.round(pick(mu) + np.maximum(pick(s), 0.11) * rng.standard_normal((n_images, n))).astype(np.int32)
    return sym, w, mu, s


def run(n_images: int = 1000, batch: int = 8, repeats: int = 3) -> dict:
    import constriction

    from simlink.entropy import SymbolReader, SymbolWriter, mixture_models
    from simlink.entropy.coder import _ROWS

    sym, w, mu, s = workload(n_images)
    n, k = sym.shape[1], w.shape[2]

    def models(a: int, b: int):
        return mixture_models(w[a:b].reshape(-1, k), mu[a:b].reshape(-1, k), s[a:b].reshape(-1, k),
                              counts=[n] * (b - a))

    def batches():
        return ((a, min(n_images, a + batch)) for a in range(0, n_images, batch))

    def mixture_encode() -> list[bytes]:
        streams = []  # (the models are not kept: 1000 images of rows would be ~0.8 GB of fresh pages)
        for a, b in batches():
            for i, m in zip(range(a, b), models(a, b)):
                wr = SymbolWriter()
                wr.mixture_model(sym[i], m)
                streams.append(wr.to_bytes())
        return streams

    def mixture_decode(streams) -> bool:
        ok = True
        for a, b in batches():
            for i, m in zip(range(a, b), models(a, b)):
                ok &= bool(np.array_equal(SymbolReader(streams[i]).mixture_model(m), sym[i]))
        return ok

    gauss_model = constriction.stream.model.QuantizedGaussian(-1000, 1000)
    mu0, s0 = np.ascontiguousarray(mu[..., 0]), np.ascontiguousarray(np.maximum(s[..., 0], 0.11))

    def raw_gaussian() -> None:
        for i in range(n_images):
            enc = constriction.stream.queue.RangeEncoder()
            enc.encode(sym[i], gauss_model, mu0[i], s0[i])
            enc.get_compressed()

    def raw_categorical() -> float:
        """constriction alone on simlink's rows (built untimed): seconds of the coding calls."""
        spent = 0.0
        for a, b in batches():
            for i, m in zip(range(a, b), models(a, b)):
                off = sym[i].astype(np.int64) - m.lo
                idx = [np.clip(off[ids] + 1, 0, width - 1).astype(np.int32) for width, ids, _ in m.groups]
                t0 = time.perf_counter()
                enc = constriction.stream.queue.RangeEncoder()
                for (_, _, rows), j in zip(m.groups, idx):
                    enc.encode(j, _ROWS, rows)
                enc.get_compressed()
                spent += time.perf_counter() - t0
        return spent

    def timed(fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out

    for m, i in zip(models(0, batch), range(batch)):  # warm-up: table, compiled kernels, numba's threads
        wr = SymbolWriter()
        wr.mixture_model(sym[i], m)
        SymbolReader(wr.to_bytes()).mixture_model(m)
    times: dict[str, list[float]] = {"encode": [], "decode": [], "raw_gaussian": [], "raw_categorical": []}
    ok, streams = True, []
    for _ in range(repeats):  # interleaved, so that load changes hit every candidate alike
        t, streams = timed(mixture_encode)
        times["encode"].append(t)
        t, good = timed(mixture_decode, streams)
        times["decode"].append(t)
        ok &= good
        times["raw_gaussian"].append(timed(raw_gaussian)[0])
        times["raw_categorical"].append(raw_categorical())
    med = {key: statistics.median(v) for key, v in times.items()}
    per = 1000.0 / n_images
    symbols = n_images * n
    return {
        "images": n_images, "symbols_per_image": n, "mixtures": k, "repeats": repeats, "roundtrip_exact": ok,
        "mixture_encode_s_per_1000_images": round(med["encode"] * per, 3),
        "mixture_decode_s_per_1000_images": round(med["decode"] * per, 3),
        "raw_gaussian_s_per_1000_images": round(med["raw_gaussian"] * per, 3),
        "raw_categorical_s_per_1000_images": round(med["raw_categorical"] * per, 3),
        "mixture_msymbols_per_s": round(symbols / med["encode"] / 1e6, 2),
        "raw_gaussian_msymbols_per_s": round(symbols / med["raw_gaussian"] / 1e6, 2),
        "ratio_vs_raw_gaussian": round(med["raw_gaussian"] / med["encode"], 3),
        "ratio_vs_raw_categorical": round(med["raw_categorical"] / med["encode"], 3),
        "bits_per_symbol": round(8 * sum(map(len, streams)) / symbols, 4),
        "goal_ratio": ">= 1/3",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
