"""Cluster resources of every job: partition, GPUs, host memory and time limit.

Everything here runs when the workflow is planned (and again inside each cluster job, for that
job only), so it never loads weights: a model's size comes from its zoo spec or its
``config.json`` (a local directory, or the local Hugging Face cache for hub ids), and a dataset's
size from its file's line count or Parquet metadata.

Site settings (partition names, account, GPU models and their memory) live in one file,
``profiles/slurm/cluster.yaml``, or the file named by ``$CROSSPROBE_CLUSTER``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from crossprobe.config import AUTO_BATCH_SIZE, DatasetSpec, ModelSpec, RunConfig
from crossprobe.errors import ConfigError

CLUSTER_ENV = "CROSSPROBE_CLUSTER"
DEFAULT_CLUSTER = Path(__file__).resolve().parents[3] / "profiles" / "slurm" / "cluster.yaml"

#: Rules that load a model, and where their model's name comes from.
GPU_RULES: dict[str, str] = {
    "zoo": "model",
    "extract": "model",
    "ablate_self": "model",
    "ablate_carried": "target",
    "rate": "model",
    "steer_self": "model",
    "steer_carried": "target",
    "geometry_extract": "model",
    "geometry_behaviour": "model",
}
#: Rules whose jobs SLURM runs in groups: the `groups:` of profiles/slurm/config.yaml (a test
#: holds the two equal). Each such job holds one `group_slot` and a group's allocation has one
#: (`resources: group_slot=1`, local scope): its jobs run one after another, and it asks for the
#: largest of their requests (GPUs, memory), not their sum. Local runs have no groups.
GROUPED_RULES: tuple[str, ...] = (
    "ablate_carried",
    "steer_carried",
    "align",
    "align_dataset",
    "correlate",
    "ridge",
    "heldout",
)
CPU_RULES: tuple[str, ...] = (
    "convert",
    "dataset",
    "train",
    "generalise",
    "generalisation_table",
    "align",
    "align_dataset",
    "correlate",
    "transfer_tables",
    "plot_transfer",
    "answers_table",
    "ridge",
    "heldout",
    "regression_tables",
    "similarity",
    "steering_tables",
    "embed",
    "crosslabels",
    "crosslabels_table",
    "geometry_tables",
)

#: The size assumed for a text baseline's embedding model when it is not one of the run's models
#: (all-MiniLM-L6-v2 is 22.7M parameters and 384 wide; larger sentence encoders reach 335M, 1024).
BASELINE_FOOTPRINT = (335_000_000, 1, 1024, 30_522)

#: Upper bound on the rows of a built-in family (each generates about 2,000 rows).
BUILTIN_ROWS = 2000
#: Tokens per prompt assumed for activation memory and compute (statements are short).
PROMPT_TOKENS = 64
#: Vocabulary assumed for zoo models (word-level or a 512-merge BPE).
ZOO_VOCAB = 1024
#: Bytes per parameter of each compute dtype on a GPU (auto is bfloat16 there).
GPU_DTYPE_BYTES: dict[str, int] = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
#: Sustained throughput assumed for a forward pass on one GPU, in FLOP/s (well below peak).
GPU_FLOPS = 5e13
#: Sustained throughput assumed for the CPU-side linear algebra of one job, in FLOP/s.
CPU_FLOPS = 5e9
#: Read speed assumed for loading weights (shared file systems are slow), in bytes/s.
LOAD_BYTES_PER_S = 2e8
#: CUDA context, allocator slack and kernels, in GiB, on top of weights and activations.
GPU_OVERHEAD_GIB = 2.0
#: Estimated times are multiplied by this before rounding up.
TIME_SAFETY = 3.0

GIB = 1024**3
MIB = 1024**2


# ---------------------------------------------------------------------------------------------
# The site


@dataclass(frozen=True)
class GpuType:
    """One GPU model of the GPU partition, as SLURM names it in its gres."""

    name: str
    memory_gb: float
    per_node: int


@dataclass(frozen=True)
class Cluster:
    """Site settings from ``cluster.yaml``."""

    cpu_partition: str
    gpu_partition: str
    account: str | None
    gpus: tuple[GpuType, ...]
    """GPU types, smallest memory first."""
    usable_fraction: float = 0.9
    """Fraction of a GPU's memory a job plans to fill."""
    min_runtime_min: int = 10
    max_runtime_min: int = 2880
    min_mem_mb: int = 2000
    unknown_model_params: float = 8e9
    """Parameters assumed for a hub model whose config.json is not in the local cache."""


