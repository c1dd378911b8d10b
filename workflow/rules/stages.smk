# Statement datasets with deterministic hash splits (train / align / test).


rule dataset:
    input:
        dataset_input,
    output:
        "results/datasets/{dataset}.parquet",
    log:
        "results/logs/dataset/{dataset}.log",
    resources:
        **job_resources("dataset"),
    params:
        dataset=dataset_params,
        splits=CFG.splits,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# GGUF checkpoints dequantised once (transformers' GGUF loader) into save_pretrained folders
# that every later job loads like a local model.


rule convert:
    input:
        gguf=gguf_input,
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/convert/{model}.log",
    priority: 3
    resources:
        **job_resources("convert"),
    params:
        model=model_params,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Residual-stream activations of every model on every dataset, cached as chunked Zarr stores.


rule extract:
    input:
        model=lambda w: model_files(w.model),
        dataset="results/datasets/{dataset}.parquet",
    output:
        directory("results/activations/{model}/{dataset}.zarr"),
    log:
        "results/logs/extract/{model}/{dataset}.log",
    wildcard_constraints:
        model=names_pattern(CFG.models),
    priority: 2
    resources:
        **job_resources("extract"),
    params:
        model=model_params,
        dataset=dataset_params,
        position=CFG.position,
        # Which positions the mean averages; the last token's read does not depend on it.
        positions=CFG.transfer.positions if CFG.position == "mean" else "all",
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Linear probes per model, dataset and layer.


rule train:
    input:
        "results/activations/{model}/{dataset}.zarr",
    output:
        probes="results/probes/{model}/{dataset}.safetensors",
        meta="results/probes/{model}/{dataset}.json",
    log:
        "results/logs/train/{model}/{dataset}.log",
    priority: 2
    resources:
        **job_resources("train"),
    params:
        probes=list(CFG.probes),
        logreg_c=CFG.logreg_c,
    run:
        entry(rule, input, output, params, wildcards, threads, log)
