"""The run configuration: schema validation, defaults and typed specs for models and datasets.

Everything here runs when the workflow is planned, before any job starts, so that a typo or an
impossible setting stops the run with one message naming the key and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from crossprobe.crosslabels.options import (
    BaselineSpec,
    CrossLabelOptions,
    baseline_specs,
    check_baselines,
    crosslabel_options,
)
from crossprobe.errors import ConfigError
from crossprobe.geometry.options import GeometryOptions, geometry_options
from crossprobe.preference.options import (
    RegressionOptions,
    SteeringOptions,
    regression_options,
    steering_options,
)
from crossprobe.prompts import gguf_prompt_check, raw_prompt_check, tokenizer_prompt_check
from crossprobe.transfer.options import TransferOptions, transfer_options

if TYPE_CHECKING:
    import pandas as pd

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_TEMPLATE = "{statement} True or false? Answer:"
DEFAULT_ANSWERS = (" True", " False")
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
RESULTS = "results"


#: The nominal batch a SLURM request is sized for when ``batch_size`` is ``auto``.
AUTO_BATCH_SIZE = 64


@dataclass(frozen=True)
class ModelSpec:
    """One model of the run."""

    name: str
    """Safe name used in file paths and wildcards."""
    path: str | None
    """Hub id or local directory (for ``gguf``: the repository or folder holding the file);
    None for zoo models and local GGUF files."""
    zoo: Mapping[str, Any] | None
    """Zoo training options; None for loaded models."""
    revision: str | None = None
    """Hub revision pinned for reproducibility."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Compute dtype."""
    batch_size: int | Literal["auto"] = "auto"
    """Prompts per forward pass."""
    trust_remote_code: bool = False
    """Allow the model repository's own code."""
    allow_pickle: bool = False
    """Allow non-safetensors weights."""
    layers: tuple[int | float, ...] = ()
    """Layers as relative depths (float) or block indices (int)."""
    gguf: str | None = None
    """A GGUF file: a local path, or with ``path`` a file name in that repository or folder."""
    control: bool | None = None
    """Declared a control (None: a zoo model with ``trained: false`` and no ``base`` is one;
    a copy of a real model is not)."""
    prompt_format: Literal["raw", "chat"] | None = None
    """Prompt format on every dataset; None takes each dataset's."""
    answers: tuple[str, str] | None = None
    """(positive, negative) answers on every dataset; None takes each dataset's."""

    def answers_for(self, dataset: DatasetSpec) -> tuple[str, str]:
        """The answer tokens this model is read at on ``dataset``."""
        return self.answers or dataset.answers

    def format_for(self, dataset: DatasetSpec) -> Literal["raw", "chat"]:
        """The prompt format this model gets on ``dataset``."""
        return self.prompt_format or dataset.prompt_format

    @property
    def is_zoo(self) -> bool:
        return self.zoo is not None

    @property
    def is_control(self) -> bool:
        """A control never counts toward ``transfer.min_sources``."""
        if self.control is not None:
            return bool(self.control)
        z = self.zoo
        return z is not None and z.get("trained") is False and z.get("base") is None

    @property
    def is_gguf(self) -> bool:
        return self.gguf is not None

    @property
    def base(self) -> str | None:
        """The model of the run that a zoo entry fine-tunes (``zoo.base``), if any."""
        return (self.zoo or {}).get("base")

    @property
    def gguf_folder_and_file(self) -> tuple[str, str]:
        """What ``from_pretrained(folder, gguf_file=file)`` takes for this entry."""
        assert self.gguf is not None
        if self.path is not None:
            return self.path, self.gguf
        p = Path(self.gguf)
        return str(p.parent), p.name

    @property
    def local_gguf(self) -> Path | None:
        """The GGUF file on this machine (a local file or folder), None for a hub file."""
        if self.gguf is None:
            return None
        folder, name = self.gguf_folder_and_file
        p = Path(folder) / name
        return p if self.path is None or Path(folder).is_dir() else None

    @property
    def source(self) -> str:
        """Where `from_pretrained` loads the model from."""
        if self.is_zoo:
            return f"{RESULTS}/zoo/{self.name}"
        if self.is_gguf:
            return f"{RESULTS}/models/{self.name}"
        return str(self.path)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `crossprobe.models.load_model`."""
        return {
            # zoo and converted GGUF models load from a local folder: no revision applies
            "revision": None if self.is_zoo or self.is_gguf else self.revision,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "allow_pickle": self.allow_pickle,
        }


@dataclass(frozen=True)
class DatasetSpec:
    """One statement dataset of the run."""

    name: str
    """Safe name used in file paths and wildcards."""
    builtin: str | None
    """Built-in family, or None for a file."""
    path: str | None
    """CSV, JSONL or Parquet file, or None for a built-in family."""
    template: str
    """Prompt template with `{statement}`."""
    answers: tuple[str, str]
    """(positive, negative) next-token answers."""
    group: str | None = None
    """Column whose value decides the row's split (the fact it states), or None: the statement."""
    prompt_format: Literal["raw", "chat"] = "raw"
    """The template's text as it is, or as the user turn of each model's chat template."""
    system_prompt: str | None = None
    """System turn before each statement with the chat format."""
    hub: Mapping[str, Any] | None = None
    """For a dataset read with ``datasets`` (``hub`` or ``preset``): its source and preset;
    ``path`` is then its fetched table (:mod:`crossprobe.hub`)."""
    targets: tuple[tuple[str, str], ...] = ()
    """(target name, column) of each real-valued column that regression probes predict."""
    rating: Mapping[str, Any] | None = None
    """The self-rating prompt and scale (``crossprobe.preference.rating.RatingSpec``), or None."""

    @property
    def rating_spec(self) -> Any:
        """The :class:`crossprobe.preference.rating.RatingSpec`, or None."""
        from crossprobe.preference.rating import RatingSpec

        return RatingSpec.from_dict(dict(self.rating) if self.rating is not None else None)


