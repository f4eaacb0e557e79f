"""EPAS: the exact exhaustive search over pilot partitions (docs/model.md §5.1).

Optimises ``SystemConfig.objective`` (sum rate, minimum rate or proportional fairness:
:func:`cfenv._kernels.objective_of`) by enumerating restricted-growth strings, compiled
(numba) and in parallel over independent prefixes, or on a torch device; on a model without
the ``paper-pairwise`` fast path, in batches scored by ``model.objective``
(:func:`agents.search.generic.exhaustive`). Deterministic: ties go to the lexicographically
first assignment, whatever the batching or thread count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numba import njit, prange

from agents.base import Agent
from agents.search import generic
from cfenv import _kernels
from cfenv._kernels import JIT
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.models import model_of

DEFAULT_MAX_ASSIGNMENTS = 1_000_000_000
"""EPAS refuses searches larger than this (about 5 minutes per snapshot on 2 cores)"""
PREFIX_TARGET = 512
"""EPAS splits the search into at least this many independent prefixes (parallel work items)"""
WARM_UP_USERS = 4
"""users of the tiny problem :meth:`ExhaustiveAgent.warm_up` searches"""


# ------------------------------------------------------- restricted growth strings
def _completions(K: int, tau_p: int) -> list[list[int]]:
    """``ext[i][m]``: number of ways to label users i..K-1 given the largest label so far is m."""
    ext = [[0] * tau_p for _ in range(K + 1)]
    ext[K] = [1] * tau_p
    for i in range(K - 1, -1, -1):
        for m in range(tau_p):
            ext[i][m] = (m + 1) * ext[i + 1][m] + (ext[i + 1][m + 1] if m + 1 < tau_p else 0)
    return ext


def count_assignments(K: int, tau_p: int) -> int:
    """Assignments up to pilot relabelling: restricted-growth strings of length K with at
    most tau_p labels, sum_{j <= tau_p} S(K, j) (Stirling numbers of the second kind)."""
    return _completions(K, tau_p)[1][0]


def rgs_prefixes(K: int, tau_p: int, depth: int) -> np.ndarray:
    """All restricted-growth prefixes of length ``depth`` (lexicographic), ``(P, depth)`` int64."""
    rows: list[list[int]] = [[0]]
    for _ in range(depth - 1):
        rows = [r + [t] for r in rows for t in range(min(max(r) + 2, tau_p))]
    return np.array(rows, dtype=np.int64).reshape(-1, depth)


@njit(parallel=True, **JIT)
def _exhaustive(beta_t, bu, prefixes, params, best_val, best_assign):
    """Depth-first enumeration of every restricted-growth completion of each prefix; the
    first (lexicographic) maximiser of each prefix's objective (``params.code``, see
    :func:`cfenv._kernels.objective_of`) goes to best_val/best_assign."""
    n_prefix, depth = prefixes.shape
    K, M = beta_t.shape
    tau_p = params.tau_p
    for p in prange(n_prefix):
        scratch = _kernels.new_scratch(K, M, tau_p)
        a = np.zeros(K, np.int64)
        mx = np.zeros(K, np.int64)  # mx[i] = max(a[0..i])
        for i in range(depth):
            a[i] = prefixes[p, i]
            mx[i] = a[i] if i == 0 else max(mx[i - 1], a[i])
        for i in range(depth, K):
            mx[i] = mx[i - 1]
        best = -np.inf
        while True:
            val = _kernels.objective_one(beta_t, bu, a, params, scratch)
            if val > best:
                best = val
                best_assign[p, :] = a
            i = K - 1
            while i >= depth:
                limit = min(mx[i - 1] + 1, tau_p - 1)
                if a[i] < limit:
                    break
                i -= 1
            if i < depth:
                break
            a[i] += 1
            mx[i] = max(mx[i - 1], a[i])
            for j in range(i + 1, K):
                a[j] = 0
                mx[j] = mx[j - 1]
        best_val[p] = best


def rgs_batches(K: int, tau_p: int, batch: int) -> Iterator[np.ndarray]:
    """Every restricted-growth string in lexicographic order, ``(n, K)`` int64 blocks of ``batch``
    consecutive ranks (:func:`unrank_rgs`): what the generic EPAS scores."""
    total = count_assignments(K, tau_p)
    for lo in range(0, total, batch):
        yield unrank_rgs(np.arange(lo, min(total, lo + batch), dtype=np.int64), K, tau_p)


def search_prefixes(K: int, tau_p: int) -> np.ndarray:
    """EPAS's parallel work items: the restricted-growth prefixes of the shortest depth that gives
    at least :data:`PREFIX_TARGET` of them (or of length K)."""
    depth = 1
    while depth < K and len(rgs_prefixes(K, tau_p, depth)) < PREFIX_TARGET:
        depth += 1
    return rgs_prefixes(K, tau_p, depth)


def unrank_rgs(index, K: int, tau_p: int):
    """Restricted-growth strings of rank ``index`` in lexicographic order, vectorised.

    Args:
        index: ``(N,)`` int64 ranks in [0, count_assignments(K, tau_p)), a torch tensor (EPAS on a
            device) or a numpy array (the generic EPAS, :mod:`agents.search.generic`).

    Returns:
        ``(N, K)`` int64 in ``index``'s library (and device): user 0 on pilot 0, each later user on
        a used pilot or the next new one, at most tau_p pilots.
    """
    if isinstance(index, np.ndarray):
        xp, r = np, index.astype(np.int64)
        ext = np.array(_completions(K, tau_p), dtype=np.int64)  # (K + 1, tau_p)
        out = np.zeros((index.shape[0], K), dtype=np.int64)
    else:
        import torch

        xp, r = torch, index.clone()
        ext = torch.tensor(_completions(K, tau_p), dtype=torch.int64, device=index.device)
        out = torch.zeros((index.shape[0], K), dtype=torch.int64, device=index.device)
    top = xp.zeros_like(r)  # largest label so far
    for i in range(1, K):
        per = ext[i + 1, top]  # completions after choosing an old label t <= top
        old = (top + 1) * per
        take_old = r < old
        label = xp.where(take_old, r // per, top + 1)
        r = xp.where(take_old, r % per, r - old)
        out[:, i] = label
        top = xp.maximum(top, label)
    return out


def _torch_device(device):
    """The torch device of ``ExhaustiveAgent(device=...)``, or None for the numba search."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "cpu":
        return None
    if device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'auto' or a torch device, got {device!r}") from None


