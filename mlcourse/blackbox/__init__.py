"""Model-based (black-box) meta-learning: a network reads the support set and labels the queries."""
from .attention import AttentionLearner
from .averaging import AveragingLearner
from .base import BlackBoxLearner, aggregate_mean, order_sensitivity, shuffle_support
from .recurrent import RecurrentLearner

__all__ = ["BlackBoxLearner", "RecurrentLearner", "AveragingLearner", "AttentionLearner", "aggregate_mean", "shuffle_support",
           "order_sensitivity"]
