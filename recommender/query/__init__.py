"""Serving: the recommender, neighbour search, the scoring methods, category hedging and
hashtag breadth."""
