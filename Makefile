# Two entry points for a new user: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
TEST_WORKERS ?= 3

.PHONY: run test test-fast embedded-data lint bench-quality bench-thick bench-uncertainty bench-speed eclare-env lock clean

$(BIN)/activate: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $(BIN)/activate

# Embedded volumes that only ship inside packages on the package index (pycortex's S1), fetched once into
# $MRISR_DATA (default ~/.cache/mrisr) and verified; a no-op when the cache is complete.
embedded-data: $(BIN)/activate
	$(BIN)/python -m mrisr.data.registry

run: embedded-data
	$(BIN)/snakemake --cores $(CORES)

# The whole suite in pytest-xdist workers, grouped and ordered by tests/conftest.py. Three workers on two cores:
# workflow runs leave a core idle while they wait on job start-up, Slurm and the disk.
test: embedded-data
	$(BIN)/python -m pytest -ra --durations=15 -n $(TEST_WORKERS) --no-loadscope-reorder

# Unit tests only: no workflow runs, no Slurm, no ROBEX, ANTs or torchrun (about a minute on 2 cores).
test-fast: $(BIN)/activate
	$(BIN)/python -m pytest -ra -m "not workflow and not slurm and not slow"

lint: $(BIN)/activate
	$(BIN)/snakemake --lint

bench-quality: $(BIN)/activate
	$(BIN)/python benchmarks/quality.py

# ECLARE (the thick-slice suite's self-supervised peer) in an environment of its own: it pins its own scipy and
# radifox-utils, which must never meet the project's lock. The suite leaves ECLARE out when this is absent.
ECLARE_VENV := .eclare-venv
eclare-env: $(ECLARE_VENV)/bin/run-eclare

$(ECLARE_VENV)/bin/run-eclare:
	$(PYTHON) -m venv $(ECLARE_VENV)
	$(ECLARE_VENV)/bin/pip install --quiet torch==2.13.0 eclare==1.0.1

# Thick-slice scans beside ECLARE: 4.5 mm slices along z, x and y, on make run's test brains and on S1 held out
# (CPU: about 30 min a model and fold, ECLARE about 15 min a subject and axis).
bench-thick: $(BIN)/activate
	$(BIN)/python benchmarks/quality.py --suite thick --folds loro

# Sampler settings against the calibrated intervals and the error ranking, on the models of a finished `make run`.
bench-uncertainty: $(BIN)/activate
	$(BIN)/python benchmarks/uncertainty.py

bench-speed: $(BIN)/activate
	$(BIN)/python benchmarks/speed.py

# Re-resolve the pinned environment (needs the network).
lock:
	rm -rf /tmp/mrisr-lock && $(PYTHON) -m venv /tmp/mrisr-lock
	/tmp/mrisr-lock/bin/pip install --quiet -e '.[test]'
	( sed -n 1,2p requirements.lock; /tmp/mrisr-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf results logs .snakemake
