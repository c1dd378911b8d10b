"""Jobs of the zoo: train a zoo model (or build its copy)."""

from __future__ import annotations

from typing import Any

from crossprobe.jobs import (
    log,
    timed,
    torch_threads,
)


def zoo(smk: Any) -> None:
    """Train (or initialise) a tiny causal LM and save it like a hub model."""
    with timed("imports"):
        from crossprobe.zoo.build import ZooSpec, train_zoo_model

        torch_threads()
    spec = ZooSpec.from_dict(smk.params.zoo)
    metrics = train_zoo_model(
        spec,
        smk.output[0],
        splits=smk.params.splits,
        groups=smk.params.groups,
        log=log.info,
        base_dir=smk.params.base,
    )
    log.info("metrics: %s", metrics)


JOBS = {"zoo": zoo}
MODEL_JOBS = frozenset({"zoo"})
