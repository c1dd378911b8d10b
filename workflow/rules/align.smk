# Maps between every ordered pair of models, fit on the align split pooled over datasets.


rule align:
    input:
        source=lambda w: [store(w.source, d) for d in CFG.datasets],
        target=lambda w: [store(w.target, d) for d in CFG.datasets],
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