class ExhaustiveAgent(Agent):
    """EPAS: the exact maximiser of ``config.objective`` (sum rate, minimum rate or
    proportional fairness), enumerating each pilot partition once.

    Pilot labels are interchangeable, so only restricted-growth strings are scored
    (user 0 on pilot 0, every later user on a used pilot or the next new one):
    ``sum_{j <= tau_p} S(K, j)`` ~ tau_p^K / tau_p! assignments. On ``device="cpu"`` the
    enumeration is split into independent prefixes scored in parallel by a compiled
    depth-first search; on a torch device, blocks of ``block`` consecutive ranks are unranked
    (:func:`unrank_rgs`) and scored by the batched torch rate path
    (:func:`cfenv.rates.user_rates`, :func:`cfenv.rates.objective_from_rates`, float64) on
    that device. Either way ties go to the lexicographically first assignment. The result is
    canonical (a restricted-growth string) and independent of batching and thread count.

    On a model without the ``paper-pairwise`` fast path (:func:`agents.search.generic.pairwise_kernel`:
    e.g. ``SystemConfig(model="paper-reference")``) the strings are unranked in blocks of
    :data:`agents.search.generic.BATCH` / B (B snapshots) and each block is scored on every snapshot
    by one ``model.objective`` call (:func:`agents.search.generic.exhaustive`), whatever ``device``;
    the same first maximiser, the same cap.

    Args:
        max_assignments: refuse (``ValueError``, with the number needed) beyond this.
        progress: show a tqdm bar for searches above ``progress_min`` assignments.
        threads: numba threads (default: all cores).
        device: ``"cpu"`` (numba, default), ``"auto"`` (``"cuda"`` when available, else numba),
            or a torch device (``"cuda"``, ``"cuda:1"``, ``torch.device("cpu")``, ...).
        block: assignments per torch batch (default: about 2e7 / (M K + K^2)).
    """

    name = "exhaustive"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0,
                 max_assignments: int = DEFAULT_MAX_ASSIGNMENTS, progress: bool = True,
                 progress_min: int = 20_000_000, threads: int | None = None, device="cpu",
                 block: int | None = None) -> None:
        super().__init__(config, seed)
        if block is not None and block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.device = _torch_device(device)
        self.block = block
        self.max_assignments = int(max_assignments)
        self.progress = progress
        self.progress_min = progress_min
        self.threads = threads

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        needed = count_assignments(config.K, config.tau_p)
        if needed > self.max_assignments:
            return (f"would score {needed:,} assignments, above max_assignments={self.max_assignments:,}")
        return None

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        kernel = generic.pairwise_kernel(config)
        if kernel is None:
            batch = max(1, generic.BATCH // len(snapshots))
            batches = rgs_batches(config.K, config.tau_p, batch)
            return generic.exhaustive(model_of(config), snapshots, batches)[0]
        if self.device is not None:
            return np.stack([self._search_torch(beta, config) for beta in snapshots.beta])
        beta_t, bu = kernel.kernel_inputs(snapshots)
        prefixes = search_prefixes(config.K, config.tau_p)
        total = count_assignments(config.K, config.tau_p)
        out = np.empty((len(beta_t), config.K), dtype=np.int64)
        for s in range(len(beta_t)):
            out[s] = self._search_one(beta_t[s], bu[s], prefixes, total, config)
        return out

    def warm_up(self, snapshots: Snapshot | None = None, config: SystemConfig | None = None) -> None:
        """Compile (or load from numba's cache) the kernels :meth:`assign` runs, on a tiny problem:
        :data:`WARM_UP_USERS` users of ``config``'s pilots on a drawn snapshot (``snapshots`` are not
        used) -- the same compiled specialisations as a full search, for a fraction of a second
        instead of a whole snapshot's search (what the default warm-up, an untimed ``assign`` on
        real snapshots, would cost)."""
        config = self._resolve_config(config)
        tiny = config.replace(K=min(config.K, WARM_UP_USERS))
        self.assign(model_of(tiny).draw(np.random.default_rng(0), (1,)), tiny)

    def _search_torch(self, beta: np.ndarray, config: SystemConfig) -> np.ndarray:
        """One snapshot's ``(M, K)`` fading on :attr:`device`: the first maximiser over all
        restricted-growth strings, scored in blocks of consecutive ranks."""
        import torch

        from cfenv.rates import objective_from_rates, user_rates

        K, tau_p = config.K, config.tau_p
        total = count_assignments(K, tau_p)
        block = self.block or max(1, min(1 << 16, int(2e7 // (config.M * K + K * K))))
        beta_dev = torch.as_tensor(np.asarray(beta, dtype=np.float64), device=self.device)
        best_val, best_rank = -math.inf, 0
        with torch.no_grad():
            for lo in range(0, total, block):
                index = torch.arange(lo, min(total, lo + block), dtype=torch.int64, device=self.device)
                pilots = unrank_rgs(index, K, tau_p)
                values = objective_from_rates(user_rates(beta_dev, pilots, config), config.objective)
                i = int(torch.argmax(values))  # the first maximiser in the block
                v = float(values[i])
                if v > best_val:
                    best_val, best_rank = v, lo + i
        rank = torch.tensor([best_rank], dtype=torch.int64)
        return unrank_rgs(rank, K, tau_p)[0].numpy()

    def _search_one(self, beta_t: np.ndarray, bu: np.ndarray, prefixes: np.ndarray, total: int,
                    config: SystemConfig) -> np.ndarray:
        import numba

        best_val = np.empty(len(prefixes))
        best_assign = np.empty((len(prefixes), config.K), dtype=np.int64)
        params = generic.pairwise_kernel(config).params()
        old_threads = numba.get_num_threads()
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        try:
            if not self.progress or total < self.progress_min:
                _exhaustive(beta_t, bu, prefixes, params, best_val, best_assign)
            else:
                from tqdm.auto import tqdm

                ext = _completions(config.K, config.tau_p)
                depth = prefixes.shape[1]
                sizes = [ext[depth][int(p.max())] for p in prefixes]
                chunk = max(1, len(prefixes) // 50)
                with tqdm(total=total, desc=f"EPAS K={config.K}", unit="assign", unit_scale=True,
                          leave=False) as bar:
                    for lo in range(0, len(prefixes), chunk):
                        hi = min(len(prefixes), lo + chunk)
                        _exhaustive(beta_t, bu, prefixes[lo:hi], params, best_val[lo:hi], best_assign[lo:hi])
                        bar.update(sum(sizes[lo:hi]))
        finally:
            numba.set_num_threads(old_threads)
        return best_assign[int(np.argmax(best_val))]
