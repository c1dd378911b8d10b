"""The package's layering: a shared core below the studies, and no study importing another's.

Every ``import`` is read from the source (function-level imports included), so a lazy import
across studies fails here as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "crossprobe"
STUDIES = ("generalisation", "transfer", "preference", "crosslabels", "geometry")
#: Packages below the studies beside the core modules: the zoo (a model source the config
#: reads) and the cluster side (how jobs start).
INFRASTRUCTURE = ("zoo", "cluster")
#: The two modules that know every study: the config composes each study's section
#: (``<study>/options.py``), and ``entry`` dispatches a rule to its study's jobs.
COMPOSERS = ("config", "entry")


def _imports(path: Path) -> set[str]:
    """The crossprobe modules ``path`` imports, as dotted names below ``crossprobe``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "crossprobe":
                found |= {a.name for a in node.names}
            elif node.module.startswith("crossprobe."):
                found.add(node.module.removeprefix("crossprobe."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("crossprobe.")
                for a in node.names
                if a.name.startswith("crossprobe.")
            }
    return found


def _owner(module: str) -> str:
    return module.split(".")[0]


def test_every_study_and_infrastructure_package_exists():
    for name in (*STUDIES, *INFRASTRUCTURE):
        assert (PACKAGE / name / "__init__.py").is_file(), name


@pytest.mark.parametrize("study", STUDIES)
def test_no_study_imports_another_study(study):
    bad = {
        f"{path.relative_to(PACKAGE)} imports crossprobe.{m}"
        for path in (PACKAGE / study).rglob("*.py")
        for m in _imports(path)
        if _owner(m) in STUDIES and _owner(m) != study
    }
    assert not bad, sorted(bad)


def test_the_core_imports_no_study():
    core = [p for p in PACKAGE.glob("*.py") if p.stem not in COMPOSERS]
    infra = [p for name in INFRASTRUCTURE for p in (PACKAGE / name).rglob("*.py")]
    bad = {
        f"{path.relative_to(PACKAGE)} imports crossprobe.{m}"
        for path in core + infra
        for m in _imports(path)
        if _owner(m) in STUDIES or _owner(m) == "entry" and path.parent.name != "cluster"
    }
    assert not bad, sorted(bad)


def test_the_scanner_sees_lazy_imports(tmp_path):
    """The check above can fail: an import inside a function is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from crossprobe.transfer.cells import score_cell\n")
    assert _imports(f) == {"transfer.cells"}


def test_each_study_lists_its_rules_and_every_rule_has_a_job():
    import re

    from crossprobe.entry import ENTRY_POINTS, JOB_MODULES

    rules_dir = PACKAGE.parents[1] / "workflow" / "rules"
    declared = set()
    for smk in rules_dir.glob("*.smk"):
        for rule in re.findall(r"^rule (\w+):", smk.read_text(), flags=re.M):
            if re.search(rf"^rule {rule}:(?:(?!^rule ).)*entry\(", smk.read_text(), re.M | re.S):
                declared.add(rule)
    assert declared == set(ENTRY_POINTS)
    for module in JOB_MODULES:  # each study's rules file is named after its package
        study = module.__name__.split(".")[1]
        if study in STUDIES:
            assert (rules_dir / f"{study}.smk").is_file(), study
            own = re.findall(r"^rule (\w+):", (rules_dir / f"{study}.smk").read_text(), re.M)
            assert set(module.JOBS) <= set(own), study
