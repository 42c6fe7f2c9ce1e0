"""Data sets: the synthetic e-commerce generator, Gaussian mixtures, CDNOW and MovieLens, and federations on disk."""
