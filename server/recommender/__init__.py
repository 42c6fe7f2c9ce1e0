"""Server halves of the recommender: they see only sums of client releases."""

from fedseg.server.recommender.content import segment_attribute_weights
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.recommender.popularity import (
    SegmentPopularity,
    aggregate_segment_popularity,
    suppression_threshold,
)

__all__ = [
    "SegmentPopularity",
    "aggregate_segment_popularity",
    "fedavg",
    "segment_attribute_weights",
    "suppression_threshold",
]