def cluster_path() -> Path:
    return Path(os.environ.get(CLUSTER_ENV) or DEFAULT_CLUSTER)


def load_cluster(path: str | Path | None = None) -> Cluster:
    """The site settings; a `ConfigError` naming the file and key if they are unusable."""
    p = Path(path) if path is not None else cluster_path()
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise ConfigError(
            f"cluster settings {str(p)!r} cannot be read ({e.strerror}); create it from "
            f"profiles/slurm/cluster.yaml or set ${CLUSTER_ENV} to its path."
        ) from None
    return cluster_from_dict(raw, where=str(p))


def cluster_from_dict(raw: Mapping[str, Any], where: str = "cluster.yaml") -> Cluster:
    known = {
        "account",
        "partitions",
        "gpus",
        "usable_fraction",
        "min_runtime_min",
        "max_runtime_min",
        "min_mem_mb",
        "unknown_model_params",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}.")
    parts = raw.get("partitions") or {}
    if not isinstance(parts, Mapping) or not parts.get("cpu") or not parts.get("gpu"):
        raise ConfigError(f"{where}: give `partitions: {{cpu: NAME, gpu: NAME}}`.")
    gpus = []
    for i, g in enumerate(raw.get("gpus") or []):
        try:
            gpus.append(GpuType(str(g["model"]), float(g["memory_gb"]), int(g.get("per_node", 1))))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{where}: gpus[{i}] must be a mapping with `model` (the gres type, e.g. h100), "
                "`memory_gb` and optionally `per_node`."
            ) from None
    if not gpus:
        raise ConfigError(f"{where}: list at least one GPU model under `gpus`.")
    account = raw.get("account")
    return Cluster(
        cpu_partition=str(parts["cpu"]),
        gpu_partition=str(parts["gpu"]),
        account=str(account) if account else None,
        gpus=tuple(sorted(gpus, key=lambda g: g.memory_gb)),
        usable_fraction=float(raw.get("usable_fraction", 0.9)),
        min_runtime_min=int(raw.get("min_runtime_min", 10)),
        max_runtime_min=int(raw.get("max_runtime_min", 2880)),
        min_mem_mb=int(raw.get("min_mem_mb", 2000)),
        unknown_model_params=float(raw.get("unknown_model_params", 8e9)),
    )


# ---------------------------------------------------------------------------------------------
# Model size, from configs only


@dataclass(frozen=True)
class Footprint:
    """A model's size as far as planning needs it."""

    n_params: int
    n_layers: int
    d_model: int
    vocab: int
    source: str
    """Where the numbers came from (zoo spec, a config.json, or the fallback)."""


def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


_UNGATED = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "codegen"}


