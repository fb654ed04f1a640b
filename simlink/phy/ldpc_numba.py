"""A fast CPU belief-propagation decoder for simlink's 5G LDPC codes (numba + numpy SIMD).

Sionna's :class:`~sionna.phy.fec.ldpc.LDPC5GDecoder` is the reference. This decoder runs the same
algorithm on the same graph, laid out for the CPU:

* **Graph.** The parity-check matrix Sionna's decoder builds (``decoder.pcm``: the 5G base graph
  lifted by ``Z``, with Sionna's pruning of degree-1 punctured parity bits and their checks),
  read back as its quasi-cyclic structure (:func:`qc_structure`): one *base edge* per non-zero
  ``Z x Z`` block, a circulant with shift ``s`` (row ``r`` of the block meets column
  ``(r + s) mod Z``), and a 0/1 mask of the rows of each block that exist in Sionna's
  (truncated) matrix. Messages are ``float32[B, base edges, Z]``: every update is a loop over
  ``Z`` contiguous values, which the compiler vectorises.
* **Rate recovery** exactly as Sionna's ``call``: the output interleaver is undone
  (``out_int_inv``), the received LLRs are placed after the ``2Z`` punctured systematic bits
  (LLR 0), the ``k_filler`` shortened bits get the known value (``llr_max``), the rest of the
  circular buffer is 0 (punctured); channel LLRs are clipped to ``±llr_max`` and turned into
  the decoder's internal ``log p(0)/p(1)``.
* **Flooding schedule, sum-product rule** (Sionna's ``boxplus-phi``), float32: with
  ``phi(x) = log((e^x + 1) / (e^x - 1))`` on ``x`` clamped to ``[8.5e-8, 16.635532]`` (Sionna's
  float32 clamp), a check node sends ``sign * phi(sum_{i'≠i} phi(|x_i'|))``, clipped to
  ``±llr_max``; a variable node sends ``clip(L + sum_{j'≠j} y_j')`` (messages summed first, then
  the channel LLR, as Sionna) and decides ``bit = 1`` iff ``clip(L + sum_j y_j) <= 0``. ``phi``
  is evaluated by numpy's SIMD ``exp`` / ``log1p`` as ``log1p(2 / (e^x - 1))`` over the whole
  batch at once (the transcendental functions are 90 % of the work; numba's are scalar); the
  sums, signs, clipping and the variable-node update are numba loops over the batch (threads).
* **Early termination** as :class:`simlink.phy.ldpc.BPDecoder` (on top of Sionna): after each
  iteration the hard decision is tested against every parity check and the filler bits; the
  first valid iteration ends that codeword (its decision is kept) and it leaves the batch.
  Without early stop, exactly ``num_iter`` iterations.

Floating-point sums and ``phi`` round differently from Sionna's tensor code, so messages agree
to rounding only; the hard decisions and iteration counts agree on virtually every codeword (a
test compares them over the waterfall). Written by hand because the decoder must run on exactly
Sionna's graph, rate recovery and clipping to be comparable with it, which no pip-installable
LDPC package offers; numba is the compiler.
"""

from __future__ import annotations

import numpy as np

from simlink.numba_setup import import_numba, numba_error

numba = import_numba()  # a dependency; None (a clear error on use) when the install is broken


#: Sionna's float32 clamp of the phi function's argument.
PHI_MIN = np.float32(8.5e-8)
PHI_MAX = np.float32(16.635532)
#: Codewords decoded together (the numpy passes' working set stays in the caches).
CHUNK = 128


def available() -> bool:
    """Whether numba imported (the decoder can be built)."""
    return numba is not None


