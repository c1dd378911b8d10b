# Directional ablation: each model's own probes plus a random-direction null (once per model
# and dataset), and every source's probes carried into each target.


rule ablate_self:
    input:
        model=lambda w: model_files(w.model),
        dataset="results/datasets/{dataset}.parquet",
        probes="results/probes/{model}/{dataset}.safetensors",
    output:
        "results/effects/{model}/{dataset}/self.parquet",
    params:
        model=model_params,
        dataset=dataset_params,
        transfer=transfer_params,
    log:
        "results/logs/ablate/{model}/{dataset}/self.log",
    conda:
        CONDA_ENV
    script:
        ENTRY


rule ablate_carried:
    input:
        model=lambda w: model_files(w.target),
        dataset="results/datasets/{dataset}.parquet",
        probes="results/probes/{source}/{dataset}.safetensors",
        maps="results/maps/{source}/{target}.safetensors",
    output:
        "results/effects/{target}/{dataset}/from_{source}.parquet",
    params:
        model=lambda w: model_params(w, w.target),
        dataset=dataset_params,
        transfer=transfer_params,
    log:
        "results/logs/ablate/{target}/{dataset}/from_{source}.log",
    conda:
        CONDA_ENV
    script:
        ENTRY
