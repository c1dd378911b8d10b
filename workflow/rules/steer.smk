# Steering dose-response: each model's own probes and random directions added at their layer
# (once per model and dataset), every source's probes carried into each target (once per cell:
# ordered pair and dataset, like the carried ablations), and the tables.


rule steer_self:
    input:
        unpack(steer_self_input),
    output:
        "results/steering/{model}/{dataset}/self.parquet",
    log:
        "results/logs/steer/{model}/{dataset}/self.log",
    resources:
        **job_resources("steer_self"),
    params:
        model=model_params,
        dataset=lambda w: rated_dataset_dict(CFG.datasets[w.dataset]),
        transfer=transfer_params(),
        steering=steering_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule steer_carried:
    input:
        unpack(steer_carried_input),
    output:
        "results/steering/{target}/from_{source}/{dataset}.parquet",
    log:
        "results/logs/steer/{target}/from_{source}/{dataset}.log",
    group:
        "carried_{target}"
    resources:
        **job_resources("steer_carried"),
    params:
        model=lambda w: model_params(w, w.target),
        dataset=lambda w: rated_dataset_dict(CFG.datasets[w.dataset]),
        transfer=transfer_params(),
        steering=steering_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule steering_tables:
    input:
        own=expand(
            "results/steering/{model}/{dataset}/self.parquet",
            model=CFG.models,
            dataset=CFG.datasets,
        ),
        carried=[
            f"results/steering/{t}/from_{s}/{d}.parquet"
            for s, t in CFG.pairs
            for d in CFG.datasets
        ],
        transfer="results/tables/transfer.csv",
    output:
        slopes="results/tables/steering.csv",
        curves="results/tables/steering_curves.csv",
        carried="results/tables/steering_carried.csv",
        figure=report(
            "results/figures/steering.png",
            caption="../report/steering.rst",
            category="Steering",
        ),
        pdf="results/figures/steering.pdf",
        carried_figure=report(
            "results/figures/steering_carried.png",
            caption="../report/steering_carried.rst",
            category="Steering",
        ),
        carried_pdf="results/figures/steering_carried.pdf",
    log:
        "results/logs/steer/tables.log",
    resources:
        **job_resources("steering_tables"),
    params:
        bootstrap=CFG.transfer.bootstrap,
        ci=CFG.transfer.ci,
        seed=CFG.transfer.seed,
    run:
        entry(rule, input, output, params, wildcards, threads, log)
