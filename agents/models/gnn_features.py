"""What the gnn decoder sees (docs/model.md §6.4): the user graph, the per-option features and
their named constants, in torch and in the numba form the compiled decoder reads.

* :func:`user_graph`: node features (total, strongest and second-strongest gain), edge features
  (cosine of the fading columns, scaled log contamination ratio) and the log ratios themselves.
* :func:`option_features`: the 6 features of one (user, pilot group) option from the group's
  aggregates over its members. Every torch path of the decoder (the differentiable reference that
  re-reduces the members, the incremental one that keeps running sums) builds its options here;
  :func:`option_features_one` is its numba twin, the only other form (tested equal).
"""

from __future__ import annotations

import math

import torch
from numba import njit

from cfenv.units import normalise_db

LOG_RATIO_CLIP = (-6.0, 2.0)
"""clip of log10 contamination ratios"""
LOG_SCALE = 4.0
"""divisor of every log10 contamination feature (the edge's clipped ratio, an option's summed
contamination both ways), bringing them near unit scale"""
CONTAMINATION_FLOOR = 1e-6
"""added inside log10 of an option's summed contamination, so that an empty group's feature stays finite"""
CONFIDENCE_TIE = 1e-6
"""confidences within this of the step's largest count as tied; ties go to the larger order key
(total gain), never to the lower index, so both symmetries hold"""
NODE_FEATURES = 3
"""per user: total, strongest and second-strongest gain, normalised dB"""
EDGE_FEATURES = 2
"""per user pair: cosine of the fading columns, log10 contamination ratio / :data:`LOG_SCALE`"""
OPTION_FEATURES = 6
"""per (user, group) option, :func:`option_features`: summed and largest cosine to the members,
log contamination of the members on the user and of the user on the members, size / K, newness"""


def user_graph(beta_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Node features ``(B, K, 3)``, edge features ``(B, K, K, 2)`` and the log contamination
    ratio ``(B, K, K)`` (entry [k, j]: log10 of how much j would contaminate k) of a batch."""
    beta = torch.pow(10.0, beta_db.to(torch.float64) / 10.0)  # (B, M, K)
    total_db = 10.0 * torch.log10(beta.sum(-2))
    top = torch.topk(beta_db.to(torch.float64), k=min(2, beta_db.shape[-2]), dim=-2).values  # (B, 2|1, K)
    second = top[:, -1]
    nodes = torch.stack([total_db, top[:, 0], second], dim=-1)
    nodes = normalise_db(nodes).float()
    cross = beta.transpose(-1, -2) @ beta  # (B, K, K): sum_m beta[m,k] beta[m,j]
    own = torch.diagonal(cross, dim1=-2, dim2=-1)  # (B, K)
    norm = own.sqrt()
    cosine = cross / (norm[:, :, None] * norm[:, None, :])
    log_ratio = torch.log10(cross / own[:, :, None]).clamp(*LOG_RATIO_CLIP)  # [k, j]: j's power at k's APs
    edges = torch.stack([cosine, log_ratio / LOG_SCALE], dim=-1).float()
    return nodes, edges, log_ratio.float()


def option_features(sum_cos: torch.Tensor, max_cos: torch.Tensor, sum_into: torch.Tensor,
                    sum_from: torch.Tensor, size: torch.Tensor, is_new: torch.Tensor, n_users: int) -> torch.Tensor:
    """The :data:`OPTION_FEATURES` features ``(..., 6)`` of options from their group aggregates
    (broadcast together): the summed and the largest cosine between the user and the group's
    members, the members' summed contamination on the user and the user's on the members (as
    log10(x + :data:`CONTAMINATION_FLOOR`) / :data:`LOG_SCALE`), the group's size / ``n_users``
    and whether it is the next new group (float)."""
    sum_cos, max_cos, sum_into, sum_from, size, is_new = torch.broadcast_tensors(
        sum_cos, max_cos, sum_into, sum_from, size, is_new)
    return torch.stack([
        sum_cos,
        max_cos,
        torch.log10(sum_into + CONTAMINATION_FLOOR) / LOG_SCALE,
        torch.log10(sum_from + CONTAMINATION_FLOOR) / LOG_SCALE,
        size / n_users,
        is_new.float(),
    ], dim=-1)


@njit(cache=True, inline="always")
def user_option_features(sum_cos, max_cos, sum_into, sum_from):  # pragma: no cover - compiled
    """Numba: the first four features of :func:`option_features` (those that depend on the user)."""
    return (sum_cos, max_cos, math.log10(sum_into + CONTAMINATION_FLOOR) / LOG_SCALE,
            math.log10(sum_from + CONTAMINATION_FLOOR) / LOG_SCALE)


@njit(cache=True, inline="always")
def group_option_features(size, new, n_users):  # pragma: no cover - compiled
    """Numba: the last two features of :func:`option_features` (the same for every user)."""
    return size / n_users, 1.0 if new else 0.0


@njit(cache=True)
def option_features_one(sum_cos, max_cos, sum_into, sum_from, size, new, n_users):  # pragma: no cover - compiled
    """Numba twin of :func:`option_features` for one option: the 6 features as a tuple, made of
    the two halves the compiled decoder computes apart (the user part per user, the group part
    once per group)."""
    return user_option_features(sum_cos, max_cos, sum_into, sum_from) + group_option_features(size, new, n_users)
