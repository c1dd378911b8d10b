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
        dataset=rated_dataset_params,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Regression probes: ridge on each dataset's real-valued `targets`, per model, dataset and layer
# (what the steering jobs steer, so that adding a dataset refits only its own), and their
# held-one-dataset-out (and train-k/test-rest) evaluation per model, an aggregate that reruns
# when any dataset with targets changes. No model runs here.


rule ridge:
    input:
        store=lambda w: store(w.model, w.dataset),
        dataset="results/datasets/{dataset}.parquet",
        ratings=lambda w: ridge_ratings(w.model, [w.dataset]),
    output:
        probes=directory("results/regression/{model}/{dataset}"),
        table="results/tables/regression/{model}/{dataset}.csv",
    log:
        "results/logs/regression/{model}/{dataset}.log",
    resources:
        **job_resources("ridge"),
    params:
        targets=lambda w: regression_targets(w.model)[w.dataset],
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule heldout:
    input:
        stores=lambda w: [store(w.model, d) for d in regression_targets(w.model)],
        datasets=lambda w: [
            f"results/datasets/{d}.parquet" for d in regression_targets(w.model)
        ],
        ratings=lambda w: ridge_ratings(w.model, regression_targets(w.model)),
    output:
        "results/tables/heldout/{model}.csv",
    log:
        "results/logs/regression/heldout/{model}.log",
    resources:
        **job_resources("heldout"),
    params:
        targets=lambda w: regression_targets(w.model),
        train_k=list(CFG.regression.train_k),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule regression_tables:
    input:
        tables=[
            f"results/tables/regression/{m}/{d}.csv"
            for m in regressed()
            for d in regression_targets(m)
        ],
        heldout=expand("results/tables/heldout/{model}.csv", model=regressed()),
    output:
        table="results/tables/regression.csv",
        heldout="results/tables/heldout.csv",
        figure=report(
            "results/figures/regression.png",
            caption="../report/regression.rst",
            category="Regression",
        ),
        pdf="results/figures/regression.pdf",
    log:
        "results/logs/regression/tables.log",
    resources:
        **job_resources("regression_tables"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Probe similarity: cosines between the probes of every pair of datasets within each model, and
# between each source probe carried through the maps and the target's own probes. No model runs.


rule similarity:
    input:
        unpack(similarity_input),
    output:
        within="results/tables/similarity.csv",
        across="results/tables/similarity_across.csv",
        figure=report(
            "results/figures/similarity.png",
            caption="../report/similarity.rst",
            category="Similarity",
        ),
        pdf="results/figures/similarity.pdf",
    log:
        "results/logs/similarity.log",
    resources:
        **job_resources("similarity"),
    params:
        models=list(CFG.models),
        pairs=CFG.pairs,
        datasets=list(CFG.datasets),
        map_files={
            f"{s}/{t}/{d}": map_file(s, t, d)
            for s, t in CFG.pairs
            for d in CFG.datasets
        },
    run:
        entry(rule, input, output, params, wildcards, threads, log)


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
        dataset=rated_dataset_params,
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
    resources:
        **job_resources("steer_carried"),
    params:
        model=lambda w: model_params(w, w.target),
        dataset=rated_dataset_params,
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
