# Cluster resources of every job (partition, GPUs, memory, time), sized at planning time from
# each model's config and each dataset's row count; site settings in profiles/slurm/cluster.yaml
# (or $CROSSPROBE_CLUSTER). Local runs ignore them. See crossprobe.resources.
from crossprobe.resources import (
    GPU_RULES,
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


def job_resources(rule):
    """Every resource of `rule`'s jobs, as keyword arguments of its `resources:` section: the
    partition and account as values (the same for every job of the rule), the rest as callables
    sized per job (each callable costs Snakemake a signature inspection per job when planning).
    """
    site = _sizer().cluster
    gpu = rule in GPU_RULES
    fixed = slurm_resources(JobResources(site.gpu_partition if gpu else site.cpu_partition,
                                         0, 0), site)  # fmt: skip
    static = {k: fixed[k] for k in ("slurm_partition", "slurm_account")}
    return {
        **static,
        **{key: job_resource(rule, key) for key in (GPU_KEYS if gpu else CPU_KEYS)},
    }


def carried_group(wildcards):
    """`carried_<target>`: every carried ablation and steering job of the target model in one
    allocation, which loads the model once (SLURM only: local runs ignore groups). A model that
    needs several GPUs is left out: its jobs keep one allocation each."""
    if _sizer().gpus(wildcards.target).count > 1:
        return None
    return f"carried_{wildcards.target}"


def group_carried_jobs(models):
    """Let each target's carried group span all its (otherwise unconnected) jobs."""
    if workflow.is_main_process:
        settings = workflow.group_settings
        for m in models:
            if f"carried_{m}" not in settings.group_components:
                settings.group_components = settings.group_components.set(
                    f"carried_{m}", 10**6
                )