def params_from_config(cfg: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(parameters, blocks, width, vocabulary) of a decoder-only transformer's ``config.json``.

    Counts embeddings (twice when untied), attention with grouped key/value heads, a gated or
    plain MLP (every expert for mixture-of-experts models) and norms; biases are ignored.
    """
    if isinstance(cfg.get("text_config"), Mapping):
        cfg = {**cfg, **cfg["text_config"]}
    d = int(_first(cfg, "hidden_size", "n_embd", "d_model", "model_dim"))
    n_layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    vocab = int(_first(cfg, "vocab_size", "padded_vocab_size", default=32000))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads", default=max(1, d // 64)))
    kv_heads = int(_first(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(_first(cfg, "head_dim", default=d // heads))
    ff = int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim", "d_ff", default=4 * d))
    gated = cfg.get("model_type") not in _UNGATED
    experts = int(_first(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0))
    shared = int(_first(cfg, "n_shared_experts", default=0))
    attn = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mats = 3 if gated else 2
    if experts:
        moe_ff = int(_first(cfg, "moe_intermediate_size", default=ff))
        mlp = (experts + shared) * mats * d * moe_ff + experts * d
    else:
        mlp = mats * d * ff
    tied = bool(cfg.get("tie_word_embeddings", True))
    emb = vocab * d * (1 if tied else 2)
    if cfg.get("model_type") == "gpt2":
        emb += int(_first(cfg, "n_positions", default=1024)) * d
    return emb + n_layers * (attn + mlp + 4 * d), n_layers, d, vocab


def _cached_hub_file(repo: str, filename: str, revision: str | None) -> Path | None:
    """A file of a hub repository from the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    hit = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(hit) if isinstance(hit, str) else None


def _weights_bytes_on_disk(index: Path | None, model_dir: Path | None) -> int | None:
    """Total size of the safetensors weights, from the shard index or the file sizes."""
    if index is not None and index.is_file():
        total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        if total:
            return int(total)
    if model_dir is not None:
        sizes = [f.stat().st_size for f in model_dir.glob("*.safetensors")]
        if sizes:
            return sum(sizes)
    return None


_STORED_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1}


