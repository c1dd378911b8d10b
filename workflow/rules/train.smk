# Linear probes per model, dataset and layer.


rule train:
    input:
        "results/activations/{model}/{dataset}.zarr",
    output:
        probes="results/probes/{model}/{dataset}.safetensors",
        meta="results/probes/{model}/{dataset}.json",
    log:
        "results/logs/train/{model}/{dataset}.log",
    priority: 2
    resources:
        **job_resources("train"),
    params:
        probes=list(CFG.probes),
        logreg_c=CFG.logreg_c,
    run:
        entry(rule, input, output, params, wildcards, threads, log)
