"""Data: synthetic ground truth and activation shards."""
