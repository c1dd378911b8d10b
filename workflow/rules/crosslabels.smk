# Text-only baselines: each dataset's statements embedded by a sentence-embedding model and
# stored like activations (one layer, 0), so that train, generalise, regress and crosslabels
# probe a baseline as they probe a model. Runs the embedding model (on CPU).


rule embed:
    input:
        dataset="results/datasets/{dataset}.parquet",
        model=lambda w: (
            model_files(CFG.baselines[w.model].model)
            if CFG.baselines[w.model].run_model(CFG.models)
            else []
        ),
    output:
        directory("results/activations/{model}/{dataset}.zarr"),
    log:
        "results/logs/embed/{model}/{dataset}.log",
    wildcard_constraints:
        model=names_pattern(CFG.baselines),
    priority: 2
    resources:
        **job_resources("embed"),
    params:
        baseline=lambda w: baseline_params(w.model),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# AB against AA: ridge probes on every model's (and text baseline's) activations for every
# model's own labels (its answer margins; its self-ratings on rated datasets), paired by row
# hash and scored out of fold on the `test` rows; one job per dataset (a new model's labels
# change every row of it). No model runs here.


rule crosslabels:
    input:
        unpack(crosslabel_inputs),
    output:
        "results/crosslabels/{dataset}.csv",
    log:
        "results/logs/crosslabels/{dataset}.log",
    resources:
        **job_resources("crosslabels"),
    params:
        folds=CFG.crosslabels.folds,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule crosslabels_table:
    input:
        expand("results/crosslabels/{dataset}.csv", dataset=CFG.datasets),
    output:
        table="results/tables/crosslabels.csv",
        summary="results/tables/crosslabels_summary.csv",
        figure=report(
            "results/figures/crosslabels.png",
            caption="../report/crosslabels.rst",
            category="AB against AA",
        ),
        pdf="results/figures/crosslabels.pdf",
    log:
        "results/logs/crosslabels/table.log",
    resources:
        **job_resources("crosslabels_table"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
