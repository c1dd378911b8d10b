# crossprobe: does a linear probe found in one language model mean the same thing in another?
# extract -> train -> generalise; rate -> regress (ridge on real-valued targets); align -> ablate ->
# correlate -> plot; steer (dose-response, within and across models); embed (text-only baselines,
# probed like a model); crosslabels (probes on each model's activations for every model's own
# labels); geometry (conditions' centroids against behaviour).  See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"


# Schema validation and every other check on the config, before any job is planned.
CFG = validated_config(config)
MAP_PATTERN = map_pattern()


include: "workflow/rules/zoo.smk"
include: "workflow/rules/stages.smk"
include: "workflow/rules/generalisation.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/preference.smk"
include: "workflow/rules/crosslabels.smk"
include: "workflow/rules/geometry.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
