"""Server halves of the recommender: they see only sums of client releases."""
