"""Config validation: every bad input stops the run with a message naming the key and the fix."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from crossprobe.config import load_schema, scoring_warnings, validate_config
from crossprobe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def check(cfg, *fragments):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    for f in fragments:
        assert f in str(e.value), str(e.value)
    return str(e.value)


def test_default_config_is_valid(default):
    run = validate_config(default)
    assert set(run.models) == {"zoo-llama", "zoo-gpt2", "zoo-qwen3", "zoo-gpt2-word", "zoo-random"}
    # The untrained model is a control; the four trained ones give every trained target the
    # three non-control sources that transfer.min_sources asks for.
    assert run.controls == ["zoo-random"]
    assert scoring_warnings(run) == []
    assert len(run.datasets) >= 3
    answers = {d.answers for d in run.datasets.values()}
    assert len(answers) >= 2  # both answer vocabularies
    assert run.transfer.bootstrap == 1000 and run.transfer.min_prompts == 200
    assert len(run.pairs) == 20
    assert run.models["zoo-llama"].source == "results/zoo/zoo-llama"


def test_schema_gives_every_key_a_description_and_default():
    schema = load_schema()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}.{key} lacks a description"
            walk(sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*")

    walk(schema, "")
    for key, sub in schema["properties"].items():
        assert "default" in sub, f"{key} lacks a default"


def test_unknown_key_names_it(default):
    default["bootstrapp"] = 10
    check(default, "bootstrapp", "Allowed keys")
    cfg = copy.deepcopy(default)
    cfg.pop("bootstrapp")
    cfg["transfer"]["bootstrp"] = 10
    check(cfg, "transfer", "bootstrp")


def test_wrong_type_names_the_key(default):
    default["transfer"]["bootstrap"] = "many"
    check(default, "transfer.bootstrap")


@pytest.mark.parametrize("name", ["../x", "a/b", "has space", "", ".hidden"])
def test_unsafe_model_names_are_refused(default, name):
    default["models"][name] = {"zoo": {"arch": "llama", "tokenizer": "word"}}
    check(default, "not allowed")


def test_unsafe_dataset_name_is_refused(default):
    default["datasets"]["a/b"] = {"builtin": "parity"}
    check(default, "'a/b'", "not allowed")


def test_model_needs_exactly_one_source(default):
    default["models"]["x"] = {"path": "org/name", "zoo": {"arch": "llama", "tokenizer": "word"}}
    check(default, "models.x", "exactly one of `path`")


def test_model_path_neither_dir_nor_hub_id(default):
    default["models"]["x"] = {"path": "./not/a/dir"}
    check(default, "models.x.path", "neither an existing directory nor a hub id")


def test_model_dir_without_config_or_tokenizer(default, tmp_path):
    (tmp_path / "m").mkdir()
    default["models"]["x"] = {"path": str(tmp_path / "m")}
    check(default, "models.x.path", "config.json", "tokenizer files")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    check(default, "tokenizer files")


def test_hub_id_shape_is_accepted(default):
    default["models"]["qwen"] = {"path": "Qwen/Qwen3-0.6B", "revision": "main"}
    assert validate_config(default).models["qwen"].revision == "main"


def test_unknown_builtin_family_lists_known_ones(default):
    default["datasets"]["x"] = {"builtin": "nonsense"}
    check(default, "datasets.x.builtin", "larger_than")


def test_missing_dataset_file(default):
    default["datasets"]["x"] = {"path": "no/such/file.csv"}
    check(default, "datasets.x.path", "does not exist")


def test_template_without_placeholder(default):
    default["datasets"]["parity"]["template"] = "Is it true? Answer:"
    check(default, "datasets.parity.template", "{statement}")


def test_answers_must_differ(default):
    default["datasets"]["parity"]["answers"] = [" Yes", " Yes"]
    check(default, "datasets.parity.answers")


def test_splits_must_sum_to_one(default):
    default["splits"] = {"train": 0.5, "align": 0.2, "test": 0.2}
    check(default, "splits", "sum to 1")


def test_layer_lists_must_pair(default):
    default["models"]["zoo-llama"]["layers"] = [0, 1]
    check(default, "models.zoo-llama.layers", "paired across models")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("probes", ["dim", "svm"], "probes.1"),
        ("position", "first", "position"),
        ("layers", [1.5], "layers.0"),
    ],
)
def test_unknown_choices(default, key, value, fragment):
    default[key] = value
    check(default, fragment)


@pytest.mark.parametrize(
    ("key", "value"),
    [("map", "cca"), ("scope", "everywhere"), ("bootstrap", 5), ("ci", 1.5), ("ci", 0.3)],
)
def test_transfer_options_out_of_range(default, key, value):
    default["transfer"][key] = value
    check(default, f"transfer.{key}")


def test_zoo_spec_errors_name_the_model(default):
    default["models"]["zoo-llama"]["zoo"]["arch"] = "mamba"
    check(default, "models.zoo-llama.zoo")


def _with_fine_tune(default, base):
    cfg = copy.deepcopy(default)
    cfg["models"]["tuned"] = {"zoo": {"base": base, "steps": 5, "families": ["parity"]}}
    return cfg


def test_fine_tune_base_must_be_a_model_of_the_run(default):
    run = validate_config(_with_fine_tune(default, "zoo-llama"))
    assert run.models["tuned"].base == "zoo-llama"
    check(_with_fine_tune(default, "nope"), "models.tuned.zoo.base: 'nope' is not a model")
    cfg = _with_fine_tune(default, "tuned")
    check(cfg, "models.tuned.zoo.base", "circle", "tuned -> tuned")


def test_fine_tune_layers_are_checked_against_its_base(default):
    cfg = _with_fine_tune(default, "zoo-llama")
    cfg["models"]["tuned"]["layers"] = [0, 1, 7]
    check(cfg, "models.tuned.layers", "out of range")


def test_controls_and_the_scoring_warning(default):
    """With one trained model fewer than the default run, no trained target has three
    non-control sources: the plan warns, naming the key; with two fewer, no cell at all."""
    cfg = copy.deepcopy(default)
    del cfg["models"]["zoo-gpt2-word"]
    run = validate_config(cfg)
    (warning,) = scoring_warnings(run)  # into the control, three trained sources still count
    assert warning.startswith("only cells into the controls")
    assert "transfer.min_sources=3" in warning and "zoo-random" in warning
    del cfg["models"]["zoo-llama"]
    run = validate_config(cfg)
    assert "at most 2 source model(s)" in scoring_warnings(run)[0]
    cfg["models"]["zoo-random"]["control"] = False
    run = validate_config(cfg)
    assert run.controls == [] and "at most 2" in scoring_warnings(run)[0]
    cfg["transfer"]["min_sources"] = 2
    assert scoring_warnings(validate_config(cfg)) == []
    cfg["models"]["zoo-qwen3"]["control"] = True
    assert validate_config(cfg).controls == ["zoo-qwen3"]


def test_group_column_of_a_file_is_checked(default, tmp_path):
    import pandas as pd

    df = pd.DataFrame(
        {
            "statement": [f"Item {i} is {'red' if i % 2 else 'blue'}." for i in range(2000)],
            "label": [i % 2 for i in range(2000)],
            "item": [i // 2 for i in range(2000)],
        }
    )
    path = tmp_path / "items.csv"
    df.to_csv(path, index=False)
    cfg = copy.deepcopy(default)
    cfg["datasets"] = {"items": {"path": str(path), "group": "item"}}
    cfg["transfer"]["align_on"] = "each"  # the default config's alignment set names its datasets
    run = validate_config(cfg)
    assert run.datasets["items"].group == "item"
    assert validate_config(default).datasets["parity"].group == "group"  # the family's own
    cfg["datasets"]["items"]["group"] = "colour"
    check(cfg, "datasets.items.group", "'colour'")
    df.loc[3, "item"] = None
    df.to_csv(path, index=False)
    cfg["datasets"]["items"]["group"] = "item"
    check(cfg, "datasets.items.group", "empty")


def test_steering_doses_need_the_zero_dose(default):
    default["steering"] = {"alphas": [-1.0, 1.0]}
    check(default, "steering.alphas", "add 0.0")
    default["steering"] = {"alphas": [0.0]}
    check(default, "steering.alphas")
    default["steering"] = {"alphas": [0.0, 1.0], "prompts": 10}
    run = validate_config(default)
    assert run.steering.alphas == (0.0, 1.0) and run.steering.prompts == 10


def test_self_rating_adds_a_target_and_its_digits_are_checked_per_model(default):
    # The word-level zoo tokenizers have no digit tokens; a byte-level BPE has every digit.
    default["datasets"]["parity"]["rating"] = {}
    msg = check(default, "models.zoo-llama on datasets.parity.rating", "not single tokens")
    assert "zoo-gpt2 on" not in msg and "zoo-qwen3 on" not in msg  # BPE zoo models pass
    for name in ("zoo-llama", "zoo-gpt2-word", "zoo-random"):
        del default["models"][name]
    default["transfer"]["min_sources"] = 1
    run = validate_config(default)
    assert run.rated == ["parity"]
    assert run.targets["parity"] == (("number", "n"), ("self_rating", "self_rating"))
    assert run.datasets["parity"].rating_spec.values == tuple(range(1, 10))
    default["datasets"]["parity"]["rating"] = {"low": 5, "high": 3}
    check(default, "datasets.parity.rating", "low < high")
    default["datasets"]["parity"]["rating"] = {"template": "Rate it:"}
    check(default, "datasets.parity.rating", "{statement}")
    default["datasets"]["parity"]["rating"] = {}
    default["datasets"]["parity"]["targets"] = {"self_rating": "n"}
    check(default, "datasets.parity.targets", "the rating's own target")


def test_alignment_set_names_datasets_of_the_run(default):
    run = validate_config(default)
    assert run.transfer.align_on == ("larger_than", "parity", "membership")
    assert run.transfer.align_set("parity") == ("larger_than", "parity", "membership")
    assert run.transfer.pair_align_set(["larger_than"]) == ("larger_than", "parity", "membership")
    cfg = copy.deepcopy(default)
    cfg["transfer"]["align_on"] = ["larger_than", "cities"]
    check(cfg, "transfer.align_on", "['cities']", "`each`")
    cfg["transfer"]["align_on"] = "all"
    check(cfg, "transfer.align_on")
    cfg["transfer"]["align_on"] = "each"
    run = validate_config(cfg)
    assert run.transfer.align_on == "each" and run.transfer.align_set("parity") == ("parity",)
    # a pair's one map (the geometry stages') pools every dataset of the run
    assert run.transfer.pair_align_set(run.datasets) == tuple(run.datasets)
