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
    group:
        "tables"
    resources:
        **job_resources("correlate"),
    params:
        transfer=correlate_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
