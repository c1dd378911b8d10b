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
