"""The attention black-box learner: a small transformer that reads the support set in context.

The third way of reading the support set (CS330's "black-box adaptation" with attention; SNAIL,
Mishra et al. 2018, mixes attention with temporal convolutions): every support pair becomes a
token, its image features plus an embedding of its label, ``t_i = W f(x_i) + e(y_i)``; every
query becomes a token with the embedding of "no label", ``t_q = W f(x_q) + e_?``. A few layers
of self-attention let each query read the support tokens, and a linear head turns the query's
output into ``n_way`` logits. Where the LSTM of :mod:`~mlcourse.blackbox.recurrent` keeps the
support set in a state that it must write step by step, attention is an addressable memory: a
query can look up the support images it resembles and read their labels, which is what a
memory-augmented network's content-based read does (Santoro et al., 2016).

Two choices keep the model honest:

- no positional encoding, so the answer does not depend on the order of the support set
  (attention is permutation equivariant);
- an attention mask lets a query attend to the support tokens and to itself only, never to the
  other queries, so the learner is inductive like the metric learners.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import BlackBoxLearner

__all__ = ["AttentionLearner"]


class AttentionLearner(BlackBoxLearner):
    """Support and query tokens through a transformer encoder; queries attend to the support only.

    Args:
        n_way: Classes per task.
        hidden: Width of the tokens (the transformer's model dimension).
        layers, heads: Depth of the transformer and attention heads per layer.
        encoder, shuffle_train_support: See :class:`~mlcourse.blackbox.base.BlackBoxLearner`.
    """

    def __init__(self, *, n_way: int = 5, hidden: int = 128, layers: int = 2, heads: int = 4,
                 encoder: nn.Module | None = None, shuffle_train_support: bool = True) -> None:
        super().__init__(n_way=n_way, encoder=encoder, shuffle_train_support=shuffle_train_support)
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.hidden, self.layers, self.heads = hidden, layers, heads
        self.project = nn.Linear(self.features, hidden)
        self.labels = nn.Linear(n_way, hidden, bias=False)  # e(y) = W_y one_hot(y): one learned vector per label
        self.unknown = nn.Parameter(torch.zeros(hidden))  # e_?: the label token of a query
        block = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, n_way)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}, layers={self.layers}, heads={self.heads}"

    @staticmethod
    def attention_mask(n_support: int, n_query: int, device: torch.device | None = None) -> torch.Tensor:
        """``(S + Q, S + Q)`` boolean mask, True where attention is *not* allowed.

        Support tokens attend to the support set; each query to the support set and itself.
        """
        n = n_support + n_query
        blocked = torch.ones(n, n, dtype=torch.bool, device=device)
        blocked[:, :n_support] = False
        idx = torch.arange(n_support, n, device=device)
        blocked[idx, idx] = False
        return blocked

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        support = self.project(zs) + self.labels(ys)
        queries = self.project(zq) + self.unknown
        tokens = torch.cat([support, queries], dim=1)
        mask = self.attention_mask(zs.shape[1], zq.shape[1], device=zs.device)
        out = self.transformer(tokens, mask=mask)
        return self.head(out[:, zs.shape[1]:])
