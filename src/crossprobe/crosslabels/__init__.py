"""AB against AA: a model's probe scored against another model's labels, beside text baselines
that know only the wording (sentence embeddings)."""
