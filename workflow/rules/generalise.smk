# Cross-dataset generalisation: train a probe on dataset A, test it on dataset B.


rule generalise:
    input:
        stores=lambda w: [store(w.model, d) for d in CFG.datasets],
        probes=lambda w: [probes_file(w.model, d) for d in CFG.datasets],
    output:
        table="results/tables/generalization/{model}.csv",
        figure=report(
            "results/figures/generalization_{model}.png",
            caption="../report/generalization.rst",
            category="Generalisation",
            labels={"model": "{model}"},
        ),
    log:
        "results/logs/generalise/{model}.log",
    conda:
        CONDA_ENV
    resources:
        **job_resources("generalise"),
    script:
        ENTRY


rule generalisation_table:
    input:
        expand("results/tables/generalization/{model}.csv", model=CFG.models),
    output:
        "results/tables/generalization.csv",
    log:
        "results/logs/generalise/table.log",
    conda:
        CONDA_ENV
    resources:
        **job_resources("generalisation_table"),
    script:
        ENTRY
