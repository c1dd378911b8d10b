# Directional ablation: each model's own probes plus a random-direction null (once per model
# and dataset), and every source's probes carried into each target (once per cell: ordered pair
# and dataset, so that a new dataset adds its own cells and touches no other).


rule ablate_self:
    input:
        model=lambda w: model_files(w.model),
        dataset="results/datasets/{dataset}.parquet",
        probes="results/probes/{model}/{dataset}.safetensors",
    output:
        effects="results/effects/{model}/{dataset}/self.parquet",
        answer="results/effects/{model}/{dataset}/answer.parquet",
    log:
        "results/logs/ablate/{model}/{dataset}/self.log",
    resources:
        **job_resources("ablate_self"),
    params:
        model=model_params,
        dataset=dataset_params,
        transfer=transfer_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule ablate_carried:
    input:
        model=lambda w: model_files(w.target),
        dataset="results/datasets/{dataset}.parquet",
        probes="results/probes/{source}/{dataset}.safetensors",
        maps=MAP_PATTERN,
    output:
        "results/effects/{target}/from_{source}/{dataset}.parquet",
    log:
        "results/logs/ablate/{target}/from_{source}/{dataset}.log",
    group:
        "carried_{target}"
    resources:
        **job_resources("ablate_carried"),
    params:
        model=lambda w: model_params(w, w.target),
        dataset=dataset_params,
        transfer=transfer_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Each model's own answer on its test rows: the AUROC of its margin, beside its probes'.
rule answers_table:
    input:
        expand(
            "results/effects/{model}/{dataset}/answer.parquet",
            model=CFG.models,
            dataset=CFG.datasets,
        ),
    output:
        "results/tables/answers.csv",
    log:
        "results/logs/ablate/answers_table.log",
    resources:
        **job_resources("answers_table"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
