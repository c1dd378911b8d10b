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
