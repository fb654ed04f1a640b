"""Belief-propagation decoding of the 5G LDPC code, optionally with per-codeword early termination.

Sionna's :class:`~sionna.phy.fec.ldpc.LDPC5GDecoder` always runs a fixed number of flooding
iterations on the whole batch. Real receivers stop a codeword as soon as its hard decision is a
codeword. :class:`BPDecoder` does that on top of Sionna's decoder, without re-implementing BP:

1. **Monitoring.** A ``v2c_callbacks`` hook is called by Sionna after every variable-node update
   with the current a-posteriori LLRs ``x_hat`` of *all* variable nodes of the decoder's (pruned)
   graph. The hook takes the hard decision exactly as Sionna's ``hard_out`` does
   (``bit = 1`` iff the internal LLR ``log p0/p1 <= 0``) and tests it against the decoder's own
   parity-check matrix (``decoder.pcm``: syndrome ``H x = 0`` over GF(2)) and the shortening
   (filler bits must be 0). Pruning only removes degree-1 punctured parity bits together with
   their check nodes — each such bit can always be set to satisfy its own check — so a zero
   syndrome of the pruned graph means the estimate extends to a valid codeword of the
   (shortened) 5G code. The first iteration at which a codeword's estimate is valid freezes its
   output (the hard decision of its information bits at that iteration), as a per-iteration
   early-stopping receiver would.
2. **Termination.** BP runs in chunks of a few iterations with ``return_state=True``;
   the v2c messages returned by Sionna are passed back as ``msg_v2c`` for the next chunk. In
   flooding BP an iteration depends only on the v2c messages and the channel LLRs, so resuming
   from the state is exactly the uninterrupted decoder. After each chunk, frozen codewords leave
   the batch; the others continue with their state, up to ``num_iter`` iterations in total.

The output therefore equals the full-iteration decoder's whenever BP stays on the codeword it
first reached (virtually always; BP can in rare cases oscillate away from a valid estimate), and
equals it exactly for codewords that never reach a valid estimate. Results do not depend on
``check_every`` (it only trades chunking overhead against wasted iterations).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


class BPDecoder:
    """5G LDPC BP decoder returning hard information bits and the iterations spent.

    Args:
        encoder: the Sionna ``LDPC5GEncoder`` the codewords were made with (``num_bits_per_symbol``
            set if the output interleaver is used).
        num_iter: maximum BP iterations.
        cn_update: Sionna check-node rule (``"boxplus-phi"``, ``"boxplus"``, ``"minsum"``, ``"offset-minsum"``).
        early_stop: stop each codeword at its first valid estimate (see module doc); ``False`` is
            exactly Sionna's ``LDPC5GDecoder`` with ``num_iter`` iterations.
        check_every: iterations of the first chunk (and of every chunk after one in which enough
            codewords stopped); chunks double up to ``MAX_CHUNK`` while few stop. Affects speed only.
        device: torch device string.

    Not re-entrant: a call keeps its monitoring state on the instance (one decoder per thread).
    """

    MAX_CHUNK = 8
    """Longest chunk (iterations) between compactions when few codewords stop."""

    def __init__(
        self,
        encoder,
        num_iter: int,
        cn_update: str = "boxplus-phi",
        early_stop: bool = True,
        check_every: int = 2,
        device: str = "cpu",
    ):
        from sionna.phy.fec.ldpc import LDPC5GDecoder

        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.encoder = encoder
        self.num_iter = int(num_iter)
        self.early_stop = bool(early_stop)
        self.check_every = int(check_every)
        self.device = device
        self.k = int(encoder.k)
        if not self.early_stop:
            self._decoder = LDPC5GDecoder(
                encoder, cn_update=cn_update, hard_out=True, return_infobits=True, num_iter=self.num_iter, device=device
            )
            return
        self._decoder = LDPC5GDecoder(
            encoder,
            cn_update=cn_update,
            hard_out=True,
            return_infobits=True,
            num_iter=self.check_every,
            return_state=True,
            v2c_callbacks=[self._monitor],
            device=device,
        )
        self._pcm = _sparse_pcm(self._decoder.pcm, device)
        self._filler = slice(self.k, int(encoder.k_ldpc))
        self._reset_monitor(0, 0)

    def __call__(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode.

        Input: ``llr float32[B, n]`` channel logits ``log p(1)/p(0)`` (Sionna convention, demapper output).
        Output: ``(bits float32[B, k] hard decisions 0/1, iterations int32[B] BP iterations spent)``.
        """
        batch = llr.shape[0]
        if batch == 0 or not self.early_stop:
            bits = self._decoder(llr) if batch else torch.zeros(0, self.k, device=llr.device)
            return bits, torch.full((batch,), self.num_iter, dtype=torch.int32, device=llr.device)
        return self._decode_early(llr)

    # ---- early termination ------------------------------------------------------------------
    def _decode_early(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = llr.shape[0]
        out = torch.zeros(batch, self.k, dtype=torch.float32, device=llr.device)
        iters = torch.full((batch,), self.num_iter, dtype=torch.int32, device=llr.device)
        active = torch.arange(batch, device=llr.device)
        state = None
        done_iter = 0
        chunk = self.check_every
        while done_iter < self.num_iter:
            chunk = min(chunk, self.num_iter - done_iter)
            self._reset_monitor(active.shape[0], done_iter)
            bits, state = self._decoder(llr, num_iter=chunk, msg_v2c=state)
            done_iter += chunk
            frozen = self._valid
            if done_iter >= self.num_iter:  # last chunk: unfinished codewords keep the final decision
                out[active] = torch.where(frozen.unsqueeze(1), self._bits, bits)
                iters[active] = torch.where(frozen, self._iter, iters[active])
                break
            num_frozen = int(frozen.sum())
            if num_frozen:
                out[active[frozen]] = self._bits[frozen]
                iters[active[frozen]] = self._iter[frozen]
                keep = ~frozen
                active, llr, state = active[keep], llr[keep], state[keep]
            if active.shape[0] == 0:
                break
            chunk = self._next_chunk(chunk, num_frozen / frozen.shape[0], self.num_iter - done_iter)
        return out, iters

    def _next_chunk(self, chunk: int, frozen_fraction: float, remaining: int) -> int:
        """Iterations of the next chunk: back to ``check_every`` while compaction pays off
        (the frozen fraction of the last chunk times the remaining iterations is at least one
        iteration's worth of work), otherwise doubled (at most ``MAX_CHUNK``) to save re-entries."""
        if frozen_fraction * remaining >= 1.0:
            return self.check_every
        return max(self.check_every, min(2 * chunk, self.MAX_CHUNK))

    def _reset_monitor(self, batch: int, offset: int) -> None:
        """Per-chunk monitor state: first-valid flags, frozen bits and iteration of freezing."""
        self._offset = offset
        self._valid = torch.zeros(batch, dtype=torch.bool, device=self.device)
        self._bits = torch.zeros(batch, self.k, dtype=torch.float32, device=self.device)
        self._iter = torch.zeros(batch, dtype=torch.int32, device=self.device)

    def _monitor(self, msg_vn: torch.Tensor, it: int, x_hat: torch.Tensor) -> torch.Tensor:
        """Sionna v2c callback: record each codeword's first valid estimate; messages pass unchanged.

        ``it`` is 0 for Sionna's pre-iteration call (``x_hat`` = channel LLRs; ignored), else the
        iteration number within the current chunk. ``x_hat float[B, num_vns]`` are Sionna's internal
        LLRs ``log p(0)/p(1)``.
        """
        if it == 0:
            return msg_vn
        hard = x_hat <= 0
        valid = self._is_codeword(hard)
        newly = valid & ~self._valid
        self._bits = torch.where(newly.unsqueeze(1), hard[:, : self.k].to(torch.float32), self._bits)
        self._iter = torch.where(newly, torch.full_like(self._iter, self._offset + it), self._iter)
        self._valid = self._valid | valid
        return msg_vn

    def _is_codeword(self, hard: torch.Tensor) -> torch.Tensor:
        """``bool[B]``: all parity checks of the decoder graph satisfied and all filler bits 0.

        Input: ``hard bool[B, num_vns]``. The syndrome ``H x^T`` is a sparse-dense product in
        float32 (exact: check-node degrees are far below 2^24), reduced mod 2.
        """
        syndrome = torch.sparse.mm(self._pcm, hard.T.to(torch.float32))  # [num_cns, B]
        unsatisfied = torch.remainder(syndrome, 2.0).bool().any(dim=0)
        return ~(unsatisfied | hard[:, self._filler].any(dim=1))


def _sparse_pcm(pcm, device: str) -> torch.Tensor:
    """The parity-check matrix as a float32 sparse CSR tensor ``[num_cns, num_vns]`` on ``device``.

    Input: scipy sparse or dense 0/1 matrix.
    """
    import scipy.sparse as sp

    h = sp.csr_matrix(pcm, dtype=np.float32)
    h.sum_duplicates()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta state"
        return torch.sparse_csr_tensor(
            torch.as_tensor(h.indptr, dtype=torch.int64),
            torch.as_tensor(h.indices, dtype=torch.int64),
            torch.as_tensor(h.data, dtype=torch.float32),
            size=h.shape,
            check_invariants=False,
        ).to(device)