@dataclass(frozen=True)
class RunConfig:
    """The validated configuration of one run."""

    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec]
    layers: tuple[int | float, ...]
    position: Literal["last", "mean"]
    probes: tuple[str, ...]
    logreg_c: float
    splits: dict[str, float]
    transfer: TransferOptions = field(default_factory=TransferOptions)
    regression: RegressionOptions = field(default_factory=RegressionOptions)
    steering: SteeringOptions = field(default_factory=SteeringOptions)
    baselines: dict[str, BaselineSpec] = field(default_factory=dict)
    crosslabels: CrossLabelOptions = field(default_factory=CrossLabelOptions)

    @property
    def probed(self) -> list[str]:
        """Everything probes are fit on: the models, then the text baselines."""
        return [*self.models, *self.baselines]

    geometry: GeometryOptions = field(default_factory=GeometryOptions)

    @cached_property
    def targets(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """The regression targets of each dataset that has any (its ``self_rating`` too).
        Computed once: the workflow asks for it once per planned job."""
        from crossprobe.preference.rating import TARGET

        out = {}
        for n, d in self.datasets.items():
            rated = ((TARGET, TARGET),) if d.rating is not None else ()
            if d.targets or rated:
                out[n] = (*d.targets, *rated)
        return out

    @property
    def rated(self) -> list[str]:
        """The datasets with a self-rating."""
        return [n for n, d in self.datasets.items() if d.rating is not None]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Ordered (source, target) pairs of distinct models."""
        return [(s, t) for s in self.models for t in self.models if s != t]

    @property
    def controls(self) -> list[str]:
        """The control models, which never count toward ``transfer.min_sources``."""
        return [name for name, spec in self.models.items() if spec.is_control]


def scoring_warnings(run: RunConfig) -> list[str]:
    """Why no off-diagonal cell of ``run`` can be scored, or only cells into controls (else an
    empty list): each names the key that would change it."""
    counted = [m for m in run.models if m not in run.controls]
    need = run.transfer.min_sources

    def sources(target: str) -> int:
        return len([m for m in counted if m != target])

    most = max((sources(t) for t in run.models), default=0)
    most_real = max((sources(t) for t in counted), default=0)
    controls = f" ({', '.join(run.controls)}: controls, which do not count)" if run.controls else ""
    fix = (
        f"Add models, or lower transfer.min_sources to {max(most_real, 1)}; cells are computed "
        "and reported either way."
    )
    if most < need:
        return [
            f"no off-diagonal cell can be scored: at most {most} source model(s) that are not "
            f"controls carry a probe into any target{controls}, fewer than transfer.min_sources="
            f"{need}. {fix}"
        ]
    if most_real < need:
        return [
            f"only cells into the controls can be scored: at most {most_real} source model(s) "
            f"that are not controls carry a probe into any other target{controls}, fewer than "
            f"transfer.min_sources={need}. {fix}"
        ]
    return []


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as f:
        return yaml.load(f, Loader=loader)  # noqa: S506 (a safe loader)


def _key_path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Human-readable schema violations, each naming the key path."""
    from jsonschema import Draft202012Validator

    messages = []
    validator = Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = _key_path(err.path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            messages.append(f"{where}: {err.message}. Allowed keys here: {', '.join(allowed)}.")
        elif "propertyNames" in err.schema_path:
            messages.append(
                f"{where}: name {err.instance!r} is not allowed: use letters, digits, '.', '_' "
                "and '-' only, starting with a letter or digit."
            )
        elif err.validator == "oneOf" and len(err.path) == 2 and err.path[0] == "models":
            messages.append(
                f"{where}: give exactly one of `path` (hub id or directory), `gguf` (a GGUF "
                "file, optionally with `path` for its repository or folder) or `zoo` (train "
                "locally)."
            )
        elif err.validator == "oneOf" and len(err.path) == 2 and err.path[0] == "datasets":
            messages.append(
                f"{where}: give exactly one of `builtin` (a family) or `path` (a file)."
            )
        else:
            messages.append(f"{where}: {err.message}")
    return messages


def _with_defaults(section: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(section)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
    return out


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None, *, inputs: bool = True
) -> RunConfig:
    """Validate a raw config mapping against the schema and build the typed `RunConfig`.

    With ``inputs`` (the default) the datasets, layer ranges and answer tokens are checked too
    (`check_inputs`).
    Raises `ConfigError` with every problem found, one per line.
    """
    schema = load_schema() if schema is None else schema
    errors = schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    top = _with_defaults(config, schema)
    props = schema["properties"]
    model_schema = props["models"]["additionalProperties"]
    dataset_schema = props["datasets"]["additionalProperties"]
    layers = tuple(top["layers"])
    models = {
        name: _model_spec(name, _with_defaults(entry, model_schema), layers)
        for name, entry in top["models"].items()
    }
    datasets = {
        name: _dataset_spec(
            name, _with_defaults(entry, dataset_schema), dataset_schema["properties"]["rating"]
        )
        for name, entry in top["datasets"].items()
    }
    splits = _with_defaults(top["splits"], props["splits"])
    if abs(sum(splits.values()) - 1.0) > 1e-9:
        raise ConfigError(
            f"splits: fractions {splits} sum to {sum(splits.values()):g}; make them sum to 1."
        )
    transfer = transfer_options(_with_defaults(top["transfer"], props["transfer"]), datasets)
    regression = regression_options(_with_defaults(top["regression"], props["regression"]))
    steering = steering_options(_with_defaults(top["steering"], props["steering"]))
    baselines = baseline_specs(top["baselines"])
    crosslabels = crosslabel_options(_with_defaults(top["crosslabels"], props["crosslabels"]))
    run = RunConfig(
        models=models,
        datasets=datasets,
        layers=layers,
        position=top["position"],
        probes=tuple(top["probes"]),
        logreg_c=float(top["logreg_c"]),
        splits={k: float(splits[k]) for k in ("train", "align", "test")},
        transfer=transfer,
        regression=regression,
        steering=steering,
        baselines=baselines,
        crosslabels=crosslabels,
        geometry=geometry_options(_with_defaults(top["geometry"], props["geometry"]), models),
    )
    check_baselines(run.baselines, run.models)
    if inputs:
        check_inputs(run)
    return run


def _model_spec(name: str, entry: Mapping[str, Any], layers: tuple[int | float, ...]) -> ModelSpec:
    own_layers = tuple(entry.get("layers") or layers)
    if len(own_layers) != len(layers):
        raise ConfigError(
            f"models.{name}.layers has {len(own_layers)} entries but the top-level `layers` has "
            f"{len(layers)}: layers are paired across models by position, so give the same number."
        )
    path, gguf = entry.get("path"), entry.get("gguf")
    if gguf is not None:
        _check_gguf_path(name, path, gguf)
    elif path is not None:
        _check_model_path(name, path)
    zoo = entry.get("zoo")
    if zoo is not None:
        from crossprobe.zoo.spec import ZooSpec

        try:
            # Every setting, defaults included, in one order: the zoo job's params (and so its
            # rerun trigger) change only when the recipe does, not with the key order.
            zoo = ZooSpec.from_dict(zoo).to_dict()
        except ConfigError as e:
            raise ConfigError(f"models.{name}.zoo: {e}") from None
    return ModelSpec(
        name=name,
        path=path,
        zoo=zoo,
        revision=entry["revision"],
        dtype=entry["dtype"],
        batch_size=entry["batch_size"],
        trust_remote_code=entry["trust_remote_code"],
        allow_pickle=entry["allow_pickle"],
        layers=own_layers,
        gguf=gguf,
        control=entry["control"],
        prompt_format=entry["prompt_format"],
        answers=_model_answers(name, entry["answers"]),
    )


def _model_answers(name: str, answers: Any) -> tuple[str, str] | None:
    if answers is None:
        return None
    if answers[0] == answers[1]:
        raise ConfigError(f"models.{name}.answers: the two answers must differ.")
    return (answers[0], answers[1])


def _check_model_path(name: str, path: str) -> None:
    p = Path(path)
    if p.is_dir():
        missing = [f for f in ("config.json",) if not (p / f).exists()]
        has_tokenizer = any(
            (p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        )
        if missing or not has_tokenizer:
            what = ", ".join(missing + ([] if has_tokenizer else ["tokenizer files"]))
            raise ConfigError(
                f"models.{name}.path: directory {path!r} lacks {what}; save the model and its "
                "tokenizer there with save_pretrained, or point `path` at a hub id."
            )
        return
    if path.startswith((".", "/", "~")) or not HUB_ID_RE.match(path):
        raise ConfigError(
            f"models.{name}.path: {path!r} is neither an existing directory nor a hub id of the "
            "form `org/name`; fix the path or the id."
        )


def _check_gguf_path(name: str, path: str | None, gguf: str) -> None:
    if path is None:
        if not Path(gguf).is_file():
            raise ConfigError(
                f"models.{name}.gguf: file {gguf!r} does not exist; fix the path (relative to "
                "the directory you run snakemake in), or give `path` (a hub repository or "
                "folder) and the file's name as `gguf`."
            )
        return
    if Path(path).is_dir():
        if not (Path(path) / gguf).is_file():
            raise ConfigError(
                f"models.{name}.gguf: folder {path!r} has no file {gguf!r}; fix `gguf` (the "
                "file name inside `path`) or `path`."
            )
        return
    if path.startswith((".", "/", "~")) or not HUB_ID_RE.match(path):
        raise ConfigError(
            f"models.{name}.path: {path!r} is neither an existing folder nor a hub id of the "
            "form `org/name` to find the GGUF file in; fix the path or the id."
        )


def _dataset_spec(
    name: str, entry: Mapping[str, Any], rating_schema: Mapping[str, Any] | None = None
) -> DatasetSpec:
    from crossprobe.datasets import FAMILIES

    builtin = entry.get("builtin")
    template, answers = DEFAULT_TEMPLATE, DEFAULT_ANSWERS
    path, hub = entry.get("path"), None
    if "hub" in entry or "preset" in entry:
        from crossprobe.presets import hub_dataset, preset_prompt

        ds = hub_dataset(name, entry)
        path, hub = str(ds.path), {"source": asdict(ds.source), "preset": ds.preset}
        if ds.preset is not None:
            template, answers = preset_prompt(ds.preset)
    elif builtin is not None:
        if builtin not in FAMILIES:
            raise ConfigError(
                f"datasets.{name}.builtin: unknown family {builtin!r}; "
                f"choose one of {', '.join(sorted(FAMILIES))}."
            )
        template, answers = FAMILIES[builtin].template, FAMILIES[builtin].answers
    else:
        p = Path(entry["path"])
        if not p.is_file():
            raise ConfigError(
                f"datasets.{name}.path: file {str(p)!r} does not exist; fix the path "
                "(relative to the directory you run snakemake in)."
            )
    template = entry["template"] or template
    if "{statement}" not in template:
        raise ConfigError(
            f"datasets.{name}.template: {template!r} has no `{{statement}}` placeholder; add it."
        )
    answers = tuple(entry["answers"] or answers)
    if answers[0] == answers[1]:
        raise ConfigError(f"datasets.{name}.answers: the two answers must differ.")
    group = entry.get("group")
    if group is None and (builtin is not None or hub is not None):
        from crossprobe.datasets import GROUP_COLUMN

        group = GROUP_COLUMN
    return DatasetSpec(
        name=name,
        builtin=builtin,
        path=path,
        hub=hub,
        template=template,
        answers=(answers[0], answers[1]),
        group=group,
        prompt_format=entry["prompt_format"],
        system_prompt=entry["system_prompt"],
        targets=_targets(entry["targets"]),
        rating=_rating(name, entry["rating"], rating_schema or {}, _targets(entry["targets"])),
    )


def _rating(
    name: str, entry: Any, schema: Mapping[str, Any], targets: tuple[tuple[str, str], ...]
) -> Mapping[str, Any] | None:
    """``datasets.<name>.rating`` with its defaults, checked (``ConfigError`` naming the key)."""
    if entry is None:
        return None
    from crossprobe.preference.rating import TARGET, RatingSpec

    full = _with_defaults(entry, schema)
    try:
        RatingSpec(**full)
    except ConfigError as e:
        raise ConfigError(f"datasets.{name}.rating: {e}") from None
    if TARGET in dict(targets):
        raise ConfigError(f"datasets.{name}.targets: {TARGET!r} is the rating's own target")
    return {k: full[k] for k in ("template", "low", "high")}


def _targets(entry: Any) -> tuple[tuple[str, str], ...]:
    """``datasets.<name>.targets`` as (target name, column) pairs: a list names each target
    after its column."""
    if isinstance(entry, Mapping):
        return tuple((str(k), str(v)) for k, v in entry.items())
    return tuple((str(c), str(c)) for c in entry)


# ---------------------------------------------------------------------------------------------
# Checks on the inputs themselves (files, layer ranges, answer tokens, prompt floors)


def check_inputs(run: RunConfig) -> None:
    """Check every model and dataset the run names, before any job: one error lists them all.

    Cheap by design: local model configs and tokenizers are read from their JSON files (no
    weights, no torch); hub models are checked from the local cache when present and otherwise
    by the first job that loads them.
    """
    from crossprobe.datasets import check_disjoint

    errors: list[str] = []
    frames = {}
    for spec in run.datasets.values():
        try:
            frames[spec.name] = _check_dataset(spec, run)
        except ConfigError as e:
            errors.append(str(e))
    try:  # train, align and test statements are disjoint, within and across datasets
        check_disjoint(frames)
    except ConfigError as e:
        errors.append(str(e))
    for model in run.models.values():
        try:
            _check_model(model, run)
            _check_geometry_format(model, run)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("invalid inputs:\n  " + "\n  ".join(errors))


def _check_dataset(spec: DatasetSpec, run: RunConfig) -> pd.DataFrame:
    """The dataset's table with its splits, after checking it (``ConfigError`` if it fails)."""
    from crossprobe.datasets import (
        generate_builtin,
        read_table,
        split_keys,
        validate_table,
        with_splits,
    )

    if spec.builtin:
        df, source = generate_builtin(spec.builtin), f"datasets.{spec.name} (built-in)"
    elif spec.hub is not None:
        from crossprobe.presets import hub_dataset

        ds = hub_dataset(spec.name, {"hub": spec.hub["source"], "preset": spec.hub["preset"]})
        ds.ensure()
        df, source = read_table(ds.path), f"datasets.{spec.name} ({ds.path})"
    else:
        assert spec.path is not None  # a dataset is built-in or a file (validate_config)
        df, source = read_table(spec.path), f"datasets.{spec.name} ({spec.path})"
    validate_table(df, source=source)
    if spec.group is not None:
        split_keys(df, spec.group, source=f"datasets.{spec.name}.group")
    split = with_splits(df, run.splits, group=spec.group)
    check_targets(split, spec.targets, run.regression.min_rows, source=f"datasets.{spec.name}")
    positives = int(((split["split"] == "test") & (split["label"] > 0.5)).sum())
    floor = run.transfer.min_prompts
    if positives < floor and not run.transfer.allow_unscored:
        raise ConfigError(
            f"{source}: {positives} test statements with label 1, fewer than "
            f"transfer.min_prompts={floor}; add rows, lower transfer.min_prompts, or set "
            "transfer.allow_unscored: true to report such cells unscored."
        )
    return split


def check_targets(
    df: pd.DataFrame, targets: tuple[tuple[str, str], ...], min_rows: int, *, source: str
) -> None:
    """Each target is a column of finite numbers, non-constant with ``min_rows`` rows or more in
    `train` and in `test` (``ConfigError`` naming the column otherwise)."""
    import numpy as np
    import pandas as pd

    for name, col in targets:
        where = f"{source}.targets.{name}: column {col!r}"
        if col not in df.columns:
            raise ConfigError(f"{where} is not in the table (columns: {list(df.columns)})")
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ConfigError(
                f"{where} has {int(bad.sum())} value(s) that are not finite numbers, e.g. "
                f"{df[col][bad].head(3).tolist()}; fix or drop those rows"
            )
        for split in ("train", "test"):
            v = values[(df["split"] == split).to_numpy()]
            if len(v) < min_rows:
                raise ConfigError(
                    f"{where}: {len(v)} {split} rows, fewer than regression.min_rows={min_rows}; "
                    "add rows or lower regression.min_rows"
                )
            if np.ptp(v) == 0:
                raise ConfigError(
                    f"{where} is constant ({v[0]:g}) in {split}; a regression probe needs a "
                    "target that varies"
                )


def _check_model(spec: ModelSpec, run: RunConfig) -> None:
    from crossprobe.layers import resolve_layers

    info = _model_info(spec, run)
    if info.n_layers is not None:
        for value in spec.layers:
            try:
                resolve_layers([value], info.n_layers, model=spec.name)
            except ConfigError as e:
                raise ConfigError(f"models.{spec.name}.layers: {e}") from None
    for ds in run.datasets.values():
        answers = spec.answers_for(ds)
        where = f"models.{spec.name}.answers" if spec.answers else f"datasets.{ds.name}.answers"
        for answer in answers:
            if info.single_token is not None and not info.single_token(answer):
                raise ConfigError(
                    f"models.{spec.name}: answer {answer!r} of dataset {ds.name!r} is not exactly "
                    f"one token in {spec.name}'s tokenizer; choose answers that are (e.g. with a "
                    f"leading space) via {where}."
                )
        if ds.rating is not None and info.single_token is not None:
            _check_rating(spec, ds, info)
        fmt = spec.format_for(ds)
        key = (
            f"models.{spec.name}.prompt_format"
            if spec.prompt_format
            else f"datasets.{ds.name}.prompt_format"
        )
        # A hub model not in the local cache is checked by its first job instead.
        if fmt == "chat" and info.prompt_check is not None and info.chat_template is None:
            raise ConfigError(
                f"{key}: chat needs a chat template, and {spec.name}'s tokenizer has none; use "
                f"prompt_format raw for {spec.name} (models.{spec.name}.prompt_format: raw)."
            )
        if info.prompt_check is not None:
            problems = info.prompt_check(ds, fmt, answers)
            if problems:
                raise ConfigError(
                    f"models.{spec.name} on dataset {ds.name} ({fmt} prompts, from {key}): "
                    + "; ".join(problems)
                    + "."
                )


def _check_geometry_format(spec: ModelSpec, run: RunConfig) -> None:
    """A model that the geometry stages prompt through its chat template has one (checked
    where the tokenizer is on this machine; otherwise by the job)."""
    g = run.geometry
    if not g.enabled or spec.name not in g.models or g.format_for(spec) != "chat":
        return
    info = _model_info(spec, run)
    if info.prompt_check is not None and info.chat_template is None:
        raise ConfigError(
            f"geometry.prompt_format: chat needs a chat template, and {spec.name}'s tokenizer "
            f"has none; give {spec.name} raw there"
        )


def _check_rating(spec: ModelSpec, ds: DatasetSpec, info: _ModelInfo) -> None:
    """The rating digits are tokens of the model, and its rating prompt passes the checks."""
    fmt = spec.format_for(ds)
    try:
        template, tokens = ds.rating_spec.for_model(fmt, info.single_token)
    except ConfigError as e:
        raise ConfigError(f"models.{spec.name} on datasets.{ds.name}.rating: {e}") from None
    if info.prompt_check is not None:
        from dataclasses import replace

        problems = info.prompt_check(replace(ds, template=template), fmt, tokens[:2])
        if problems:
            raise ConfigError(
                f"models.{spec.name} on datasets.{ds.name}.rating ({fmt} prompts): "
                + "; ".join(problems)
                + "."
            )


@dataclass(frozen=True)
class _ModelInfo:
    n_layers: int | None
    single_token: Any  # Callable[[str], bool] | None
    chat_template: str | None = None
    prompt_check: Any = None  # Callable[[DatasetSpec, str], list[str]] | None


def _model_info(spec: ModelSpec, run: RunConfig) -> _ModelInfo:
    if spec.base is not None:
        return _model_info(_base_spec(spec, run), run)
    if spec.gguf is not None:
        return _gguf_info(spec)
    if spec.zoo is not None:
        from crossprobe.zoo.spec import ZooSpec, zoo_answers

        zspec = ZooSpec.from_dict(spec.zoo)
        allowed = zoo_answers(zspec)

        def zoo_check(ds: DatasetSpec, fmt: str, answers: tuple[str, str]) -> list[str]:
            return []  # the zoo's tokenizers add no special tokens; they have no chat template

        def zoo_single(a: str) -> bool:  # a byte-level BPE has every byte as a token
            return a in allowed or (zspec.tokenizer == "bpe" and len(a.encode()) == 1)

        return _ModelInfo(zspec.n_layers, zoo_single, None, zoo_check)
    config_file = _locate(spec, "config.json")
    tokenizer_file = _locate(spec, "tokenizer.json")
    n_layers = _n_layers_from_json(config_file) if config_file else None
    single = _tokenizer_check(tokenizer_file) if tokenizer_file else None
    if tokenizer_file is None:
        return _ModelInfo(n_layers, single)
    if not any(ds_fmt == "chat" for ds_fmt in _formats(spec, run)):
        return _ModelInfo(n_layers, single, None, raw_prompt_check(tokenizer_file))
    from crossprobe.models import load_tokenizer

    tok = load_tokenizer(str(tokenizer_file.parent))
    return _ModelInfo(
        n_layers, single, getattr(tok, "chat_template", None), tokenizer_prompt_check(tok)
    )


def _formats(spec: ModelSpec, run: RunConfig) -> set[str]:
    g = run.geometry
    geometry = {g.format_for(spec)} if g.enabled and spec.name in g.models else set()
    return {spec.format_for(ds) for ds in run.datasets.values()} | geometry


def _base_spec(spec: ModelSpec, run: RunConfig) -> ModelSpec:
    """The model a fine-tuned zoo entry starts from (``ConfigError`` if unknown or circular)."""
    seen = [spec.name]
    current = spec
    while current.base is not None:
        base = current.base
        if base not in run.models:
            raise ConfigError(
                f"models.{spec.name}.zoo.base: {base!r} is not a model of this run; name one of "
                f"{', '.join(sorted(set(run.models) - {spec.name}))}."
            )
        if base in seen:
            raise ConfigError(
                f"models.{spec.name}.zoo.base: fine-tuning goes round in a circle "
                f"({' -> '.join([*seen, base])}); start the chain from a loaded model."
            )
        seen.append(base)
        current = run.models[base]
    return current


def _gguf_info(spec: ModelSpec) -> _ModelInfo:
    """Layers and answer tokens of a GGUF model, from the file's header (no weights read)."""
    from crossprobe.convert import check_header, read_header, single_token_check

    where = f"models.{spec.name}.gguf"
    local = spec.local_gguf
    if local is None:  # a file in a hub repository: checked from the local cache if there
        assert spec.path is not None and spec.gguf is not None
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(spec.path, spec.gguf, revision=spec.revision)
        except Exception:  # a malformed cache must not stop planning; the job checks again
            return _ModelInfo(None, None)
        if not isinstance(found, str):
            return _ModelInfo(None, None)
        local = Path(found)
    try:
        header = read_header(local, tokens=True)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    check_header(header, where)
    return _ModelInfo(
        header.n_layers,
        single_token_check(header),
        header.metadata.get("tokenizer.chat_template"),
        gguf_prompt_check(header),
    )


def _locate(spec: ModelSpec, filename: str) -> Path | None:
    """A model file from its local directory or, for hub ids, from the local hub cache."""
    assert spec.path is not None
    local = Path(spec.path)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.path, filename, revision=spec.revision)
    except Exception:  # a malformed cache must not stop planning; the job checks again
        return None
    return Path(found) if isinstance(found, str) else None


def _n_layers_from_json(path: Path) -> int | None:
    import json

    cfg = json.loads(path.read_text())
    for section in (cfg.get("text_config") or {}, cfg):
        for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
            if isinstance(section.get(key), int):
                return int(section[key])
    return None


def _tokenizer_check(path: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    unk = tok.token_to_id("<unk>")

    def single(answer: str) -> bool:
        ids = tok.encode(answer, add_special_tokens=False).ids
        return len(ids) == 1 and ids[0] != unk

    return single
