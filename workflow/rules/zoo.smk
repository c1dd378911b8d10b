# Tiny causal LMs trained locally (or real models fine-tuned, with `base`) and saved with
# save_pretrained, then loaded like hub models.


rule zoo:
    input:
        base=zoo_base_files,
    output:
        directory("results/zoo/{model}"),
    log:
        "results/logs/zoo/{model}.log",
    priority: 3
    resources:
        **job_resources("zoo"),
    params:
        zoo=lambda w: CFG.models[w.model].zoo,
        # The zoo holds out the run's `test` facts, so it follows the run's splits and the
        # group column each built-in family is split by.
        splits=CFG.splits,
        groups=zoo_split_groups,
        base=zoo_base_source,
    run:
        entry(rule, input, output, params, wildcards, threads, log)
