"""Is a generated pair set fit to train on: per-image pair statistics and the Great Expectations suite."""
