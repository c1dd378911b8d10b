"""Datasets from the Hugging Face hub (``datasets.<name>.hub`` and ``preset``), made into the
statement tables every other source produces.

A hub dataset is fetched once, by ``python -m crossprobe.hub fetch`` on a machine with network,
into the run's table cache (``data/hub/`` under the working directory): a Parquet table of
statements, labels and groups with a JSON record beside it (the source, the revision the hub
resolved, and a checksum of the rows). The workflow reads only that table, so no job downloads
anything; a source the cache lacks stops the plan with the command that fetches it. Sources
that need no network (local files read through ``datasets``: ``parquet``, ``json``, ``csv``, a
folder written by ``save_to_disk``; or a hub dataset already in the local Hugging Face cache)
are made into their table when the workflow is planned.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crossprobe.errors import ConfigError
from crossprobe.io import atomic_path

#: Where fetched tables live, relative to the directory Snakemake runs in.
TABLE_DIR = Path("data") / "hub"
#: ``datasets`` builders that read local files (``data_files``) and need no network.
LOCAL_BUILDERS = ("parquet", "json", "csv", "arrow", "text")
FETCH_COMMAND = "python -m crossprobe.hub fetch --configfile CONFIG"


@dataclass(frozen=True)
class HubSource:
    """Where a dataset's rows come from, and which columns say what."""

    path: str
    """A hub dataset id (``owner/name``), a local builder (``parquet``, ``json``, ``csv``) with
    ``data_files``, or a folder written by ``Dataset.save_to_disk``."""
    name: str | None = None
    """The dataset's config name on the hub (``super_glue``'s ``rte``), if it has several."""
    splits: tuple[str, ...] = ("train",)
    """The source splits whose rows are pooled (crossprobe splits them again, by fact)."""
    revision: str | None = None
    """A hub branch, tag or commit; None: the default branch. The commit it resolved to is
    recorded beside the table."""
    data_files: tuple[str, ...] = ()
    """Files a local builder reads."""
    statement: str = "statement"
    """Column holding the statement (generic sources)."""
    label: str = "label"
    """Column holding the label: binary, or real-valued for regression targets."""
    group: str | None = None
    """Column naming the fact each row states, so that its rows share a split; None: each
    source row is its own fact."""
    limit: int | None = None
    """At most this many source rows (questions), picked by a hash of their identity, never by
    the source's order; None: every row."""


@dataclass(frozen=True)
class Provenance:
    """What a fetched table was made from (written beside it as JSON)."""

    source: dict[str, Any]
    preset: str | None
    resolved_revision: str | None
    rows: int
    sha256: str
    """Checksum of the table's statement, label and group columns, row by row."""


# ---------------------------------------------------------------------------------------------
# Loading source rows


def _snapshot(src: HubSource, *, online: bool) -> tuple[str, str | None]:
    """The local folder of a hub dataset's files and the commit it resolved to.

    Offline, only the local Hugging Face cache is read (``LocalEntryNotFoundError`` when the
    dataset is not there)."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        src.path, repo_type="dataset", revision=src.revision, local_files_only=not online
    )
    return folder, Path(folder).name


def load_rows(
    src: HubSource, *, online: bool = False
) -> tuple[dict[str, pd.DataFrame], str | None]:
    """Every requested split of ``src`` as a DataFrame, and the revision it resolved to.

    A missing split or a source that cannot be read raises ``ConfigError`` naming it."""
    import datasets

    revision: str | None = None
    try:
        if Path(src.path).is_dir() and (Path(src.path) / "dataset_dict.json").is_file():
            loaded: Any = datasets.load_from_disk(src.path)
        elif Path(src.path).is_dir() and (Path(src.path) / "state.json").is_file():
            loaded = {src.splits[0]: datasets.load_from_disk(src.path)}
        elif src.path in LOCAL_BUILDERS:
            loaded = datasets.load_dataset(src.path, data_files=list(src.data_files))
        else:
            folder, revision = _snapshot(src, online=online)
            loaded = datasets.load_dataset(folder, src.name)
    except ConfigError:
        raise
    except Exception as e:
        if type(e).__name__ == "LocalEntryNotFoundError":
            raise
        raise ConfigError(f"{src.path}: could not be read ({type(e).__name__}: {e})") from e
    missing = [s for s in src.splits if s not in loaded]
    if missing:
        raise ConfigError(
            f"{src.path}: no split {missing} (it has {sorted(loaded)}); name existing splits"
        )
    return {s: loaded[s].to_pandas() for s in src.splits}, revision


def pick(keys: Sequence[str], limit: int | None, salt: str) -> list[int]:
    """Indices of at most ``limit`` keys, chosen by the sha256 of ``salt`` and each key (the
    same keys give the same choice whatever their order); in their original order."""
    if limit is None or limit >= len(keys):
        return list(range(len(keys)))
    rank = sorted(
        range(len(keys)), key=lambda i: hashlib.sha256(f"{salt}\0{keys[i]}".encode()).hexdigest()
    )
    return sorted(rank[:limit])


def generic_table(frames: Mapping[str, pd.DataFrame], src: HubSource) -> pd.DataFrame:
    """A table from a source that already holds statements: its columns mapped, its rows
    limited; every other column kept as metadata."""
    parts = []
    for split, df in frames.items():
        for col in (src.statement, src.label, src.group):
            if col is not None and col not in df.columns:
                raise ConfigError(
                    f"{src.path} ({split}): no column {col!r} (it has {list(df.columns)}); "
                    "map the columns with hub.statement, hub.label and hub.group"
                )
        keys = [f"{split}:{i}" for i in range(len(df))]
        if src.group is not None:
            keys = [f"{split}:{g}" for g in df[src.group].astype(str)]
        out = df.rename(columns={src.statement: "statement", src.label: "label"}).copy()
        out["group"] = keys
        out.insert(0, "source_split", split)
        parts.append(out)
    table = pd.concat(parts, ignore_index=True)
    groups = list(dict.fromkeys(table["group"]))
    keep = {groups[i] for i in pick(groups, src.limit, src.path)}
    return table[table["group"].isin(keep)].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The table cache


def rows_sha256(table: pd.DataFrame) -> str:
    """Checksum of a table's statements, labels and groups, in row order."""
    h = hashlib.sha256()
    for s, y, g in zip(table["statement"], table["label"], table["group"], strict=True):
        h.update(f"{s}\0{y}\0{g}\n".encode())
    return h.hexdigest()


