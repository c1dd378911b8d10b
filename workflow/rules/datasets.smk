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
