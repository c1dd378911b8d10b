# Tiny causal LMs trained locally and saved with save_pretrained, then loaded like hub models.


rule zoo:
    output:
        directory("results/zoo/{model}"),
    log:
        "results/logs/zoo/{model}.log",
    priority: 3
    conda:
        CONDA_ENV
    resources:
        **job_resources("zoo"),
    params:
        zoo=lambda w: CFG.models[w.model].zoo,
    script:
        ENTRY