def _footprint_from_files(config_file: Path, weights_bytes: int | None, where: str) -> Footprint:
    cfg = json.loads(config_file.read_text())
    n_params, n_layers, d, vocab = params_from_config(cfg)
    if weights_bytes:
        text = cfg.get("text_config") if isinstance(cfg.get("text_config"), Mapping) else cfg
        stored = str(
            _first(
                text,
                "torch_dtype",
                "dtype",
                default=_first(cfg, "torch_dtype", "dtype", default="bfloat16"),
            )
        )
        per_param = _STORED_BYTES.get(stored, 2)
        n_params = max(n_params, weights_bytes // per_param)
    return Footprint(int(n_params), n_layers, d, vocab, where)


def _zoo_footprint(spec: ModelSpec) -> Footprint:
    from crossprobe.zoo.spec import ZooSpec

    z = ZooSpec.from_dict(spec.zoo or {})
    cfg = {
        "model_type": z.arch,
        "hidden_size": z.d_model,
        "num_hidden_layers": z.n_layers,
        "num_attention_heads": z.n_heads,
        "vocab_size": ZOO_VOCAB,
        "n_positions": 128,
    }
    n_params, n_layers, d, vocab = params_from_config(cfg)
    return Footprint(n_params, n_layers, d, vocab, "zoo spec")


def _fallback(spec: ModelSpec, params: float, why: str) -> Footprint:
    warnings.warn(
        f"crossprobe: model {spec.name!r} ({spec.path}): {why}; sizing its cluster jobs for "
        f"{params / 1e9:g}B parameters (cluster.yaml `unknown_model_params`). To size it from "
        f"its real config, put config.json in the local Hugging Face cache (e.g. `hf download "
        f"{spec.path} config.json` on a machine with network) or point `path` at a local "
        "directory.",
        stacklevel=2,
    )
    d = 4096
    n_layers = 32
    return Footprint(int(params), n_layers, d, 32000, "fallback")


def _gguf_footprint(spec: ModelSpec, unknown_params: float) -> Footprint:
    """The size of a GGUF model from the file's header (its tensor table), never its weights."""
    from crossprobe.convert import read_header

    local = spec.local_gguf
    if local is None:
        assert spec.path is not None and spec.gguf is not None
        local = _cached_hub_file(spec.path, spec.gguf, spec.revision)
        if local is None:
            return _fallback(spec, unknown_params, f"{spec.gguf} is not in the local cache")
    h = read_header(local)
    return Footprint(h.n_params, h.n_layers or 32, h.d_model or 4096, h.vocab_size, str(local))


def model_footprint(spec: ModelSpec, unknown_params: float = 8e9) -> Footprint:
    """The size of one model from its zoo spec, config.json or GGUF header; never reads weights.

    A zoo entry that fine-tunes another model (``base``) is sized by the caller from its base
    (`Sizer.footprint`).
    """
    if spec.is_zoo:
        return _zoo_footprint(spec)
    if spec.is_gguf:
        return _gguf_footprint(spec, unknown_params)
    path = str(spec.path)
    local = Path(path)
    if local.is_dir():
        config_file = local / "config.json"
        if not config_file.is_file():
            return _fallback(spec, unknown_params, f"{config_file} is missing")
        weights = _weights_bytes_on_disk(local / "model.safetensors.index.json", local)
        return _footprint_from_files(config_file, weights, str(config_file))
    # Cache only: planning must not wait on the network (compute nodes often have none, and
    # every cluster job plans again).
    cached = _cached_hub_file(path, "config.json", spec.revision)
    if cached is None:
        return _fallback(spec, unknown_params, "config.json is not in the local cache")
    index = _cached_hub_file(path, "model.safetensors.index.json", spec.revision)
    return _footprint_from_files(cached, _weights_bytes_on_disk(index, None), str(cached))


# ---------------------------------------------------------------------------------------------
# GPUs


@dataclass(frozen=True)
class GpuRequest:
    """GPUs one job asks for: ``count`` GPUs of gres type ``model``."""

    model: str
    count: int
    need_gb: float
    """Estimated GPU memory the job uses in total."""

    @property
    def device_map(self) -> Literal["auto"] | None:
        """What `crossprobe.models.load_model` needs: spread over the GPUs when several."""
        return "auto" if self.count > 1 else None


def gpu_memory_gb(fp: Footprint, spec: ModelSpec) -> float:
    """Weights in the GPU dtype, plus activations of one batch (or 10 % of weights), plus slack."""
    weights = fp.n_params * GPU_DTYPE_BYTES[spec.dtype]
    act_bytes = 2 if spec.dtype != "float32" else 4
    # `auto` adapts the batch to the GPU it gets; size the request for a nominal batch.
    batch = AUTO_BATCH_SIZE if spec.batch_size == "auto" else int(spec.batch_size)
    hidden = (fp.n_layers + 1) * batch * PROMPT_TOKENS * fp.d_model * act_bytes
    logits = batch * PROMPT_TOKENS * fp.vocab * 4
    activations = max(hidden + logits, 0.1 * weights)
    return (weights + activations) / GIB + GPU_OVERHEAD_GIB


def pick_gpus(need_gb: float, cluster: Cluster) -> GpuRequest:
    """The smallest GPU type that holds the job alone; else the fewest GPUs of one node."""
    for g in cluster.gpus:
        if need_gb <= g.memory_gb * cluster.usable_fraction:
            return GpuRequest(g.name, 1, need_gb)
    options = []
    for g in cluster.gpus:
        n = math.ceil(need_gb / (g.memory_gb * cluster.usable_fraction))
        if n <= g.per_node:
            options.append((n * g.memory_gb, n, g.name))
    if not options:
        biggest = max(cluster.gpus, key=lambda g: g.memory_gb * g.per_node)
        raise ConfigError(
            f"a job needs about {need_gb:.0f} GB of GPU memory, more than one node's "
            f"{biggest.per_node} x {biggest.name} ({biggest.memory_gb:g} GB each) holds; use a "
            "smaller model or dtype, or list larger GPUs in cluster.yaml."
        )
    _, n, name = min(options)
    return GpuRequest(name, n, need_gb)


# ---------------------------------------------------------------------------------------------
# Datasets


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def dataset_rows(spec: DatasetSpec) -> int:
    """Rows of a dataset, from its file (lines or Parquet metadata); built-ins are bounded."""
    if spec.builtin is not None or spec.path is None:
        return BUILTIN_ROWS
    p = Path(spec.path)
    if not p.is_file():
        return BUILTIN_ROWS
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(p).num_rows)
    return max(1, _count_lines(p))


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class JobResources:
    """What one job asks SLURM for."""

    partition: str
    mem_mb: int
    runtime: int
    """Minutes."""
    gpu: GpuRequest | None = None


