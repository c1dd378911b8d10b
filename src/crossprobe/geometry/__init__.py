"""Condition geometry: whether models that place conditions (personas) alike in their
activations also behave alike under them."""
