# Pearson_CE with bootstrap CIs, random-direction nulls, transfer AUROC and the cosine baseline,
# for every probe of one ordered (source, target) pair.


def correlate_input(w):
    inputs = {
        "source_stores": [store(w.source, d) for d in CFG.datasets],
        "target_stores": [store(w.target, d) for d in CFG.datasets],
        "source_probes": [probes_file(w.source, d) for d in CFG.datasets],
        "target_probes": [probes_file(w.target, d) for d in CFG.datasets],
        "source_effects": [f"results/effects/{w.source}/{d}/self.parquet" for d in CFG.datasets],
        "target_effects": [f"results/effects/{w.target}/{d}/self.parquet" for d in CFG.datasets],
    }
    if w.source != w.target:
        inputs["carried"] = f"results/effects/{w.target}/from_{w.source}.parquet"
        inputs["maps"] = f"results/maps/{w.source}/{w.target}.safetensors"
    return inputs


rule correlate:
    input:
        unpack(correlate_input),
    output:
        cells="results/correlations/{source}/{target}.csv",
        null="results/correlations/{source}/{target}.null.csv",
        prompts="results/effects/cells/{source}/{target}.parquet",
    params:
        datasets=list(CFG.datasets),
        transfer=lambda w: correlate_params(),
        n_models=len(CFG.models),
    log:
        "results/logs/correlate/{source}/{target}.log",
    conda:
        CONDA_ENV
    script:
        ENTRY
