"""Incremental reruns: a config change reruns exactly the jobs whose outputs it changes.

One real run of a tiny grid (zoo models a and b, two datasets) is shared by the module; each test
copies it (mtimes and Snakemake's metadata included), changes the config with an extra
`--configfile`, asserts the dry run's job list exactly, and for the changes that are cheap to
rerun, runs the workflow and asserts that no output outside those jobs was rewritten.

Every job costs several seconds of Python imports here, so the change that reruns a whole model
(a zoo seed) is checked by its dry run only; adding a model, adding a dataset (the two ways a
matrix grows), a template change and a bootstrap change are run for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
AGGREGATES = {
    "generalisation_table",
    "answers_table",
    "transfer_tables",
    "plot_transfer",
    "steering_tables",
    "crosslabels_table",
    "all",
}
#: One job over every model's probes and maps: it reruns when a probe or a map changes.
PROBE_AGGREGATES = {"similarity"}


def _zoo(arch: str, tokenizer: str, seed: int) -> dict:
    return {"zoo": {"arch": arch, "tokenizer": tokenizer, "seed": seed, "steps": 20, "d_model": 32}}


BASE = {
    "models": {"a": _zoo("llama", "word", 1), "b": _zoo("gpt2", "bpe", 2)},
    "datasets": {"larger_than": {"builtin": "larger_than"}, "parity": {"builtin": "parity"}},
    "transfer": {"min_prompts": 50, "bootstrap": 100, "null_directions": 2},
    "steering": {"alphas": [-0.5, 0.0, 0.5], "null_directions": 2, "prompts": 16},
}
MODELS, DATASETS = list(BASE["models"]), list(BASE["datasets"])
#: Jobs per (model, dataset), and per cell (ordered pair and dataset).
MODEL_DATASET_RULES = ("extract", "train", "ablate_self", "steer_self")
CARRIED_RULES = ("ablate_carried", "steer_carried")
CELL_RULES = ("align_dataset", *CARRIED_RULES, "correlate")

Job = tuple[str, frozenset]


def _snakemake(workdir: Path, *args: str, extra: Path | None = None) -> str:
    configs = [str(workdir / "config.yaml")] + ([str(extra)] if extra else [])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir)]
    cmd += ["--configfile", *configs, "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode:
        pytest.fail(f"snakemake {' '.join(args)} exited {proc.returncode}:\n{out[-5000:]}")
    return out


def _plan(workdir: Path, extra: Path | None = None) -> tuple[set[Job], set[str]]:
    """Jobs of a dry run as (rule, wildcards), and every output and log path they write."""
    out = _snakemake(workdir, "-n", extra=extra)
    jobs, paths, rule, wildcards = set(), set(), None, {}

    def close() -> None:
        if rule is not None:
            jobs.add((rule, frozenset(wildcards.items())))

    for line in out.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if m:
            close()
            rule, wildcards = m.group(1), {}
            continue
        m = re.match(r"^\s+(wildcards|output|log): (.*)$", line)
        if m and rule is not None:
            if m.group(1) == "wildcards":
                wildcards = dict(kv.split("=", 1) for kv in m.group(2).split(", "))
            else:
                paths.update(p.strip() for p in m.group(2).split(", "))
    close()
    return jobs, paths


def _job(rule: str, **wildcards: str) -> Job:
    return (rule, frozenset(wildcards.items()))


def _mtimes(workdir: Path) -> dict[str, int]:
    root = workdir / "results"
    return {
        str(p.relative_to(workdir)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
    }


def _written_by(path: str, outputs: set[str]) -> bool:
    """Whether a planned job writes `path`: an output, a file in an output directory, or a
    sibling format of an output figure (plots save a .pdf beside each declared .png)."""
    stem = str(Path(path).with_suffix(""))
    return any(
        path == o or path.startswith(o.rstrip("/") + "/") or str(Path(o).with_suffix("")) == stem
        for o in outputs
    )


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _rerun_and_check(workdir: Path, extra: Path, paths: set[str]) -> None:
    """Run with the changed config; every file not written by a planned job keeps its mtime."""
    before = _mtimes(workdir)
    _snakemake(workdir, extra=extra)
    after = _mtimes(workdir)
    rewritten = {p for p in before if p in after and after[p] != before[p]}
    assert not {p for p in rewritten if not _written_by(p, paths)}
    assert not {p for p in before if p not in after}
    assert _plan(workdir, extra)[0] == set(), "the changed config is not up to date after its run"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("base")
    _write(workdir / "config.yaml", BASE)
    _snakemake(workdir)
    return workdir


@pytest.fixture
def workdir(base_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst, symlinks=True)
    return dst


def test_copy_of_a_finished_run_is_up_to_date(workdir):
    assert _plan(workdir)[0] == set()


def _cells(pairs: list[tuple[str, str]], datasets: list[str]) -> set[Job]:
    """Every job of these cells: maps, carried ablation and steering, and correlation (only
    the correlation on the diagonal)."""
    out = set()
    for s, t in pairs:
        for d in datasets:
            rules = CELL_RULES if s != t else ("correlate",)
            out |= {_job(r, source=s, target=t, dataset=d) for r in rules}
    return out


def test_adding_a_model_runs_only_its_jobs(workdir):
    extra = _write(workdir / "add_model.yaml", {"models": {"c": _zoo("qwen3", "bpe", 3)}})
    jobs, paths = _plan(workdir, extra)
    new, old = "c", MODELS
    expected = {_job("zoo", model=new), _job("generalise", model=new)}
    for d in DATASETS:
        expected |= {_job(r, model=new, dataset=d) for r in MODEL_DATASET_RULES}
    pairs = [(m, new) for m in old] + [(new, m) for m in old] + [(new, new)]
    expected |= _cells(pairs, DATASETS)
    expected |= {_job("crosslabels", dataset=d) for d in DATASETS}  # its labels join each
    expected |= {_job(r) for r in AGGREGATES | PROBE_AGGREGATES}

    assert jobs == expected, (sorted(jobs - expected), sorted(expected - jobs))
    _rerun_and_check(workdir, extra, paths)


def test_bootstrap_change_reruns_only_correlate_and_aggregates(workdir):
    extra = _write(workdir / "bootstrap.yaml", {"transfer": {"bootstrap": 200}})
    jobs, paths = _plan(workdir, extra)
    expected = {
        _job("correlate", source=s, target=t, dataset=d)
        for s in MODELS
        for t in MODELS
        for d in DATASETS
    }
    expected |= {_job(r) for r in ("transfer_tables", "plot_transfer", "steering_tables", "all")}
    assert jobs == expected
    _rerun_and_check(workdir, extra, paths)


def test_model_change_reruns_only_that_model(workdir):
    """A per-model setting (here the zoo seed; `revision` for hub models) reruns only its jobs."""
    extra = _write(workdir / "seed.yaml", {"models": {"b": {"zoo": {"seed": 5}}}})
    jobs, _ = _plan(workdir, extra)
    changed, other = "b", "a"
    expected = {_job("zoo", model=changed), _job("generalise", model=changed)}
    for d in DATASETS:
        expected |= {_job(r, model=changed, dataset=d) for r in MODEL_DATASET_RULES}
    expected |= _cells([(other, changed), (changed, other), (changed, changed)], DATASETS)
    expected |= {_job("crosslabels", dataset=d) for d in DATASETS}
    expected |= {_job(r) for r in AGGREGATES | PROBE_AGGREGATES}
    assert jobs == expected


def _dataset_jobs(name: str) -> set[Job]:
    """What a new or changed dataset plans: every model's jobs on it, its cells, and the
    aggregates (each model's generalisation matrix among them)."""
    expected = {_job("crosslabels", dataset=name)}
    for m in MODELS:
        expected |= {_job(r, model=m, dataset=name) for r in MODEL_DATASET_RULES}
        expected.add(_job("generalise", model=m))
    expected |= _cells([(s, t) for s in MODELS for t in MODELS], [name])
    return expected | {_job(r) for r in AGGREGATES | PROBE_AGGREGATES}


def test_adding_a_dataset_runs_only_its_cells(workdir):
    """Each cell has maps of its own dataset (`transfer.align_on: each`): a new dataset plans
    only jobs that name it (and the aggregates), and running it rewrites no existing file."""
    extra = _write(workdir / "dataset.yaml", {"datasets": {"category": {"builtin": "category"}}})
    jobs, paths = _plan(workdir, extra)
    expected = _dataset_jobs("category") | {_job("dataset", dataset="category")}
    assert jobs == expected, (sorted(jobs - expected), sorted(expected - jobs))
    _rerun_and_check(workdir, extra, paths)


def test_a_dataset_template_reruns_only_that_datasets_cells(workdir):
    """A dataset's prompt changes what every model reads on it, and nothing else."""
    template = "Statement: {statement} Is that so? Answer:"
    extra = _write(workdir / "template.yaml", {"datasets": {"parity": {"template": template}}})
    jobs, paths = _plan(workdir, extra)
    expected = _dataset_jobs("parity") | {
        _job("dataset", dataset="parity")
    }  # its table holds prompts
    assert jobs == expected, (sorted(jobs - expected), sorted(expected - jobs))
    _rerun_and_check(workdir, extra, paths)


def test_a_declared_alignment_set_is_left_alone_by_a_new_dataset(workdir):
    """With `align_on: [larger_than, parity]` one map per pair pools those datasets' rows: it
    is refit when declared (a new map file), and a dataset outside the set refits no map."""
    declared = {"transfer": {"align_on": DATASETS}}
    extra = _write(workdir / "declared.yaml", declared)
    jobs, _ = _plan(workdir, extra)
    assert {_job("align", source=s, target=t) for s in MODELS for t in MODELS if s != t} <= jobs
    _snakemake(workdir, extra=extra)
    more = _write(
        workdir / "more.yaml", {**declared, "datasets": {"category": {"builtin": "category"}}}
    )
    jobs, _ = _plan(workdir, more)
    assert not {j for j in jobs if j[0] in ("align", "align_dataset")}
    names = {dict(w).get("dataset") for r, w in jobs if r in CELL_RULES}
    assert names == {"category"}


def test_ablated_positions_rerun_the_ablations_only(workdir):
    """`transfer.positions` decides what an ablation (and a steering vector) touches; with
    `position: last` nothing read for probes depends on it, so extraction, probes and maps stay."""
    extra = _write(workdir / "positions.yaml", {"transfer": {"positions": "all"}})
    jobs, _ = _plan(workdir, extra)
    expected = {
        _job(r, model=m, dataset=d)
        for m in MODELS
        for d in DATASETS
        for r in ("ablate_self", "steer_self")
    }
    cells = _cells([(s, t) for s in MODELS for t in MODELS], DATASETS)
    expected |= {j for j in cells if j[0] != "align_dataset"}
    expected |= {_job("crosslabels", dataset=d) for d in DATASETS}  # the answer margins
    expected |= {_job(r) for r in AGGREGATES - {"generalisation_table"}}
    assert jobs == expected


def test_steering_doses_rerun_only_the_steering(workdir):
    extra = _write(workdir / "doses.yaml", {"steering": {"alphas": [-1.0, 0.0, 1.0]}})
    jobs, _ = _plan(workdir, extra)
    expected = {_job("steer_self", model=m, dataset=d) for m in MODELS for d in DATASETS}
    expected |= {
        _job("steer_carried", source=s, target=t, dataset=d)
        for s in MODELS
        for t in MODELS
        for d in DATASETS
        if s != t
    }
    expected |= {_job("steering_tables"), _job("all")}
    assert jobs == expected


def test_adding_a_text_baseline_runs_only_its_jobs(workdir):
    """A baseline is probed like a model but runs no ablation, map or steering."""
    extra = _write(workdir / "baseline.yaml", {"baselines": {"text-minilm": {}}})
    jobs, _ = _plan(workdir, extra)
    new = "text-minilm"
    expected = {_job("generalise", model=new)}
    for d in DATASETS:
        expected |= {_job(r, model=new, dataset=d) for r in ("embed", "train")}
        expected.add(_job("crosslabels", dataset=d))
    expected |= {_job(r) for r in ("generalisation_table", "crosslabels_table", "all")}
    assert jobs == expected, (sorted(jobs - expected), sorted(expected - jobs))
