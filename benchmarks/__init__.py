"""Benchmarks of the hashtag recommender (not part of the library); see README.md."""
