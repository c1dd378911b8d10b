# Statement datasets with deterministic hash splits (train / align / test).


def dataset_input(wildcards):
    spec = CFG.datasets[wildcards.dataset]
    return [spec.path] if spec.path else []


rule dataset:
    input:
        dataset_input,
    output:
        "results/datasets/{dataset}.parquet",
    params:
        dataset=dataset_params,
        splits=CFG.splits,
    log:
        "results/logs/dataset/{dataset}.log",
    conda:
        CONDA_ENV
    script:
        ENTRY
