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