def source_key(src: HubSource, preset: str | None) -> str:
    """A short key of everything that decides a table's rows."""
    blob = json.dumps({"source": asdict(src), "preset": preset}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def table_path(name: str, src: HubSource, preset: str | None) -> Path:
    """Where dataset ``name``'s table lives (a changed source is a new file)."""
    return TABLE_DIR / f"{name}-{source_key(src, preset)}.parquet"


@dataclass(frozen=True)
class HubDataset:
    """A dataset of the run that comes from the hub (or a local file read by ``datasets``)."""

    name: str
    source: HubSource
    preset: str | None = None
    build: Callable[[Mapping[str, pd.DataFrame], HubSource], pd.DataFrame] = field(
        default=generic_table, compare=False
    )

    @property
    def path(self) -> Path:
        return table_path(self.name, self.source, self.preset)

    def make(self, *, online: bool) -> Provenance:
        """Load the source, build the table and write it (with its provenance) atomically."""
        revision: str | None
        if self.preset is not None and self.preset.startswith("got/"):
            from crossprobe.presets import got_frames

            frames, revision = got_frames(self.preset, TABLE_DIR / "got", online=online)
        else:
            frames, revision = load_rows(self.source, online=online)
        table = self.build(frames, self.source)
        if table.empty:
            raise ConfigError(f"datasets.{self.name}: the source gave no rows")
        prov = Provenance(
            source=asdict(self.source),
            preset=self.preset,
            resolved_revision=revision,
            rows=len(table),
            sha256=rows_sha256(table),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            table.to_parquet(tmp, index=False)
        with atomic_path(self.path.with_suffix(".json")) as tmp:
            Path(tmp).write_text(json.dumps(asdict(prov), indent=1, sort_keys=True) + "\n")
        return prov

    def ensure(self) -> None:
        """Make the table if it is missing and needs no network; else ``ConfigError`` with the
        command that fetches it."""
        if self.path.is_file() and self.path.with_suffix(".json").is_file():
            return
        try:
            self.make(online=False)
        except ConfigError as e:
            raise ConfigError(f"datasets.{self.name}: {e}") from None
        except Exception as e:  # not in the local cache (huggingface_hub's offline errors)
            where = self.preset or self.source.path
            raise ConfigError(
                f"datasets.{self.name}: {where} is not on this machine ({type(e).__name__}); "
                f"fetch it on a machine with network with `{FETCH_COMMAND}` (CONFIG: the config "
                f"file you run), which writes {self.path}"
            ) from None


# ---------------------------------------------------------------------------------------------
# `python -m crossprobe.hub fetch`


def hub_datasets(config: Mapping[str, Any]) -> list[HubDataset]:
    """The hub datasets a raw config names (``hub`` or ``preset`` entries)."""
    from crossprobe.presets import hub_dataset

    return [
        hub_dataset(name, entry)
        for name, entry in (config.get("datasets") or {}).items()
        if isinstance(entry, Mapping) and ("hub" in entry or "preset" in entry)
    ]


def fetch(config: Mapping[str, Any], *, log: Callable[[str], None] = print) -> list[Provenance]:
    """Download and build every hub dataset of ``config`` (on a machine with network)."""
    out = []
    for ds in hub_datasets(config):
        prov = ds.make(online=True)
        log(
            f"{ds.name}: {prov.rows} rows from {ds.preset or ds.source.path} "
            f"(revision {prov.resolved_revision}) -> {ds.path}"
        )
        out.append(prov)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(
        prog="python -m crossprobe.hub", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download and build every hub dataset of a config")
    f.add_argument("--configfile", default="config.yaml")
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = yaml.safe_load(Path(args.configfile).read_text()) or {}
    try:
        fetch(config)
    except ConfigError as e:
        print(f"crossprobe: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.exit(main())
