"""Server halves of the recommender: they see only sums of client releases."""

from fedseg.server.recommender.blend import PopularityPrior
from fedseg.server.recommender.content import ContentModel, attribute_weights, catalogue_attributes
from fedseg.server.recommender.ease import choose_items, fit_recommender, noise_edge
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.recommender.model import RecommenderModel
from fedseg.server.recommender.popularity import (
    SegmentPopularity,
    aggregate_segment_popularity,
    suppression_threshold,
)

__all__ = [
    "ContentModel",
    "attribute_weights",
    "catalogue_attributes",
    "PopularityPrior",
    "RecommenderModel",
    "choose_items",
    "fit_recommender",
    "noise_edge",
    "SegmentPopularity",
    "aggregate_segment_popularity",
    "fedavg",
    "suppression_threshold",
]
