"""Fitting a model from posts and features: implicit ALS, the category profiles and prior,
and the hedging calibration."""
