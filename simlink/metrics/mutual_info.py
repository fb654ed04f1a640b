"""Neural mutual-information estimators: CLUB (upper bound) and MINE (lower bound).

Both estimate ``I(X; Y)`` from ``N`` paired samples ``x: float[N, dx]``, ``y: float[N, dy]`` and
report it in nats (natural log) and bits (``bits = nats / ln 2``).

* **CLUB** (Cheng et al., ICML 2020, "CLUB: A Contrastive Log-ratio Upper Bound of Mutual
  Information"). A variational Gaussian ``q(y|x) = N(mu(x), diag(exp(logvar(x))))`` from a small
  MLP is fitted by maximum likelihood; the estimate is
  ``mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i)``.
  With ``q`` equal to the true conditional the bound exceeds ``I`` by
  ``E_x KL(p(y) || p(y|x))``; this gap can be large (for unit-variance Gaussians with
  per-dimension correlation ``rho`` the population CLUB value is ``rho^2 / (1 - rho^2)`` per
  dimension against ``-log(1 - rho^2) / 2`` for ``I``, see :func:`gaussian_club_value`).
* **MINE** (Belghazi et al., ICML 2018). A statistics network ``T(x, y)`` (MLP on the
  concatenation) maximises the Donsker-Varadhan bound
  ``I >= E_P[T] - log E_{P_X x P_Y}[exp T]``; samples of the product of marginals are made by
  shuffling ``y`` within the batch, and the gradient of the log-denominator uses an exponential
  moving average of ``E[exp T]`` (the paper's bias correction).

The reference size of TOSC-SR's Algorithm 4 is an MLP with hidden layers 1024-512-512; the default
here, ``(128, 128)``, is sized for CPU. Results are deterministic given ``seed`` (on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = [
    "PAPER_HIDDEN",
    "MIEstimate",
    "club_bound",
    "dv_bound",
    "estimate_mi",
    "gaussian_club_value",
    "gaussian_mi",
]

PAPER_HIDDEN = (1024, 512, 512)
"""Hidden sizes of the MI network in TOSC-SR's Algorithm 4 (too slow for CPU tests)."""

_LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class MIEstimate:
    """Result of :func:`estimate_mi`.

    Attributes:
        nats: final estimate of ``I(X; Y)`` in nats, evaluated on the held-out samples.
        bits: the same in bits (``nats / ln 2``).
        method: ``"club"`` (upper bound) or ``"mine"`` (lower bound).
        history: per-step minibatch estimates in nats during training (length ``steps``).
    """

    nats: float
    bits: float
    method: str
    history: list[float] = field(default_factory=list)


def gaussian_mi(rho: float, d: int) -> float:
    """Closed-form ``I(X; Y)`` in nats for ``x, y in R^d`` jointly Gaussian with unit variances
    and correlation ``rho`` between ``x_k`` and ``y_k`` (independent across ``k``):
    ``-d/2 * log(1 - rho^2)``."""
    return -0.5 * d * math.log1p(-rho * rho)


def gaussian_club_value(rho: float, d: int) -> float:
    """Population CLUB value in nats for the same Gaussians when ``q(y|x)`` is the true conditional
    ``N(rho x, 1 - rho^2)``: ``d * rho^2 / (1 - rho^2)`` (always ``>= gaussian_mi(rho, d)``)."""
    return d * rho * rho / (1.0 - rho * rho)


# ---------------------------------------------------------------------------------------------
# networks


def _mlp(d_in: int, hidden: tuple[int, ...], d_out: int) -> nn.Sequential:
    """ReLU MLP ``d_in -> hidden... -> d_out`` (linear output)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class GaussianConditional(nn.Module):
    """Variational ``q(y|x) = N(mu(x), diag(exp(logvar(x))))``; one MLP outputs ``[mu, logvar]``.

    ``logvar`` is squashed into ``[-LOGVAR_MAX, LOGVAR_MAX]`` by a scaled tanh for stability.
    """

    LOGVAR_MAX = 8.0

    def __init__(self, dx: int, dy: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = _mlp(dx, hidden, 2 * dy)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: [N, dx]`` -> ``(mu, logvar)``, each ``[N, dy]``."""
        mu, raw = self.net(x).chunk(2, dim=-1)
        return mu, self.LOGVAR_MAX * torch.tanh(raw / self.LOGVAR_MAX)


