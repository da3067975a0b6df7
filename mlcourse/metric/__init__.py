"""Metric-based meta-learning: learn an embedding (and a comparison) in which few examples suffice."""
from .base import FewShotClassifier
from .matching import MatchingNetwork, matching_attention
from .open_set import REJECTION_SCORES, open_set_evaluation
from .pixel import pixel_nearest_neighbour
from .protonet import PrototypicalNetwork, prototype_logits, prototypes, prototypical_loss
from .relation import RelationNetwork
from .siamese import SiameseNetwork

__all__ = ["FewShotClassifier", "MatchingNetwork", "matching_attention", "PrototypicalNetwork", "RelationNetwork", "SiameseNetwork", "prototypes",
           "prototype_logits", "prototypical_loss", "open_set_evaluation", "REJECTION_SCORES", "pixel_nearest_neighbour"]
