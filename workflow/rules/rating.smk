# Self-rated targets: each model's expected rating of every row of a dataset with `rating`,
# from its own next-token distribution over the scale's digits (the regression target
# `self_rating`). Runs the model.


rule rate:
    input:
        model=lambda w: model_files(w.model),
        dataset="results/datasets/{dataset}.parquet",
    output:
        "results/ratings/{model}/{dataset}.parquet",
    log:
        "results/logs/rate/{model}/{dataset}.log",
    resources:
        **job_resources("rate"),
    params:
        model=model_params,
        dataset=lambda w: rated_dataset_dict(CFG.datasets[w.dataset]),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
