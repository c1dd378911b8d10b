# crossprobe: `make run` (set-up plus the default workflow) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test check lint format report clean

setup: $(VENV)/.installed

# Exact versions from constraints.txt (torch 2.13.0 is the CPU build used locally).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/default --cores $(CORES)

report: run
	$(BIN)/snakemake --profile profiles/default --cores $(CORES) --report results/report.html

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/mypy src
	$(BIN)/snakemake --lint --cores 1

format: setup
	$(BIN)/ruff format src tests benchmarks workflow/scripts
	$(BIN)/ruff check --fix src tests benchmarks workflow/scripts
	$(BIN)/snakefmt Snakefile workflow/rules

check: lint test

clean:
	rm -rf results .snakemake
