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
    group:
        "regression"
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
    group:
        "regression"
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
