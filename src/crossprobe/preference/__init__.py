"""The preference study: a model's ratings of statements, ridge probes that read them
(in-distribution and held-one-dataset-out), their similarity across models, and steering along
them (own and carried)."""
