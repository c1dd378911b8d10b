# GGUF checkpoints dequantised once (transformers' GGUF loader) into save_pretrained folders
# that every later job loads like a local model.


rule convert:
    input:
        gguf=gguf_input,
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/convert/{model}.log",
    priority: 3
    resources:
        **job_resources("convert"),
    params:
        model=model_params,
    run:
        entry(rule, input, output, params, wildcards, threads, log)
