# Validation and input functions shared by every stage.
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from crossprobe.config import scoring_warnings, validate_config  # noqa: E402
from crossprobe.errors import ConfigError  # noqa: E402
from crossprobe.cluster.launch import Job, run_job  # noqa: E402
from crossprobe.cluster.server import in_batch_step, start_server  # noqa: E402
from crossprobe.cluster.planning import cache_signatures  # noqa: E402

# Snakemake inspects each input, params and resource function's signature once, not per job.
cache_signatures()

# In the Snakemake that runs a SLURM allocation's carried jobs as job steps: a job server that
# loads the target model once for all of them (crossprobe.cluster.server).
if in_batch_step():
    start_server()


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    source=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    target=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    dataset=r"[A-Za-z0-9][A-Za-z0-9._-]*",


def validated_config(config):
    """The typed run config; a clear error and no job at all if the config is wrong. A run that
    can score no off-diagonal cell is planned with a warning that names the key to change.
    """
    try:
        run = validate_config(config)
    except ConfigError as e:
        raise WorkflowError(f"crossprobe: {e}") from None
    if workflow.is_main_process:
        for warning in scoring_warnings(run):
            print(f"crossprobe: warning: {warning}", file=sys.stderr)
    return run


def entry(rule, input, output, params, wildcards, threads, log):
    """Every rule's `run:` block: the entry point named after the rule (crossprobe.entry), in a
    process forked from the run's preloaded forkserver when Snakemake schedules the job in its
    own threads (local runs), else in the process Snakemake started for the job (SLURM).
    """
    job = Job(rule, input, output, params, wildcards, threads, log)
    run_job(job, fork=workflow.is_main_process)


_PARAMS = {}


def _once(key, make):
    """A job's params built once per run and shared by its jobs (read, never changed)."""
    if key not in _PARAMS:
        _PARAMS[key] = make()
    return _PARAMS[key]


def model_params(wildcards, name=None):
    name = name or wildcards.model
    return _once(("model", name), lambda: asdict(CFG.models[name]))


def dataset_dict(spec):
    """A dataset's spec as the model jobs see it: without its regression `targets`, which only
    the regression rule reads (so declaring a target reruns no extraction or ablation).
    """
    d = asdict(spec)
    d.pop("targets")
    d.pop("rating")
    # A hub dataset's source is in its table's path (data/hub/<name>-<key>).
    d.pop("hub")
    return d


def rated_dataset_dict(spec):
    """A dataset's spec with its `rating` (for the jobs that prompt for ratings or steer)."""
    d = dataset_dict(spec)
    d["rating"] = None if spec.rating is None else dict(spec.rating)
    return d


def dataset_params(wildcards):
    name = wildcards.dataset
    return _once(("dataset", name), lambda: dataset_dict(CFG.datasets[name]))


def rated_dataset_params(wildcards):
    name = wildcards.dataset
    return _once(("rated", name), lambda: rated_dataset_dict(CFG.datasets[name]))


def regression_targets(model):
    """The regression targets of ``model``'s ridge probes, by dataset: every target for a model,
    and for a text baseline every target but `self_rating` (a baseline rates nothing itself).
    """
    if model in CFG.models:
        return {d: list(t) for d, t in CFG.targets.items()}
    out = {d: [x for x in t if x[0] != "self_rating"] for d, t in CFG.targets.items()}
    return {d: t for d, t in out.items() if t}


def ridge_ratings(model, datasets):
    """The model's own ratings of those of ``datasets`` that are rated (its `self_rating`
    target); none for a text baseline."""
    if model not in CFG.models:
        return []
    return [f"results/ratings/{model}/{d}.parquet" for d in datasets if d in CFG.rated]


def regressed():
    """The models and baselines that have regression probes."""
    return [m for m in CFG.probed if regression_targets(m)]


