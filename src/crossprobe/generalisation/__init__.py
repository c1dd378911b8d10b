"""Generalisation: a probe trained on one dataset, scored on every dataset of the same model."""
