"""Cluster sizing: parameter counts from configs, GPU choice, scaling and site settings."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import yaml

from crossprobe.cluster.resources import (
    BUILTIN_ROWS,
    DEFAULT_CLUSTER,
    GPU_RULES,
    GROUPED_RULES,
    Cluster,
    GpuType,
    Sizer,
    cluster_from_dict,
    dataset_rows,
    device_map,
    load_cluster,
    model_footprint,
    params_from_config,
    pick_gpus,
    slurm_resources,
)
from crossprobe.cluster.server import SERVED_RULES
from crossprobe.config import DatasetSpec, ModelSpec, RunConfig, TransferOptions
from crossprobe.errors import ConfigError

LLAMA3_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
QWEN3_06B = {
    "model_type": "qwen3",
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}
GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257}
LLAMA3_70B = {
    **LLAMA3_8B,
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "intermediate_size": 28672,
}

SITE = Cluster(
    cpu_partition="cpu",
    gpu_partition="gpu",
    account=None,
    gpus=(GpuType("h100", 80, 8), GpuType("h200", 141, 8)),
)


@pytest.mark.parametrize(
    ("cfg", "published"),
    [(LLAMA3_8B, 8.03e9), (QWEN3_06B, 0.596e9), (GPT2, 124.4e6), (LLAMA3_70B, 70.6e9)],
)
def test_parameter_counts_match_published_sizes(cfg, published):
    n, *_ = params_from_config(cfg)
    assert n == pytest.approx(published, rel=0.02)


def test_multimodal_configs_use_their_text_config():
    n, layers, d, _ = params_from_config({"model_type": "x", "text_config": LLAMA3_8B})
    assert (layers, d) == (32, 4096)
    assert n == pytest.approx(8.03e9, rel=0.02)


@pytest.mark.parametrize(
    ("need_gb", "want"),
    [
        (10, ("h100", 1)),
        (72, ("h100", 1)),
        (73, ("h200", 1)),
        (126, ("h200", 1)),
        (150, ("h100", 3)),
    ],
)
def test_gpu_choice_by_memory(need_gb, want):
    got = pick_gpus(need_gb, SITE)
    assert (got.model, got.count) == want
    assert got.device_map == ("auto" if want[1] > 1 else None)
    assert device_map(want[1]) == got.device_map


def test_too_large_for_one_node_names_the_fix():
    with pytest.raises(ConfigError, match="cluster.yaml"):
        pick_gpus(5000, SITE)


def _local_model(tmp_path, name, cfg):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return ModelSpec(name=name, path=str(d), zoo=None, dtype="bfloat16", layers=(0.0, 1.0))


def _run(models, datasets=None):
    datasets = datasets or {"ds": DatasetSpec("ds", "parity", None, "{statement}", (" a", " b"))}
    return RunConfig(
        models={m.name: m for m in models},
        datasets=datasets,
        layers=(0.0, 1.0),
        position="last",
        probes=("dim", "logreg"),
        logreg_c=1.0,
        splits={"train": 0.5, "align": 0.2, "test": 0.3},
        transfer=TransferOptions(),
    )


def test_models_are_sized_from_config_json_only(tmp_path):
    small = _local_model(tmp_path, "small", LLAMA3_8B)
    big = _local_model(tmp_path, "big", LLAMA3_70B)
    sizer = Sizer(_run([small, big]), SITE)
    assert (sizer.gpus("small").model, sizer.gpus("small").count) == ("h100", 1)
    assert sizer.gpus("big").count > 1
    wc = {"model": "small", "dataset": "ds"}
    extract = sizer.resources("extract", wc)
    assert extract.partition == "gpu" and extract.gpu is not None
    assert sizer.resources("train", wc).partition == "cpu"
    assert sizer.resources("train", wc).gpu is None
    # bigger models ask for more host memory and time
    wb = {"model": "big", "dataset": "ds"}
    assert sizer.resources("ablate_self", wb).runtime >= sizer.resources("ablate_self", wc).runtime
    assert sizer.resources("extract", wb).mem_mb > extract.mem_mb


def test_shard_index_size_wins_over_the_config_estimate(tmp_path):
    spec = _local_model(tmp_path, "m", GPT2)
    index = {"metadata": {"total_size": 2 * 10**9}, "weight_map": {}}
    (tmp_path / "m" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert model_footprint(spec).n_params == 10**9  # bfloat16 by default: 2 bytes each


def test_retries_scale_memory_and_time(tmp_path):
    spec = _local_model(tmp_path, "m", LLAMA3_8B)
    sizer = Sizer(_run([spec]), SITE)
    wc = {"model": "m", "dataset": "ds"}
    one, two = sizer.resources("ablate_self", wc, 1), sizer.resources("ablate_self", wc, 2)
    assert two.mem_mb == 2 * one.mem_mb and two.runtime == 2 * one.runtime
    assert two.gpu == one.gpu


def test_row_counts_scale_the_estimates(tmp_path):
    spec = _local_model(tmp_path, "m", LLAMA3_8B)
    for name, rows in (("few", 100), ("many", 200_000)):
        (tmp_path / f"{name}.csv").write_text("statement,label\n" + "s,1\n" * rows)
    datasets = {
        n: DatasetSpec(n, None, str(tmp_path / f"{n}.csv"), "{statement}", (" a", " b"))
        for n in ("few", "many")
    }
    assert dataset_rows(datasets["many"]) == 200_001
    sizer = Sizer(_run([spec], datasets), SITE)
    few = sizer.resources("extract", {"model": "m", "dataset": "few"})
    many = sizer.resources("extract", {"model": "m", "dataset": "many"})
    assert many.runtime > few.runtime and many.mem_mb > few.mem_mb


def test_maps_on_fewer_rows_than_a_models_width_are_named(tmp_path):
    """`align_on: each` with a dataset whose align rows are fewer than the widest model's
    width warns, naming the dataset and the key; an alignment set does not."""
    small = _local_model(tmp_path, "small", GPT2)  # width 768
    big = _local_model(tmp_path, "big", LLAMA3_8B)  # width 4096
    for name, rows in (("few", 1_000), ("many", 40_000)):
        (tmp_path / f"{name}.csv").write_text("statement,label\n" + "s,1\n" * rows)
    datasets = {
        n: DatasetSpec(n, None, str(tmp_path / f"{n}.csv"), "{statement}", (" a", " b"))
        for n in ("few", "many")
    }
    run = _run([small, big], datasets)
    (warning,) = Sizer(run, SITE).align_warnings()  # 1,000 x 0.2 x 0.8 = 160 rows < 4096
    assert warning.startswith("datasets.few:") and "transfer.align_on" in warning
    assert "big (4096)" in warning
    declared = dataclasses.replace(run, transfer=TransferOptions(align_on=("few", "many")))
    assert Sizer(declared, SITE).align_warnings() == []


def test_builtin_row_bound_holds():
    from crossprobe.datasets import FAMILIES, generate_builtin

    for family in FAMILIES:
        assert len(generate_builtin(family)) <= BUILTIN_ROWS


def test_zoo_models_fit_the_smallest_gpu():
    spec = ModelSpec(name="z", path=None, zoo={"arch": "llama", "tokenizer": "word"}, layers=(1.0,))
    sizer = Sizer(_run([spec]), SITE)
    request = sizer.resources("zoo", {"model": "z"})
    assert (request.gpu.model, request.gpu.count) == ("h100", 1)
    res = slurm_resources(request, SITE)
    assert res["slurm_partition"] == "gpu" and res["gpu_model"] == "h100" and res["gpu"] == 1
    assert res["slurm_account"] == ""


def test_uncached_hub_model_warns_and_uses_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = ModelSpec(name="h", path="no-such-org/no-such-model", zoo=None, layers=(1.0,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp = model_footprint(spec, 8e9)
    assert fp.source == "fallback" and fp.n_params == 8e9
    assert any("no-such-org/no-such-model" in str(w.message) for w in caught)


def test_shipped_cluster_file_loads():
    site = load_cluster(DEFAULT_CLUSTER)
    assert site.cpu_partition and site.gpu_partition
    assert [g.name for g in site.gpus] == sorted(
        (g.name for g in site.gpus),
        key=lambda n: next(g.memory_gb for g in site.gpus if g.name == n),
    )


def test_slurm_profile_groups_the_grouped_rules():
    """The profile's job groups are the rules that hold a `group_slot`; the carried group of a
    target holds exactly the rules its job server runs, each of which loads that target."""
    profile = yaml.safe_load((DEFAULT_CLUSTER.parent / "config.yaml").read_text())
    groups = dict(g.split("=", 1) for g in profile["groups"])
    assert sorted(groups) == sorted(GROUPED_RULES)
    carried = {rule for rule, group in groups.items() if group == "carried_{target}"}
    assert carried == SERVED_RULES
    assert {GPU_RULES[rule] for rule in carried} == {"target"}
    components = dict(c.split("=", 1) for c in profile["group-components"])
    assert set(components) == set(groups.values())
    assert profile["set-resource-scopes"] == ["group_slot=local"]
    assert profile["resources"] == ["group_slot=1"]


def test_cluster_file_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="partitions"):
        cluster_from_dict({"gpus": [{"model": "h100", "memory_gb": 80}]})
    with pytest.raises(ConfigError, match="unknown key"):
        cluster_from_dict({"partitions": {"cpu": "c", "gpu": "g"}, "gpu": []})
    with pytest.raises(ConfigError, match="CROSSPROBE_CLUSTER"):
        load_cluster(tmp_path / "missing.yaml")
