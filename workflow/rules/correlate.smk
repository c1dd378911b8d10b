# Pearson_CE with bootstrap CIs, random-direction nulls, transfer AUROC and the cosine baseline,
# for every probe of one ordered (source, target) pair.


rule correlate:
    input:
        unpack(correlate_input),
    output:
        cells="results/correlations/{source}/{target}.csv",
        null="results/correlations/{source}/{target}.null.csv",
        prompts="results/effects/cells/{source}/{target}.parquet",
    log:
        "results/logs/correlate/{source}/{target}.log",
    resources:
        **job_resources("correlate"),
    params:
        datasets=list(CFG.datasets),
        transfer=lambda w: correlate_params(),
    run:
        entry(rule, input, output, params, wildcards, threads, log)