def qc_structure(pcm, z: int) -> dict:
    """The quasi-cyclic structure of a lifted (possibly truncated) parity-check matrix.

    Input: ``pcm`` scipy sparse or dense 0/1 ``[num_cns, num_vns]``, lifting size ``z``.
    Output: ``{"z", "nbr", "nbc"`` (block rows / columns, the last ones possibly partial),
    ``"row", "col", "shift"`` (``int64[E]`` per base edge, sorted by block row then column),
    ``"valid"`` (``float32[E, z]``: 1 where row ``r`` of the block is an edge of ``pcm``),
    ``"row_ptr"`` (``int64[nbr + 1]``, base edges of each block row), ``"col_ptr"``,
    ``"col_edges"`` (base edges of each block column, in block-row order)}.

    Raises:
        ValueError: a non-zero block is not a (truncated) circulant permutation.
    """
    import scipy.sparse as sp

    h = sp.coo_matrix(pcm)
    m, n = h.shape
    rows, cols = h.row.astype(np.int64), h.col.astype(np.int64)
    nbr, nbc = -(-m // z), -(-n // z)
    block = (rows // z) * nbc + cols // z
    shift = (cols % z - rows % z) % z
    keys, first = np.unique(block, return_index=True)
    shifts = shift[first]
    if not np.array_equal(shifts[np.searchsorted(keys, block)], shift):
        raise ValueError("the parity-check matrix is not quasi-cyclic with lifting size %d" % z)
    row, col = keys // nbc, keys % nbc
    e_of = np.searchsorted(keys, block)
    valid = np.zeros((len(keys), z), dtype=np.float32)
    valid[e_of, rows % z] = 1.0
    if valid.sum() != h.nnz or np.unique(rows * n + cols).size != h.nnz:
        raise ValueError("the parity-check matrix has repeated entries")
    order = np.argsort(col, kind="stable")
    return {"z": z, "nbr": nbr, "nbc": nbc, "row": row, "col": col, "shift": shifts.astype(np.int64), "valid": valid,
            "row_ptr": np.searchsorted(row, np.arange(nbr + 1)).astype(np.int64),
            "col_ptr": np.searchsorted(col[order], np.arange(nbc + 1)).astype(np.int64),
            "col_edges": order.astype(np.int64)}


def phi(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = log1p(2 / (e^c - 1))``, ``c = clamp(x, PHI_MIN, PHI_MAX)``, float32 (= Sionna's
    ``log(e^c + 1) - log(e^c - 1)`` up to rounding); numpy's SIMD loops, in place in ``out``."""
    np.clip(x, PHI_MIN, PHI_MAX, out=out)
    np.exp(out, out=out)
    np.subtract(out, np.float32(1.0), out=out)
    np.divide(np.float32(2.0), out, out=out)
    return np.log1p(out, out=out)


def _init_py(llr, col, shift, v2c):
    """``v2c[b, e, r] = llr[b, col[e] * z + (r + shift[e]) % z]``: the first variable-to-check
    messages are the channel LLRs."""
    batch, num_edges, z = v2c.shape
    for b in numba.prange(batch):
        for e in range(num_edges):
            c0, s = col[e] * z, shift[e]
            for r in range(z - s):
                v2c[b, e, r] = llr[b, c0 + r + s]
            for r in range(z - s, z):
                v2c[b, e, r] = llr[b, c0 + r + s - z]


def _check_nodes_py(v2c, ph, valid, row_ptr, x, sign):
    """Given ``ph = phi(|v2c|)``: ``x`` = the block row's sum of valid ``ph`` minus the edge's own
    (the argument of the outgoing ``phi``) and ``sign`` = ±1, the product of the other valid
    edges' signs (``sign(0) = +1``, as Sionna). Products of ±1 are exact, so the row's product
    times the edge's own sign is the product of the others (branch- and call-free: vectorised)."""
    batch, _, z = v2c.shape
    one, two = np.float32(1.0), np.float32(2.0)
    for b in numba.prange(batch):
        total = np.empty(z, dtype=np.float32)
        product = np.empty(z, dtype=np.float32)
        for br in range(row_ptr.shape[0] - 1):
            total[:] = 0.0
            product[:] = 1.0
            for e in range(row_ptr[br], row_ptr[br + 1]):
                for r in range(z):
                    own = one - two * np.float32(v2c[b, e, r] < 0.0) * valid[e, r]  # the edge's sign
                    sign[b, e, r] = own
                    total[r] += ph[b, e, r] * valid[e, r]
                    product[r] *= own
            for e in range(row_ptr[br], row_ptr[br + 1]):
                for r in range(z):
                    x[b, e, r] = total[r] - ph[b, e, r] * valid[e, r]
                    sign[b, e, r] *= product[r]  # = the product of the others (signs are ±1)


def _variable_nodes_py(y, sign, valid, mask, llr, col, shift, row_ptr, col_ptr, col_edges, llr_max, check,
                       filler_lo, filler_hi, c2v, v2c, hard, ok):
    """Given ``y = phi(x)``: the check-to-variable messages ``c2v = clip(sign * y)``, then per
    variable node the total ``L + sum c2v``, the extrinsic ``v2c``, the hard decision ``hard``;
    with ``check``, ``ok[b]`` = codeword ``b``'s decision satisfies every check, fillers 0
    (``mask`` is ``valid`` as uint8)."""
    batch, num_edges, z = y.shape
    for b in numba.prange(batch):
        for e in range(num_edges):
            for r in range(z):
                c2v[b, e, r] = min(max(sign[b, e, r] * y[b, e, r], -llr_max), llr_max) * valid[e, r]
        total = np.empty(z, dtype=np.float32)
        for bc in range(col_ptr.shape[0] - 1):
            c0 = bc * z
            total[:] = 0.0
            for i in range(col_ptr[bc], col_ptr[bc + 1]):  # variable node t hears row (t - s) mod z
                e = col_edges[i]
                s = shift[e]
                for t in range(s):
                    total[t] += c2v[b, e, t - s + z]
                for t in range(s, z):
                    total[t] += c2v[b, e, t - s]
            for t in range(z):
                total[t] += llr[b, c0 + t]
            for i in range(col_ptr[bc], col_ptr[bc + 1]):
                e = col_edges[i]
                s = shift[e]
                for r in range(z - s):
                    v2c[b, e, r] = min(max(total[r + s] - c2v[b, e, r], -llr_max), llr_max)
                for r in range(z - s, z):
                    v2c[b, e, r] = min(max(total[r + s - z] - c2v[b, e, r], -llr_max), llr_max)
            for t in range(z):
                hard[b, c0 + t] = np.uint8(min(max(total[t], -llr_max), llr_max) <= 0.0)
        if not check:
            continue
        bad = np.uint8(0)
        for v in range(filler_lo, filler_hi):
            bad |= hard[b, v]
        parity = np.empty(z, dtype=np.uint8)
        for br in range(row_ptr.shape[0] - 1):
            if bad:
                break
            parity[:] = 0
            for e in range(row_ptr[br], row_ptr[br + 1]):
                c0, s = col[e] * z, shift[e]
                for r in range(z - s):
                    parity[r] ^= hard[b, c0 + r + s] & mask[e, r]
                for r in range(z - s, z):
                    parity[r] ^= hard[b, c0 + r + s - z] & mask[e, r]
            for r in range(z):
                bad |= parity[r]
        ok[b] = bad == 0


if numba is not None:
    _jit = numba.njit(parallel=True, cache=True, nogil=True)
    _init, _check_nodes, _variable_nodes = _jit(_init_py), _jit(_check_nodes_py), _jit(_variable_nodes_py)


class NumbaBPDecoder:
    """5G LDPC BP decoder (flooding, sum-product) for the CPU, on Sionna's graph (module doc).

    Args:
        encoder: the Sionna ``LDPC5GEncoder`` the codewords were made with.
        num_iter: maximum BP iterations.
        early_stop: stop each codeword at its first valid estimate (as
            :class:`simlink.phy.ldpc.BPDecoder`); ``False`` runs ``num_iter`` iterations.
        llr_max: LLR clipping (Sionna's default 20).

    Call: ``llr float32[B, n]`` channel logits ``log p(1)/p(0)`` (torch tensor or numpy array,
    Sionna convention) → ``(bits float32[B, k] hard decisions 0/1, iterations int32[B])`` as torch
    tensors on the input's device. Not re-entrant per instance only in the sense that numba's
    thread pool is shared; buffers are per call.
    """

    cn_update = "boxplus-phi"

    def __init__(self, encoder, num_iter: int, early_stop: bool = True, llr_max: float = 20.0) -> None:
        if numba is None:
            raise RuntimeError(f"the numba LDPC decoder needs numba, which failed to import ({numba_error()}); "
                               "use link.decoder: sionna")
        from sionna.phy.fec.ldpc import LDPC5GDecoder

        ref = LDPC5GDecoder(encoder, hard_out=True, return_infobits=True, num_iter=1, llr_max=llr_max)
        self.encoder = encoder
        self.num_iter = int(num_iter)
        self.early_stop = bool(early_stop)
        self.llr_max = np.float32(llr_max)
        self.k = int(encoder.k)
        self.n = int(encoder.n)
        self.z = int(encoder.z)
        self.k_filler = int(encoder.k_ldpc) - self.k
        self.num_cns, self.num_vns = ref.pcm.shape
        if int(ref._n_pruned) != self.num_vns:
            raise RuntimeError(f"internal: Sionna's pruned graph has {self.num_vns} VNs, expected {ref._n_pruned}")
        self.graph = qc_structure(ref.pcm, self.z)
        self.graph["mask"] = self.graph["valid"].astype(np.uint8)
        inv = getattr(encoder, "out_int_inv", None)
        self.out_int_inv = None if encoder.num_bits_per_symbol is None else np.asarray(
            inv.cpu() if hasattr(inv, "cpu") else inv, dtype=np.int64)

    def internal_llrs(self, llr: np.ndarray) -> np.ndarray:
        """``float32[B, nbc * Z]`` decoder-internal LLRs ``log p0/p1`` of the whole (pruned)
        codeword, zero-padded to whole blocks, from channel logits ``float32[B, n]`` (Sionna's
        rate recovery, module doc)."""
        llr = np.asarray(llr, dtype=np.float32)
        if llr.ndim != 2 or llr.shape[1] != self.n:
            raise ValueError(f"llr must be [B, {self.n}], got {llr.shape}")
        if self.out_int_inv is not None:
            llr = llr[:, self.out_int_inv]
        n_sys = self.k - 2 * self.z
        full = np.zeros((llr.shape[0], self.graph["nbc"] * self.z), dtype=np.float32)
        full[:, 2 * self.z:2 * self.z + n_sys] = llr[:, :n_sys]
        full[:, self.k:self.k + self.k_filler] = -self.llr_max
        rest = min(self.n - n_sys, self.num_vns - (self.k + self.k_filler))
        full[:, self.k + self.k_filler:self.k + self.k_filler + rest] = llr[:, n_sys:n_sys + rest]
        np.clip(full, -self.llr_max, self.llr_max, out=full)
        return np.negative(full, out=full)

    def decode_numpy(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``__call__`` on numpy: ``(uint8[B, k] bits, int32[B] iterations)``."""
        internal = self.internal_llrs(llr)
        bits = np.zeros((internal.shape[0], self.k), dtype=np.uint8)
        iters = np.full(internal.shape[0], self.num_iter, dtype=np.int32)
        for a in range(0, internal.shape[0], CHUNK):
            bits[a:a + CHUNK], iters[a:a + CHUNK] = self._decode_chunk(internal[a:a + CHUNK])
        return bits, iters

    def _decode_chunk(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, k = self.graph, self.k
        batch, z = llr.shape[0], self.z
        shape = (batch, len(g["col"]), z)
        v2c, c2v, ph, x, sign = (np.empty(shape, dtype=np.float32) for _ in range(5))
        hard = np.zeros((batch, g["nbc"] * z), dtype=np.uint8)
        ok = np.zeros(batch, dtype=np.bool_)
        bits = np.zeros((batch, k), dtype=np.uint8)
        iters = np.full(batch, self.num_iter, dtype=np.int32)
        llr = llr.copy()
        _init(llr, g["col"], g["shift"], v2c)
        active = np.arange(batch)
        for it in range(self.num_iter):
            n = active.size
            phi(np.abs(v2c[:n], out=x[:n]), ph[:n])
            _check_nodes(v2c[:n], ph[:n], g["valid"], g["row_ptr"], x[:n], sign[:n])
            phi(x[:n], ph[:n])
            _variable_nodes(ph[:n], sign[:n], g["valid"], g["mask"], llr[:n], g["col"], g["shift"], g["row_ptr"],
                            g["col_ptr"],
                            g["col_edges"], self.llr_max, self.early_stop, k, k + self.k_filler, c2v[:n], v2c[:n],
                            hard[:n], ok[:n])
            if not self.early_stop:
                continue
            done = ok[:n]
            if done.any():  # finished codewords keep this decision and leave the batch
                bits[active[done]] = hard[:n][done, :k]
                iters[active[done]] = it + 1
                keep = ~done
                m = int(keep.sum())
                # the state, and the decisions (the last iteration's are the output of the rest)
                v2c[:m], llr[:m], hard[:m] = v2c[:n][keep], llr[:n][keep], hard[:n][keep]
                active = active[keep]
                if m == 0:
                    return bits, iters
        bits[active] = hard[:active.size, :k]
        return bits, iters

    def __call__(self, llr):
        import torch

        device = llr.device if isinstance(llr, torch.Tensor) else "cpu"
        arr = llr.detach().cpu().numpy() if isinstance(llr, torch.Tensor) else np.asarray(llr)
        bits, iters = self.decode_numpy(arr)
        return torch.from_numpy(bits.astype(np.float32)).to(device), torch.from_numpy(iters).to(device)