def names_pattern(names):
    """A wildcard constraint that matches exactly these names (nothing when there are none)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"


def model_files(name):
    """Files a model's jobs depend on: its zoo or converted GGUF folder, or nothing for
    hub and local models."""
    spec = CFG.models[name]
    if spec.is_zoo:
        return [f"results/zoo/{name}"]
    if spec.is_gguf:
        return [f"results/models/{name}"]
    return []


def gguf_input(wildcards):
    """The local GGUF file a conversion reads (none for a file in a hub repository)."""
    local = CFG.models[wildcards.model].local_gguf
    return [str(local)] if local is not None else []


def zoo_base_files(wildcards):
    """The folder of the model a zoo entry fine-tunes, if it has a `base`."""
    base = CFG.models[wildcards.model].base
    return model_files(base) if base else []


def zoo_base_source(wildcards):
    base = CFG.models[wildcards.model].base
    return CFG.models[base].source if base else None


def zoo_split_groups(wildcards):
    """The group column the run splits each family a zoo model trains on by: its dataset's, or
    the family's own (so adding a dataset that keeps the default changes nothing here).
    """
    from crossprobe.datasets import GROUP_COLUMN
    from crossprobe.zoo.spec import ZooSpec

    spec = CFG.models[wildcards.model]
    run = {d.builtin: d.group for d in CFG.datasets.values() if d.builtin is not None}
    families = ZooSpec.from_dict(spec.zoo).resolved_families()
    return {f: run.get(f, GROUP_COLUMN) for f in families}


def store(model, dataset):
    return f"results/activations/{model}/{dataset}.zarr"


def probes_file(model, dataset):
    return f"results/probes/{model}/{dataset}.safetensors"


def transfer_params(wildcards=None):
    """Options the ablation jobs depend on (bootstrap settings excluded: they rerun nothing)."""
    t = CFG.transfer
    return {
        "scope": t.scope,
        "positions": t.positions,
        "null_directions": t.null_directions,
        "matched_null_directions": t.matched_null_directions,
        "min_carried_length": t.min_carried_length,
        "seed": t.seed,
        "min_prompts": t.min_prompts,
        "allow_unscored": t.allow_unscored,
    }


def steering_params(wildcards=None):
    st = CFG.steering
    return {
        "alphas": list(st.alphas),
        "null_directions": st.null_directions,
        "prompts": st.prompts,
    }


def _ridge_folders(model, dataset):
    """The model's ridge probes on ``dataset``, for jobs that steer them (if it has targets)."""
    if dataset in CFG.targets:
        return {"regression": [f"results/regression/{model}/{dataset}"]}
    return {}


def map_pattern():
    """The path of the map that carries a cell's probes, with its wildcards (`{source}`,
    `{target}` and, with `align_on: each`, `{dataset}`)."""
    if CFG.transfer.align_on == "each":
        return "results/maps/{source}/{target}/{dataset}.safetensors"
    return "results/maps/{source}/{target}.safetensors"


def map_file(source, target, dataset):
    """The map that carries ``dataset``'s probes from ``source`` into ``target``."""
    return map_pattern().format(source=source, target=target, dataset=dataset)


def pair_align_set():
    """The datasets whose `align` rows fit a pair's one map (TransferOptions.pair_align_set)."""
    return list(CFG.transfer.pair_align_set(CFG.datasets))


def cell_maps():
    """Every map a cell uses, once each."""
    return list(
        dict.fromkeys(map_file(s, t, d) for s, t in CFG.pairs for d in CFG.datasets)
    )


def steer_self_input(w):
    return {
        "model": model_files(w.model),
        "dataset": f"results/datasets/{w.dataset}.parquet",
        "probes": probes_file(w.model, w.dataset),
        "store": store(w.model, w.dataset),
        **_ridge_folders(w.model, w.dataset),
    }


def steer_carried_input(w):
    return {
        "model": model_files(w.target),
        "dataset": f"results/datasets/{w.dataset}.parquet",
        "probes": probes_file(w.source, w.dataset),
        "store": store(w.target, w.dataset),
        "maps": map_file(w.source, w.target, w.dataset),
        **_ridge_folders(w.source, w.dataset),
    }


def correlate_params():
    return asdict(CFG.transfer)


