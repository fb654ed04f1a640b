"""A fast CPU belief-propagation decoder for simlink's 5G LDPC codes (numba, AVX2).

Sionna's :class:`~sionna.phy.fec.ldpc.LDPC5GDecoder` is the reference. This decoder runs the same
algorithm on the same graph, laid out for the CPU:

* **Graph.** The parity-check matrix Sionna's decoder builds (``decoder.pcm``: the 5G base graph
  lifted by ``Z``, with Sionna's pruning of degree-1 punctured parity bits and their checks),
  read back as its quasi-cyclic structure (:func:`qc_structure`): one *base edge* per non-zero
  ``Z x Z`` block, a circulant with shift ``s`` (row ``r`` of the block meets column
  ``(r + s) mod Z``), and a 0/1 mask of the rows of each block that exist in Sionna's
  (truncated) matrix. A codeword's messages are one ``float32[base edges, Z]`` array (~22 kB for
  the quickstart's code, so it stays in the core's cache for all iterations); every update is a
  loop over ``Z`` contiguous values (a circulant shift splits it in two), which the compiler
  turns into 8-lane SIMD code.
* **Rate recovery** exactly as Sionna's ``call``: the output interleaver is undone
  (``out_int_inv``), the received LLRs are placed after the ``2Z`` punctured systematic bits
  (LLR 0), the ``k_filler`` shortened bits get the known value (``llr_max``), the rest of the
  circular buffer is 0 (punctured); channel LLRs are clipped to ``±llr_max`` and turned into
  the decoder's internal ``log p(0)/p(1)``.
* **Flooding schedule, sum-product rule** (Sionna's ``boxplus-phi``), float32: a check node sends
  ``sign * phi(sum_{i'≠i} phi(|x_i'|))``, clipped to ``±llr_max``, with ``phi`` of
  :mod:`simlink.phy.simd_phi` (Sionna's clamp of the argument; vectorised, within 4e-7 of exact);
  a variable node sends ``clip(L + sum_{j'≠j} y_j')`` (messages summed first, then the channel
  LLR, as Sionna) and decides ``bit = 1`` iff ``clip(L + sum_j y_j) <= 0``.
* **Early termination** as :class:`simlink.phy.ldpc.BPDecoder` (on top of Sionna): after each
  iteration the hard decision is tested against every parity check and the filler bits; the
  first valid iteration ends that codeword (its decision is kept). Without early stop, exactly
  ``num_iter`` iterations. Codewords are independent: numba's threads take them in parallel.

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


def _decode_py(llr, col, shift, valid, mask, row_ptr, col_ptr, col_edges, max_degree, num_iter, early_stop,
               llr_max, k, filler_lo, filler_hi, bits, iters):
    """Decode every codeword of ``llr`` (``float32[B, nbc * z]``, decoder-internal LLRs) into
    ``bits`` (``uint8[B, k]``) and ``iters`` (``int32[B]``); one codeword per thread at a time,
    all its iterations in its own ``float32[E, z]`` message array (it stays in the L1/L2 cache).

    The message array holds the variable-to-check messages after a variable-node pass and the
    check-to-variable messages after a check-node pass (each pass reads an edge's message before
    it writes it). ``mask`` is ``valid`` as uint8."""
    batch = llr.shape[0]
    num_edges, z = valid.shape
    num_vns = llr.shape[1]
    one, two = np.float32(1.0), np.float32(2.0)
    for b in numba.prange(batch):
        msg = np.empty((num_edges, z), dtype=np.float32)
        ph = np.empty((max_degree, z), dtype=np.float32)
        sg = np.empty((max_degree, z), dtype=np.float32)
        total = np.empty(z, dtype=np.float32)
        product = np.empty(z, dtype=np.float32)
        parity = np.empty(z, dtype=np.uint8)
        hard = np.zeros(num_vns, dtype=np.uint8)
        ch = llr[b]
        for e in range(num_edges):  # first variable-to-check messages: the channel LLRs
            c0, s = col[e] * z, shift[e]
            src_hi, src_lo, dst = ch[c0 + s:c0 + z], ch[c0:c0 + s], msg[e]
            for r in range(z - s):
                dst[r] = src_hi[r]
            dst_hi = msg[e, z - s:]
            for r in range(s):
                dst_hi[r] = src_lo[r]
        iters[b] = num_iter
        for it in range(num_iter):
            # check nodes: sign * phi(sum of the other edges' phi(|v2c|)), clipped
            for br in range(row_ptr.shape[0] - 1):
                total[:] = 0.0
                product[:] = 1.0
                for j in range(row_ptr[br + 1] - row_ptr[br]):
                    e = row_ptr[br] + j
                    m_e, v_e, p_j, s_j = msg[e], valid[e], ph[j], sg[j]
                    for r in range(z):
                        a = m_e[r]
                        p = phi(abs(a)) * v_e[r]
                        own = one - two * np.float32(a < 0.0) * v_e[r]  # sign(0) = +1, as Sionna
                        p_j[r] = p
                        s_j[r] = own
                        total[r] += p
                        product[r] *= own
                for j in range(row_ptr[br + 1] - row_ptr[br]):
                    e = row_ptr[br] + j
                    m_e, v_e, p_j, s_j = msg[e], valid[e], ph[j], sg[j]
                    for r in range(z):  # products of +-1 are exact: row product * own = the others'
                        y = s_j[r] * product[r] * phi(total[r] - p_j[r])
                        m_e[r] = min(max(y, -llr_max), llr_max) * v_e[r]
            # variable nodes: L + sum of the c2v messages, extrinsic v2c, hard decisions
            for bc in range(col_ptr.shape[0] - 1):
                c0 = bc * z
                total[:] = 0.0
                for i in range(col_ptr[bc], col_ptr[bc + 1]):  # variable node t hears row (t - s) mod z
                    e = col_edges[i]
                    s = shift[e]
                    head, tail, total_hi = msg[e, z - s:], msg[e, :z - s], total[s:]
                    for t in range(s):
                        total[t] += head[t]
                    for t in range(z - s):
                        total_hi[t] += tail[t]
                ch_c = ch[c0:c0 + z]
                for t in range(z):
                    total[t] += ch_c[t]
                for i in range(col_ptr[bc], col_ptr[bc + 1]):
                    e = col_edges[i]
                    s = shift[e]
                    m_lo, m_hi, total_hi = msg[e, :z - s], msg[e, z - s:], total[s:]
                    for r in range(z - s):
                        m_lo[r] = min(max(total_hi[r] - m_lo[r], -llr_max), llr_max)
                    for r in range(s):
                        m_hi[r] = min(max(total[r] - m_hi[r], -llr_max), llr_max)
                hard_c = hard[c0:c0 + z]
                for t in range(z):
                    hard_c[t] = np.uint8(min(max(total[t], -llr_max), llr_max) <= 0.0)
            if not early_stop:
                continue
            bad = np.uint8(0)  # the decision satisfies every check and the filler bits are 0
            for v in range(filler_lo, filler_hi):
                bad |= hard[v]
            for br in range(row_ptr.shape[0] - 1):
                if bad:
                    break
                parity[:] = 0
                for e in range(row_ptr[br], row_ptr[br + 1]):
                    c0, s = col[e] * z, shift[e]
                    h_hi, h_lo, mk, mk_hi = hard[c0 + s:c0 + z], hard[c0:c0 + s], mask[e], mask[e, z - s:]
                    for r in range(z - s):
                        parity[r] ^= h_hi[r] & mk[r]
                    parity_hi = parity[z - s:]
                    for r in range(s):
                        parity_hi[r] ^= h_lo[r] & mk_hi[r]
                for r in range(z):
                    bad |= parity[r]
            if bad == 0:
                iters[b] = it + 1
                break
        for i in range(k):
            bits[b, i] = hard[i]


if numba is not None:
    from simlink.phy.simd_phi import phi

    _decode = numba.njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True, nogil=True)(
        _decode_py)


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
        self.max_degree = int(np.diff(self.graph["row_ptr"]).max())  # edges of the densest block row
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
        g = self.graph
        internal = self.internal_llrs(llr)
        bits = np.zeros((internal.shape[0], self.k), dtype=np.uint8)
        iters = np.zeros(internal.shape[0], dtype=np.int32)
        _decode(internal, g["col"], g["shift"], g["valid"], g["mask"], g["row_ptr"], g["col_ptr"], g["col_edges"],
                self.max_degree, self.num_iter, self.early_stop, self.llr_max, self.k, self.k,
                self.k + self.k_filler, bits, iters)
        return bits, iters

    def __call__(self, llr):
        import torch

        device = llr.device if isinstance(llr, torch.Tensor) else "cpu"
        arr = llr.detach().cpu().numpy() if isinstance(llr, torch.Tensor) else np.asarray(llr)
        bits, iters = self.decode_numpy(arr)
        return torch.from_numpy(bits.astype(np.float32)).to(device), torch.from_numpy(iters).to(device)
