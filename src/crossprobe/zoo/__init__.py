"""The zoo: small models trained and copied locally (exact and perturbed copies), the models
the known-answer tests and the default run use."""