def all_outputs():
    outputs = ["results/tables/generalization.csv"]
    outputs += [f"results/figures/generalization_{m}.png" for m in CFG.probed]
    outputs += [
        "results/tables/transfer.csv",
        "results/tables/transfer_matrix.csv",
        "results/tables/answers.csv",
        "results/figures/transfer_matrix.png",
        "results/figures/answers.png",
        "results/probebench",
    ]
    outputs += ["results/tables/similarity.csv", "results/figures/similarity.png"]
    if CFG.targets:
        outputs += ["results/tables/regression.csv", "results/tables/heldout.csv"]
        outputs += ["results/figures/regression.png"]
    if CFG.crosslabels.enabled:
        outputs += [
            "results/tables/crosslabels.csv",
            "results/tables/crosslabels_summary.csv",
            "results/figures/crosslabels.png",
        ]
    if CFG.steering.enabled:
        outputs += [
            "results/tables/steering.csv",
            "results/tables/steering_carried.csv",
            "results/figures/steering.png",
            "results/figures/steering_carried.png",
        ]
    outputs += geometry_outputs()
    return outputs


def geometry_params(model, questions):
    """What a geometry job of ``model`` depends on: the conditions, the questions it asks
    (``questions`` or ``probe_questions``) and the model's prompt format there."""
    g = CFG.geometry
    return {
        "conditions": [list(c) for c in g.conditions],
        "questions": list(getattr(g, questions)),
        "prompt_format": g.format_for(CFG.models[model]),
    }


def geometry_pairs():
    """Ordered (behaviour model, geometry model) pairs carried through the maps."""
    if not CFG.geometry.via_map:
        return []
    return [(s, t) for s, t in CFG.pairs if {s, t} <= set(CFG.geometry.models)]


def geometry_tables_input(wildcards):
    g = CFG.geometry
    inputs = {
        "stores": [f"results/geometry/{m}/activations.zarr" for m in g.models],
        "maps": [f"results/maps/{s}/{t}.safetensors" for s, t in geometry_pairs()],
    }
    if g.measured:
        inputs["behaviour"] = [
            f"results/geometry/{m}/behaviour.parquet" for m in g.models
        ]
    else:
        inputs["behaviour"] = [g.behaviour]
    return inputs


def geometry_outputs():
    if not CFG.geometry.enabled:
        return []
    return [
        "results/tables/geometry.csv",
        "results/tables/geometry_behaviour.csv",
        "results/tables/geometry_layers.csv",
        "results/figures/geometry.png",
        "results/figures/geometry_behaviour.png",
    ]


def dataset_input(wildcards):
    spec = CFG.datasets[wildcards.dataset]
    return [spec.path] if spec.path else []


def correlate_input(w):
    s, t, d = w.source, w.target, w.dataset
    inputs = {
        "source_store": store(s, d),
        "target_store": store(t, d),
        "source_probes": probes_file(s, d),
        "target_probes": probes_file(t, d),
        "source_effects": f"results/effects/{s}/{d}/self.parquet",
        "target_effects": f"results/effects/{t}/{d}/self.parquet",
    }
    if s != t:
        inputs["carried"] = f"results/effects/{t}/from_{s}/{d}.parquet"
        inputs["maps"] = map_file(s, t, d)
    return inputs


def baseline_params(name):
    b = CFG.baselines[name]
    own = b.run_model(CFG.models)
    if own is None:
        source = b.model
    elif model_files(own.name):
        source = model_files(own.name)[0]
    else:
        source = own.source
    return {
        "name": name,
        "source": source,
        "run_model": None if own is None else own.name,
        "batch_size": b.batch_size,
        "n_positions": len(CFG.layers),
    }


def similarity_input(wildcards):
    inputs = {
        "probes": [probes_file(m, d) for m in CFG.models for d in CFG.datasets],
        "maps": cell_maps(),
    }
    if CFG.targets:
        inputs["regression"] = [
            f"results/regression/{m}/{d}" for m in CFG.models for d in CFG.targets
        ]
    return inputs


def crosslabel_inputs(w):
    kinds = CFG.crosslabels.labels
    return {
        "stores": [store(m, w.dataset) for m in CFG.probed],
        "dataset": f"results/datasets/{w.dataset}.parquet",
        "answers": (
            [f"results/effects/{m}/{w.dataset}/answer.parquet" for m in CFG.models]
            if "margin" in kinds
            else []
        ),
        "ratings": (
            [f"results/ratings/{m}/{w.dataset}.parquet" for m in CFG.models]
            if "self_rating" in kinds and w.dataset in CFG.rated
            else []
        ),
    }