class StatisticsNetwork(nn.Module):
    """MINE statistics network ``T(x, y)``: MLP on ``cat([x, y])`` with a scalar output."""

    def __init__(self, dx: int, dy: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = _mlp(dx + dy, hidden, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: [N, dx]``, ``y: [N, dy]`` -> ``T: [N]``."""
        return self.net(torch.cat([x, y], dim=-1)).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# bounds


def _gauss_loglik(y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(y; mu, diag(exp(logvar)))`` in nats summed over the last axis; shapes broadcast."""
    return -0.5 * ((y - mu) ** 2 * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def club_bound(
    mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, mode: str = "full", generator=None
) -> torch.Tensor:
    """CLUB estimate in nats from the variational parameters of ``q(y|x_i)``.

    Args:
        mu, logvar: ``[N, dy]``, parameters of ``q(.|x_i)``.
        y: ``[N, dy]``, with ``(x_i, y_i)`` the joint samples.
        mode: ``"full"``: negative term averaged over all ``N^2`` pairs ``(i, j)``. It is computed
            exactly in ``O(N dy)`` through the moments of ``y``, since
            ``mean_j (y_j - mu_i)^2 = mean_j y_j^2 - 2 mu_i mean_j y_j + mu_i^2``.
            ``"sampled"`` (CLUBSample): one negative ``y_{pi(i)}`` per ``i`` from a random
            permutation ``pi`` (unbiased, noisier; the paper's choice for large ``N``).
        generator: ``torch.Generator`` for the permutation of ``"sampled"``.

    Returns:
        Scalar tensor (differentiable w.r.t. ``mu``, ``logvar``).
    """
    positive = _gauss_loglik(y, mu, logvar).mean()
    if mode == "full":
        m1, m2 = y.mean(0), (y * y).mean(0)  # [dy]
        sq = m2 - 2.0 * mu * m1 + mu * mu  # [N, dy]: mean_j (y_j - mu_i)^2
        negative = (-0.5 * (sq * torch.exp(-logvar) + logvar + _LOG_2PI)).sum(-1).mean()
    elif mode == "sampled":
        perm = torch.randperm(y.shape[0], generator=generator, device="cpu").to(y.device)
        negative = _gauss_loglik(y[perm], mu, logvar).mean()
    else:
        raise ValueError(f"mode must be 'full' or 'sampled'; got {mode!r}")
    return positive - negative


def _logmeanexp(t: torch.Tensor) -> torch.Tensor:
    """``log(mean(exp(t)))`` over all elements, computed stably; scalar tensor."""
    return torch.logsumexp(t.reshape(-1), 0) - math.log(t.numel())


def dv_bound(
    stat: StatisticsNetwork, x: torch.Tensor, y: torch.Tensor, n_shuffles: int = 1, generator=None
) -> torch.Tensor:
    """Donsker-Varadhan lower bound in nats: ``mean_i T(x_i, y_i) - log mean exp T(x_i, y_pi(i))``.

    Args:
        stat: the statistics network ``T``.
        x: ``[N, dx]``; y: ``[N, dy]`` joint samples.
        n_shuffles: number of independent permutations ``pi`` whose marginal samples are pooled in
            the denominator (``N * n_shuffles`` samples of ``P_X x P_Y``).
        generator: ``torch.Generator`` for the permutations.

    Returns:
        Scalar tensor.
    """
    joint = stat(x, y).mean()
    marg = torch.cat([stat(x, y[_perm(y.shape[0], generator, y.device)]) for _ in range(n_shuffles)])
    return joint - _logmeanexp(marg)


def _perm(n: int, generator, device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device="cpu").to(device)


# ---------------------------------------------------------------------------------------------
# training


StepFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, float]"]
"""``(x_batch, y_batch) -> (loss to minimise, minibatch MI estimate in nats)``."""


def _train(
    params, step_fn: StepFn, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, lr: float, generator
) -> list[float]:
    """Shared minibatch loop: Adam on ``params`` for ``steps`` steps of ``step_fn``, with the
    learning rate annealed from ``lr`` to 0 by a cosine schedule (less minibatch noise in the
    final network, which matters for CLUB: its value scales with ``1 / var(y|x)``).

    Batches are drawn without replacement from reshuffled epochs of ``(x, y)``.

    Returns:
        The per-step minibatch estimates (nats).
    """
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    n = x.shape[0]
    batch_size = min(batch_size, n)
    history: list[float] = []
    order, pos = _perm(n, generator, x.device), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = _perm(n, generator, x.device), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        loss, estimate = step_fn(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(estimate)
    return history


def _club(x, y, x_eval, y_eval, hidden, steps, batch_size, lr, generator) -> tuple[float, list[float]]:
    """Fit ``q(y|x)`` by maximum likelihood, return (full CLUB on the eval set, history)."""
    q = GaussianConditional(x.shape[1], y.shape[1], hidden).to(x.device)

    def step(xb, yb):
        mu, logvar = q(xb)
        with torch.no_grad():
            est = float(club_bound(mu, logvar, yb, mode="full"))
        return -_gauss_loglik(yb, mu, logvar).mean(), est

    history = _train(q.parameters(), step, x, y, steps, batch_size, lr, generator)
    with torch.no_grad():
        mu, logvar = q(x_eval)
        return float(club_bound(mu, logvar, y_eval, mode="full")), history


def club_bound_categorical(log_q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Full CLUB in nats with a categorical ``q(y|x_i)`` for a discrete ``Y``.

    Inputs: ``log_q float[N, C]`` (log-probabilities of ``q(.|x_i)``), ``labels int64[N]``.
    Output: ``mean_i log q(y_i|x_i) - mean_i sum_c p(c) log q(c|x_i)`` with ``p`` the empirical
    label frequencies, i.e. the negative term averaged over all ``N^2`` pairs. Bounded by the
    range of ``log q`` (a Gaussian ``q`` on one-hot labels is not: its variance collapses).
    """
    positive = log_q.gather(1, labels[:, None]).mean()
    freq = torch.bincount(labels, minlength=log_q.shape[1]).to(log_q.dtype) / labels.shape[0]
    return positive - (log_q * freq[None, :]).sum(1).mean()


def _club_categorical(x, y, x_eval, y_eval, hidden, steps, batch_size, lr, generator) -> tuple[float, list[float]]:
    """CLUB with a softmax-MLP ``q(y|x)`` fitted by maximum likelihood (cross-entropy); ``y``
    holds class indices (as float, see :func:`_as_tensor`)."""
    n_classes = int(torch.cat([y, y_eval]).max().item()) + 1
    q = _mlp(x.shape[1], hidden, n_classes).to(x.device)
    y, y_eval = y[:, 0].long(), y_eval[:, 0].long()

    def step(xb, yb):
        log_q = torch.log_softmax(q(xb), dim=1)
        with torch.no_grad():
            est = float(club_bound_categorical(log_q, yb))
        return -log_q.gather(1, yb[:, None]).mean(), est

    history = _train(q.parameters(), step, x, y, steps, batch_size, lr, generator)
    with torch.no_grad():
        return float(club_bound_categorical(torch.log_softmax(q(x_eval), dim=1), y_eval)), history


def _mine(
    x, y, x_eval, y_eval, hidden, steps, batch_size, lr, generator, ema_rate: float, eval_shuffles: int
) -> tuple[float, list[float]]:
    """Maximise the DV bound with the EMA-corrected gradient; return (DV on the eval set, history).

    The loss is ``-(mean T_joint - mean exp(T_marg) / ema)`` with ``ema`` (treated as a constant)
    the moving average of ``mean exp(T_marg)``: its gradient is that of the DV bound with the
    minibatch denominator replaced by the moving average (Belghazi et al., Sec. 3.2). The EMA is
    kept in the log domain to avoid overflow.
    """
    stat = StatisticsNetwork(x.shape[1], y.shape[1], hidden).to(x.device)
    state = {"log_ema": None}

    def step(xb, yb):
        joint = stat(xb, yb).mean()
        lme = _logmeanexp(stat(xb, yb[_perm(yb.shape[0], generator, yb.device)]))
        cur = lme.detach()
        prev = state["log_ema"]
        log_ema = cur if prev is None else torch.logaddexp(prev + math.log1p(-ema_rate), cur + math.log(ema_rate))
        state["log_ema"] = log_ema
        loss = -(joint - torch.exp(lme - log_ema))
        return loss, float(joint.detach() - cur)

    history = _train(stat.parameters(), step, x, y, steps, batch_size, lr, generator)
    with torch.no_grad():
        return float(dv_bound(stat, x_eval, y_eval, n_shuffles=eval_shuffles, generator=generator)), history


def _as_tensor(a, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    t = t.to(device=device, dtype=torch.float32)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} must be [N, d]; got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite values")
    return t


def estimate_mi(
    x,
    y,
    method: str = "club",
    hidden: tuple[int, ...] = (128, 128),
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    holdout: float = 0.2,
    ema_rate: float = 0.01,
    eval_shuffles: int = 20,
    y_discrete: bool = False,
) -> MIEstimate:
    """Estimate ``I(X; Y)`` with CLUB (upper bound) or MINE (lower bound).

    Args:
        x: ``float[N, dx]`` (numpy or torch; 1-D is read as ``[N, 1]``).
        y: ``float[N, dy]``, paired with ``x`` row by row.
        method: ``"club"`` or ``"mine"``.
        hidden: hidden layer sizes of the MLP (``q`` for CLUB, ``T`` for MINE). TOSC-SR's
            Algorithm 4 uses :data:`PAPER_HIDDEN` = ``(1024, 512, 512)``; the default is for CPU.
        steps: Adam steps; batch_size: pairs per step; lr: Adam learning rate.
        seed: seeds network initialisation, the train/eval split, batches and shuffles.
        device: torch device.
        holdout: fraction of the ``N`` pairs kept out of training and used for the final
            estimate (``0`` trains and evaluates on all pairs, which lets MINE overfit upwards).
        ema_rate: MINE only, weight of the newest minibatch in the moving average of ``E[exp T]``.
        eval_shuffles: MINE only, permutations of ``y`` pooled for the final denominator.
        y_discrete: ``y`` is ``int[N]`` class indices (0..C-1). CLUB then uses a categorical
            ``q(y|x)`` (softmax MLP, :func:`club_bound_categorical`) instead of a Gaussian, whose
            variance would collapse on a discrete ``y`` and make the bound meaningless; MINE
            sees ``y`` one-hot.

    Returns:
        :class:`MIEstimate` with the final estimate in nats and bits, and the per-step
        minibatch estimates (nats) in ``history``.
    """
    if y_discrete:
        labels = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise ValueError("y_discrete=True needs y as int[N] class indices >= 0")
        if method == "mine":
            y = np.eye(int(labels.max()) + 1 if labels.size else 1, dtype=np.float32)[labels]
    x_t, y_t = _as_tensor(x, "x", device), _as_tensor(y, "y", device)
    n = x_t.shape[0]
    if y_t.shape[0] != n:
        raise ValueError(f"x and y need the same number of rows; got {n} and {y_t.shape[0]}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1); got {holdout}")
    n_eval = int(round(holdout * n))
    if n - n_eval < 2 or (holdout > 0 and n_eval < 2):
        raise ValueError(f"too few samples ({n}) for holdout={holdout}")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # network init from `seed` without touching global RNG
        torch.manual_seed(seed)
        split = _perm(n, generator, x_t.device)
        tr, ev = (split[n_eval:], split[:n_eval]) if n_eval else (split, split)
        args = (x_t[tr], y_t[tr], x_t[ev], y_t[ev], tuple(hidden), steps, batch_size, lr, generator)
        if method == "club":
            nats, history = (_club_categorical if y_discrete else _club)(*args)
        elif method == "mine":
            nats, history = _mine(*args, ema_rate=ema_rate, eval_shuffles=eval_shuffles)
        else:
            raise ValueError(f"method must be 'club' or 'mine'; got {method!r}")
    return MIEstimate(nats=nats, bits=nats / _LN2, method=method, history=history)
