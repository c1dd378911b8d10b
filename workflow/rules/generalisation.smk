# Cross-dataset generalisation: train a probe on dataset A, test it on dataset B.
# The foundation (zoo, extract, train, generalise) has priority over the transfer stage, so the
# generalisation figures come out first.


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
        pdf="results/figures/generalization_{model}.pdf",
    log:
        "results/logs/generalise/{model}.log",
    priority: 2
    resources:
        **job_resources("generalise"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule generalisation_table:
    input:
        expand("results/tables/generalization/{model}.csv", model=CFG.probed),
    output:
        "results/tables/generalization.csv",
    log:
        "results/logs/generalise/table.log",
    priority: 2
    resources:
        **job_resources("generalisation_table"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
