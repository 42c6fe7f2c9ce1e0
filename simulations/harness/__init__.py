"""A fast research harness for federated DP k-means (merchants as numpy arrays)."""