class Sizer:
    """Resources of every job of one run, on one cluster."""

    def __init__(self, cfg: RunConfig, cluster: Cluster):
        self.cfg = cfg
        self.cluster = cluster
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], JobResources] = {}
        self._footprints: dict[str, Footprint] = {}
        self._rows: dict[str, int] = {}

    # -- sizes
    def footprint(self, model: str) -> Footprint:
        if model not in self._footprints and model in self.cfg.baselines:
            own = self.cfg.baselines[model].run_model(self.cfg.models)
            if own is not None:
                return self.footprint(own.name)
            n, layers, d, vocab = BASELINE_FOOTPRINT
            self._footprints[model] = Footprint(n, layers, d, vocab, "text baseline estimate")
        if model not in self._footprints:
            spec = self.cfg.models[model]
            self._footprints[model] = (
                self.footprint(spec.base)
                if spec.base
                else model_footprint(spec, self.cluster.unknown_model_params)
            )
        return self._footprints[model]

    def gpus(self, model: str) -> GpuRequest:
        spec = self.cfg.models[model]
        return pick_gpus(gpu_memory_gb(self.footprint(model), spec), self.cluster)

    def rows(self, dataset: str) -> int:
        if dataset not in self._rows:
            self._rows[dataset] = dataset_rows(self.cfg.datasets[dataset])
        return self._rows[dataset]

    def _rows_all(self) -> int:
        return sum(self.rows(d) for d in self.cfg.datasets)

    def align_warnings(self) -> list[str]:
        """With `transfer.align_on: each`, the datasets whose maps fit on fewer rows than a
        model's width (80% of their `align` rows fit a map): such a map cannot carry directions
        outside the span of its rows (docs/definitions.md, "Which rows fit a map")."""
        if self.cfg.transfer.align_on != "each" or len(self.cfg.models) < 2:
            return []
        widest = max(self.cfg.models, key=lambda m: self.footprint(m).d_model)
        width = self.footprint(widest).d_model
        out = []
        for d in self.cfg.datasets:
            fit = math.floor(self.rows(d) * self.cfg.splits["align"] * 0.8)
            if fit < width:
                out.append(
                    f"datasets.{d}: its maps (transfer.align_on: each) fit on about {fit} align "
                    f"rows, fewer than the width of {widest} ({width}); directions outside "
                    "their span (which logreg probes lean on) are carried poorly. Declare an "
                    "alignment set with more rows, transfer.align_on: [dataset, ...]."
                )
        return out

    def _effect_prompts(self, rows: int) -> int:
        return math.ceil(rows * self.cfg.splits["test"] * 0.6)

    # -- one job
    def resources(self, rule: str, wildcards: Mapping[str, str], attempt: int = 1) -> JobResources:
        """The job's request; memory and time grow linearly with the attempt number."""
        key = (rule, tuple(sorted(wildcards.items())))
        base = self._cache.get(key)
        if base is None:
            base = self._cache[key] = self._base(rule, wildcards)
        c = self.cluster
        return JobResources(
            partition=base.partition,
            mem_mb=int(base.mem_mb * attempt),
            runtime=int(min(base.runtime * attempt, c.max_runtime_min)),
            gpu=base.gpu,
        )

    def _base(self, rule: str, w: Mapping[str, str]) -> JobResources:
        if rule in GPU_RULES:
            return self._gpu_job(rule, w)
        if rule in CPU_RULES:
            return self._cpu_job(rule, w)
        raise ConfigError(
            f"no resource estimate for rule {rule!r}; add it to crossprobe.cluster.resources."
        )

    def _minutes(self, seconds: float) -> int:
        minutes = math.ceil(seconds * TIME_SAFETY / 60 / 5) * 5
        return int(min(max(minutes, self.cluster.min_runtime_min), self.cluster.max_runtime_min))

    def _mem(self, nbytes: float) -> int:
        return int(max(math.ceil(nbytes / MIB / 100) * 100, self.cluster.min_mem_mb))

    def _gpu_job(self, rule: str, w: Mapping[str, str]) -> JobResources:
        name = w[GPU_RULES[rule]]
        spec, fp = self.cfg.models[name], self.footprint(name)
        request = self.gpus(name)
        weights = fp.n_params * GPU_DTYPE_BYTES[spec.dtype]
        flops_per_prompt = 2.0 * fp.n_params * PROMPT_TOKENS
        n_layers, n_methods = len(spec.layers), len(self.cfg.probes)
        if rule == "zoo":
            from crossprobe.zoo.spec import ZooSpec

            z = ZooSpec.from_dict(spec.zoo or {})
            steps, batch = z.steps, z.batch_size
            forward_passes = 3.0 * steps * batch  # forward + backward
            data = 0.0
        elif rule == "extract":
            rows = self.rows(w["dataset"])
            forward_passes = rows
            data = rows * n_layers * fp.d_model * 4.0
        elif rule == "ablate_self":
            prompts = self._effect_prompts(self.rows(w["dataset"]))
            directions = n_methods + self.cfg.transfer.null_directions
            forward_passes = prompts * (1 + n_layers * directions)
            data = prompts * (1 + n_layers * directions) * 8.0
        elif rule == "rate":  # one clean pass over every row, the whole vocabulary at its end
            rows = self.rows(w["dataset"])
            forward_passes = rows
            data = rows * 16.0
        elif rule in ("geometry_extract", "geometry_behaviour"):  # one pass per prompt
            g = self.cfg.geometry
            questions = g.questions if rule == "geometry_extract" else g.probe_questions
            forward_passes = len(g.conditions) * len(questions)
            # activations of every layer, or the whole vocabulary's log-probabilities
            width = n_layers * fp.d_model if rule == "geometry_extract" else fp.vocab
            data = forward_passes * width * 8.0
        elif rule in ("steer_self", "steer_carried"):
            st = self.cfg.steering
            d = w["dataset"]
            # a rated dataset is steered twice: its margin and its rating prompt
            steered = min(st.prompts, self._effect_prompts(self.rows(d))) * (
                2 if d in self.cfg.rated else 1
            )
            directions = n_methods + 2 + (st.null_directions if rule == "steer_self" else 0)
            copies = directions * len(st.alphas)
            forward_passes = steered * (1 + n_layers * copies)
            data = steered * n_layers * copies * 40.0
        else:  # ablate_carried: the carried probes and the map-matched null directions
            prompts = self._effect_prompts(self.rows(w["dataset"]))
            directions = n_methods + self.cfg.transfer.matched_null_directions
            forward_passes = prompts * (1 + n_layers * directions)
            data = prompts * (1 + n_layers * directions) * 8.0
        seconds = (
            forward_passes * flops_per_prompt / (GPU_FLOPS * request.count)
            + weights / LOAD_BYTES_PER_S
            + 60
        )
        # Host memory: weights pass through host RAM on load unless spread over several GPUs.
        host_weights = weights * (1.2 if request.count == 1 else 0.3)
        mem = 4 * GIB + host_weights + 2 * data
        return JobResources(
            self.cluster.gpu_partition, self._mem(mem), self._minutes(seconds), request
        )

    def _cpu_job(self, rule: str, w: Mapping[str, str]) -> JobResources:
        n_layers = len(self.cfg.layers)
        n_data = len(self.cfg.datasets)
        n_methods = len(self.cfg.probes)
        seconds, nbytes = 30.0, 1.0 * GIB
        if rule == "convert":
            # The quantised file, the dequantised float32 model and its plain copy in memory.
            n_params = self.footprint(w["model"]).n_params
            nbytes += 3.0 * n_params * 4
            seconds += n_params * 4 / LOAD_BYTES_PER_S * 20
        elif rule == "dataset":
            rows = self.rows(w["dataset"])
            nbytes += rows * 2000.0
        elif rule in ("train", "generalise", "ridge", "heldout"):
            d = self.footprint(w["model"]).d_model
            one = rule in ("train", "ridge")
            rows = self.rows(w["dataset"]) if one else self._rows_all()
            nbytes += 3.0 * rows * n_layers * d * 4
            seconds += n_methods * n_layers * rows * d * 200 / CPU_FLOPS
            if rule == "generalise":
                seconds += n_data * n_data * n_layers * n_methods * 2
            if rule in ("ridge", "heldout"):  # ridge with 19 penalties per target (and split)
                fits = 1 if rule == "ridge" else n_data * n_data
                seconds += 19 * fits * n_layers * rows * d * d / CPU_FLOPS
        elif rule == "embed":  # one forward pass per statement through the embedding model
            fp, rows = self.footprint(w["model"]), self.rows(w["dataset"])
            nbytes += 1.2 * fp.n_params * 4 + rows * fp.d_model * 8.0
            seconds += 60 + rows * 2.0 * fp.n_params * PROMPT_TOKENS / CPU_FLOPS
        elif rule == "crosslabels":  # a multi-label ridge per fold, layer and probed model
            rows = math.ceil(self.rows(w["dataset"]) * self.cfg.splits["test"])
            for m in self.cfg.probed:
                d = self.footprint(m).d_model
                nbytes += 3.0 * rows * n_layers * d * 8
                fits = self.cfg.crosslabels.folds * n_layers
                seconds += fits * 19 * rows * d * min(rows, d) / CPU_FLOPS
        elif rule in ("align", "align_dataset"):
            ds, dt = self.footprint(w["source"]).d_model, self.footprint(w["target"]).d_model
            t = self.cfg.transfer
            fit_on = (
                t.align_set(w["dataset"])
                if rule == "align_dataset"
                else t.pair_align_set(self.cfg.datasets)
            )
            rows = math.ceil(sum(self.rows(d) for d in fit_on) * self.cfg.splits["align"])
            nbytes += 3.0 * rows * n_layers * (ds + dt) * 8 + 6.0 * ds * dt * 8
            seconds += 2 * n_layers * (ds * dt * (ds + dt + rows)) / CPU_FLOPS
        elif rule == "correlate":
            ds, dt = self.footprint(w["source"]).d_model, self.footprint(w["target"]).d_model
            rows = math.ceil(self.rows(w["dataset"]) * self.cfg.splits["test"])
            nbytes += 2.0 * rows * n_layers * (ds + dt) * 8
            cells = n_layers * n_methods
            t = self.cfg.transfer
            seconds += cells * (t.bootstrap + t.null_directions) * rows * 20 / CPU_FLOPS
        else:  # aggregates over every cell
            n_models = len(self.cfg.models)
            cells = n_models * n_models * n_data * n_layers * n_methods
            nbytes += cells * (self.cfg.transfer.null_directions + 50) * 200.0
            seconds += cells * 0.01
        return JobResources(self.cluster.cpu_partition, self._mem(nbytes), self._minutes(seconds))


def slurm_resources(job: JobResources, cluster: Cluster) -> dict[str, Any]:
    """The job's request as Snakemake resources of the SLURM executor plugin."""
    out: dict[str, Any] = {
        "slurm_partition": job.partition,
        "mem_mb": job.mem_mb,
        "runtime": job.runtime,
        "slurm_account": cluster.account or "",
    }
    if job.gpu is not None:
        out["gpu"] = job.gpu.count
        out["gpu_model"] = job.gpu.model
    return out


def device_map(n_gpus: int) -> Literal["auto"] | None:
    """The ``device_map`` for `crossprobe.models.load_model` in a job holding ``n_gpus`` GPUs."""
    return "auto" if n_gpus > 1 else None
