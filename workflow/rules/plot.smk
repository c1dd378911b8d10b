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
