"""Server halves of the recommender: they see only sums of client releases."""

from fedseg.server.recommender.blend import PopularityPrior
from fedseg.server.recommender.content import segment_attribute_weights
from fedseg.server.recommender.ease import (
    RecommenderModel,
    choose_items,
    fit_recommender,
    noise_edge,
)
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.recommender.popularity import (
    SegmentPopularity,
    aggregate_segment_popularity,
    suppression_threshold,
)

__all__ = [
    "PopularityPrior",
    "RecommenderModel",
    "choose_items",
    "fit_recommender",
    "noise_edge",
    "SegmentPopularity",
    "aggregate_segment_popularity",
    "fedavg",
    "segment_attribute_weights",
    "suppression_threshold",
]
