# Cluster resources of every job (partition, GPUs, memory, time), sized at planning time from
# each model's config and each dataset's row count; site settings in profiles/slurm/cluster.yaml
# (or $CROSSPROBE_CLUSTER). Local runs ignore them. See crossprobe.resources.
from crossprobe.resources import (
    GPU_RULES,
    Sizer,
    load_cluster,
    slurm_resources,
)  # noqa: E402

_SIZER = {}


def _sizer():
    """One sizer per run, built on first use (after the config is validated)."""
    if "sizer" not in _SIZER:
        try:
            _SIZER["sizer"] = Sizer(CFG, load_cluster())
        except ConfigError as e:
            raise WorkflowError(f"crossprobe: {e}") from None
    return _SIZER["sizer"]


def job_resource(rule, key):
    """A resource callable: `key` of the request of `rule`'s job, scaled by the attempt."""

    def resource(wildcards, attempt):
        sizer = _sizer()
        try:
            job = sizer.resources(rule, dict(wildcards.items()), attempt)
        except ConfigError as e:
            raise WorkflowError(f"crossprobe: {e}") from None
        return slurm_resources(job, sizer.cluster)[key]

    return resource


CPU_KEYS = ("slurm_partition", "slurm_account", "mem_mb", "runtime")
GPU_KEYS = CPU_KEYS + ("gpu", "gpu_model")


def job_resources(rule):
    """Every resource of `rule`'s jobs, as keyword arguments of its `resources:` section."""
    keys = GPU_KEYS if rule in GPU_RULES else CPU_KEYS
    return {key: job_resource(rule, key) for key in keys}
