# The one script every rule runs: it calls the entry point named after the rule.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from crossprobe.entry import run  # noqa: E402

run(snakemake)  # noqa: F821
