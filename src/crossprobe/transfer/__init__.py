"""Transfer: a probe carried from a source model into a target through a linear map, scored by
what ablating it does to the target (the (source, target, dataset) cells, their tables and
figures)."""
