# Regression probes: ridge on each dataset's real-valued `targets`, per model and layer, and
# their held-one-dataset-out (and train-k/test-rest) evaluation. No model runs here.


rule regress:
    input:
        stores=lambda w: [store(w.model, d) for d in regression_targets(w.model)],
        datasets=lambda w: [
            f"results/datasets/{d}.parquet" for d in regression_targets(w.model)
        ],
        ratings=lambda w: [
            f"results/ratings/{w.model}/{d}.parquet"
            for d in CFG.rated
            if w.model in CFG.models
        ],
    output:
        probes=directory("results/regression/{model}"),
        table="results/tables/regression/{model}.csv",
        heldout="results/tables/heldout/{model}.csv",
    log:
        "results/logs/regression/{model}.log",
    resources:
        **job_resources("regress"),
    params:
        targets=lambda w: regression_targets(w.model),
        train_k=list(CFG.regression.train_k),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule regression_tables:
    input:
        tables=expand("results/tables/regression/{model}.csv", model=regressed()),
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
