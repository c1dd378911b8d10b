# Pearson_CE with bootstrap CIs, random-direction nulls, transfer AUROC and the cosine baseline.


def correlate_input(w):
    inputs = {
        "source_store": store(w.source, w.dataset),
        "target_store": store(w.target, w.dataset),
        "source_probes": probes_file(w.source, w.dataset),
        "target_probes": probes_file(w.target, w.dataset),
        "source_effects": f"results/effects/{w.source}/{w.dataset}/self.parquet",
        "target_effects": f"results/effects/{w.target}/{w.dataset}/self.parquet",
    }
    if w.source != w.target:
        inputs["carried"] = f"results/effects/{w.target}/{w.dataset}/from_{w.source}.parquet"
        inputs["maps"] = f"results/maps/{w.source}/{w.target}.safetensors"
    return inputs


rule correlate:
    input:
        unpack(correlate_input),
    output:
        cells="results/correlations/{source}/{target}/{dataset}.csv",
        null="results/correlations/{source}/{target}/{dataset}.null.csv",
        prompts="results/effects/cells/{source}/{target}/{dataset}.parquet",
    params:
        transfer=lambda w: correlate_params(),
        n_models=len(CFG.models),
    log:
        "results/logs/correlate/{source}/{target}/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        ENTRY
