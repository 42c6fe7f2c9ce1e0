"""Client halves of the recommender: each is a function of local data, broadcast
parameters, an injected rng and privacy parameters, returning numpy arrays."""

from fedseg.client.recommender.dpsgd import LocalTrainingConfig, dpsgd_release, train_local
from fedseg.client.recommender.gram import (
    gram_statistics,
    popularity_statistics,
    unit_history_rows,
)
from fedseg.client.recommender.histories import (
    CustomerHistories,
    HistoryError,
    build_histories,
    collate_histories,
)
from fedseg.client.recommender.model import (
    HistoryRecommender,
    get_parameters,
    init_parameters,
    model_from_parameters,
    score_customers,
    set_parameters,
)
from fedseg.client.recommender.popularity import segment_item_counts

__all__ = [
    "CustomerHistories",
    "HistoryError",
    "HistoryRecommender",
    "LocalTrainingConfig",
    "build_histories",
    "collate_histories",
    "dpsgd_release",
    "get_parameters",
    "gram_statistics",
    "popularity_statistics",
    "unit_history_rows",
    "init_parameters",
    "model_from_parameters",
    "score_customers",
    "segment_item_counts",
    "set_parameters",
    "train_local",
]
