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
