# Condition geometry against behaviour: each model's last-token activations under every
# (condition, question) prompt (geometry_extract), its measured behaviour from its own logits on
# the probe questions (geometry_behaviour), and the cosines, correlations and figures
# (geometry_tables). The first two run the model. See docs/definitions.md, "Condition geometry".


rule geometry_extract:
    input:
        model=lambda w: model_files(w.model),
    output:
        directory("results/geometry/{model}/activations.zarr"),
    log:
        "results/logs/geometry/{model}/extract.log",
    resources:
        **job_resources("geometry_extract"),
    params:
        model=model_params,
        geometry=lambda w: geometry_params(w.model, "questions"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule geometry_behaviour:
    input:
        model=lambda w: model_files(w.model),
    output:
        "results/geometry/{model}/behaviour.parquet",
    log:
        "results/logs/geometry/{model}/behaviour.log",
    resources:
        **job_resources("geometry_behaviour"),
    params:
        model=model_params,
        geometry=lambda w: geometry_params(w.model, "probe_questions"),
    run:
        entry(rule, input, output, params, wildcards, threads, log)


rule geometry_tables:
    input:
        unpack(geometry_tables_input),
    output:
        geometry="results/tables/geometry.csv",
        table="results/tables/geometry_behaviour.csv",
        layers="results/tables/geometry_layers.csv",
        behaviour="results/tables/geometry_behaviour_values.csv",
        figure=report(
            "results/figures/geometry.png",
            caption="../report/geometry.rst",
            category="Condition geometry",
        ),
        pdf="results/figures/geometry.pdf",
        scatter=report(
            "results/figures/geometry_behaviour.png",
            caption="../report/geometry_behaviour.rst",
            category="Condition geometry",
        ),
        scatter_pdf="results/figures/geometry_behaviour.pdf",
    log:
        "results/logs/geometry/tables.log",
    resources:
        **job_resources("geometry_tables"),
    params:
        models=list(CFG.geometry.models),
        names=CFG.geometry.names,
        behaviour=CFG.geometry.behaviour,
        behaviour_model=CFG.geometry.behaviour_model,
        pairs=geometry_pairs(),
        figure_layer=CFG.geometry.figure_layer,
    run:
        entry(rule, input, output, params, wildcards, threads, log)


# `snakemake geometry`: the study's outputs alone (with via_map false, no dataset is touched).
rule geometry:
    input:
        geometry_outputs(),
