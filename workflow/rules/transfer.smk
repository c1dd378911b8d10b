# Maps between every ordered pair of models, fit on `align` rows (transfer.align_on): one map per
# (source, target, dataset) on that dataset's own rows (`each`), or one per pair on the declared
# alignment set's rows pooled (also the map the geometry stages carry conditions through).


rule align:
    input:
        source=lambda w: [store(w.source, d) for d in pair_align_set()],
        target=lambda w: [store(w.target, d) for d in pair_align_set()],
    output:
        "results/maps/{source}/{target}.safetensors",
    log:
        "results/logs/align/{source}/{target}.log",
    resources:
        **job_resources("align"),
    params:
        method=CFG.transfer.map,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule align_dataset:
    input:
        source="results/activations/{source}/{dataset}.zarr",
        target="results/activations/{target}/{dataset}.zarr",
    output:
        "results/maps/{source}/{target}/{dataset}.safetensors",
    log:
        "results/logs/align/{source}/{target}/{dataset}.log",
    resources:
        **job_resources("align_dataset"),
    params:
        method=CFG.transfer.map,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


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


# Pearson_CE with bootstrap CIs, random-direction nulls, transfer AUROC and the cosine baseline,
# for every probe of one cell: an ordered (source, target) pair on one dataset.


rule correlate:
    input:
        unpack(correlate_input),
    output:
        cells="results/correlations/{source}/{target}/{dataset}.csv",
        null="results/correlations/{source}/{target}/{dataset}.null.csv",
        prompts="results/cells/{source}/{target}/{dataset}.parquet",
    log:
        "results/logs/correlate/{source}/{target}/{dataset}.log",
    resources:
        **job_resources("correlate"),
    params:
        transfer=correlate_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# Aggregate tables, the transfer matrix and its figures.

CELLS = expand(
    "results/correlations/{source}/{target}/{dataset}",
    source=CFG.models,
    target=CFG.models,
    dataset=CFG.datasets,
)


rule transfer_tables:
    input:
        cells=[f"{c}.csv" for c in CELLS],
        null=[f"{c}.null.csv" for c in CELLS],
        answers="results/tables/answers.csv",
    output:
        table="results/tables/transfer.csv",
        null="results/tables/transfer_null.csv",
        matrix="results/tables/transfer_matrix.csv",
        summary="results/tables/overstatement.json",
        probebench=directory("results/probebench"),
    log:
        "results/logs/plot/transfer_tables.log",
    resources:
        **job_resources("transfer_tables"),
    params:
        models=list(CFG.models),
        min_prompts=CFG.transfer.min_prompts,
        min_sources=CFG.transfer.min_sources,
        min_facts=CFG.transfer.min_facts,
        controls=CFG.controls,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule plot_transfer:
    input:
        table="results/tables/transfer.csv",
        matrix="results/tables/transfer_matrix.csv",
        null="results/tables/transfer_null.csv",
        answers="results/tables/answers.csv",
    output:
        matrix=report(
            "results/figures/transfer_matrix.png",
            caption="../report/transfer_matrix.rst",
            category="Transfer",
        ),
        profiles=report(
            "results/figures/transfer_profiles.png",
            caption="../report/transfer_profiles.rst",
            category="Transfer",
        ),
        scatter=report(
            "results/figures/cosine_vs_rho.png",
            caption="../report/cosine_vs_rho.rst",
            category="Transfer",
        ),
        null=report(
            "results/figures/null_distribution.png",
            caption="../report/null_distribution.rst",
            category="Transfer",
        ),
        answers=report(
            "results/figures/answers.png",
            caption="../report/answers.rst",
            category="Transfer",
        ),
        pdfs=expand(
            "results/figures/{figure}.pdf",
            figure=[
                "transfer_matrix",
                "transfer_profiles",
                "cosine_vs_rho",
                "null_distribution",
                "answers",
            ],
        ),
    log:
        "results/logs/plot/transfer.log",
    resources:
        **job_resources("plot_transfer"),
    params:
        models=list(CFG.models),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
