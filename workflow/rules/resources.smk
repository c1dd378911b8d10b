# Cluster resources of every job (partition, GPUs, memory, time), sized at planning time from
# each model's config and each dataset's row count; site settings in profiles/slurm/cluster.yaml
# (or $CROSSPROBE_CLUSTER). Local runs ignore them. See crossprobe.cluster.resources.
from crossprobe.cluster.resources import (
    GPU_RULES,
    GROUPED_RULES,
    JobResources,
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
        if workflow.is_main_process:
            for warning in _SIZER["sizer"].align_warnings():
                print(f"crossprobe: warning: {warning}", file=sys.stderr)
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


CPU_KEYS = ("mem_mb", "runtime")
GPU_KEYS = CPU_KEYS + ("gpu", "gpu_model")


def job_resources(name):
    """Every resource of the jobs of `name`, as keyword arguments of its resources section:
    the partition and account as values (the same for every job), the rest as callables sized
    per job (each callable costs Snakemake a signature inspection per job when planning).
    """
    site = _sizer().cluster
    gpu = name in GPU_RULES
    fixed = slurm_resources(JobResources(site.gpu_partition if gpu else site.cpu_partition,
                                         0, 0), site)  # fmt: skip
    static = {k: fixed[k] for k in ("slurm_partition", "slurm_account")}
    if name in GROUPED_RULES:
        static["group_slot"] = 1
    return {
        **static,
        **{key: job_resource(name, key) for key in (GPU_KEYS if gpu else CPU_KEYS)},
    }
