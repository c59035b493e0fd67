# memsim: `make demo`, `make test`, `make bench`, `make validate-gpu`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-deep lint bench validate-gpu validate-silicon fit-classes clean

# pip's and setuptools' notices go to $(VENV)/install.log, shown only when the install fails
# (an editable install of remapped package folders always prints setuptools' information-only
# "Editable installation" notice).
INSTALL_LOG := $(VENV)/install.log
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing memsim into $(VENV) (log: $(INSTALL_LOG))"
	@$(PY) -m pip install -q --upgrade pip > $(INSTALL_LOG) 2>&1 || (cat $(INSTALL_LOG); exit 1)
	@$(PY) -m pip install -q -e '.[dev]' >> $(INSTALL_LOG) 2>&1 || (cat $(INSTALL_LOG); exit 1)
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/memsim attention --algorithm flash2 --gpu h100-sxm --batch 1 --heads 32 \
		--kv-heads 8 --seq-len 8192 --head-dim 128 --causal

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n 2 --dist loadfile

# The laws again with hypothesis's `deep` profile (tests/conftest.py): random, 500 examples
# per property; the properties of one call, of the trace model and of the tile geometry.
DEEP_TESTS ?= tests/test_properties.py tests/test_trace_laws.py tests/test_geometry.py \
	tests/test_tiling.py tests/test_l2_estimate.py
test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -n 2 --dist loadfile $(DEEP_TESTS)

bench: $(STAMP)
	$(PY) -m benchmarks

# On a GPU machine (no network needed): the Python that has torch and numba-cuda (PYTHON),
# the wheels carried in $(WHEELS) (numpy 2.4 for numba-cuda 0.30, pydantic), memsim
# installed as a regular package into $(GPU_SITE), and the quick suite run from outside the
# repository. Results: measurements/<profile>/<run-id>.jsonl. Leaves the GPU's clocks and
# settings alone. Why not the repo's editable venv: on an H100 (2026-11-22) every Numba
# kernel failed to compile ("Signature mismatch: 2 argument types given, but function takes
# 1 arguments") when memsim was imported from the source tree, editable or run from the
# repository root, and compiled when imported from an installed copy outside it. No log of
# that failure was committed (the one failed run, quick-2026-11-22T20-13-13Z, failed for
# another reason: memsim.kernels.bench had not landed), and the two set-ups also differed
# in where numba and numba-cuda came from (a venv over the image's site-packages against
# the carried wheels first on PYTHONPATH), so the cause is not pinned down; every run now
# records the files memsim, memsim.kernels, numba and numba.cuda were imported from
# (environment.imported_from) to tell the next time.
# The quick suite ends with its Nsight Compute cases, first six runs of a store-only kernel
# (ncu target `store`: a fill_ of 4, 24, 96 MiB under --cache-control all and none) that
# decide how the trace counts dram__bytes_write (docs/DESIGN.md, "What dram__bytes_write
# counts"); read them with `python -m memsim.validation.ncu_compare $(VALIDATE_OUT)/<profile>`.
# Rehearsal without a GPU: NUMBA_ENABLE_CUDASIM=1 make validate-gpu PYTHON=.venv/bin/python
# SUITE=sim PROFILE=h100-sxm VALIDATE_OUT=/tmp/sim (the same install and import path; each
# Numba kernel launched in the simulator and checked against the reference, nothing timed).
WHEELS ?= .whl
GPU_SITE ?= /tmp/memsim-gpu
SUITE ?= quick
PROFILE ?=
VALIDATE_OUT ?= $(CURDIR)/measurements
validate-gpu:
	rm -rf $(GPU_SITE) && mkdir -p $(GPU_SITE)/deps $(GPU_SITE)/run
	if ls $(WHEELS)/*.whl >/dev/null 2>&1; then \
	  $(PYTHON) -m pip install -q --no-index --no-deps --target $(GPU_SITE)/deps $(WHEELS)/*.whl; fi
	$(PYTHON) -m pip install -q --no-index --no-deps --no-build-isolation \
	  --target $(GPU_SITE)/memsim .
	cd $(GPU_SITE)/run && PYTHONPATH=$(GPU_SITE)/memsim:$(GPU_SITE)/deps PYTHONUNBUFFERED=1 \
	  $(PYTHON) -m memsim validate --suite $(SUITE) $(if $(PROFILE),--profile $(PROFILE)) \
	  --out $(VALIDATE_OUT)

# Every row of aiconfigurator-core's measured kernel tables (installed as the `silicon` extra
# if missing) against memsim, on the CPU: tables by op class, GPU and backend, and the
# calibration fitted on H100/H200 and checked on the GPUs it never saw. The run's records go
# to measurements/aiconfigurator/runs/ (not committed); its summary to $(SILICON_DIR).
SILICON_DIR ?= measurements/aiconfigurator/$(shell date -u +%Y-%m-%d)
SILICON_RUN ?= measurements/aiconfigurator/runs/full-$(shell date -u +%Y%m%dT%H%M%S)
validate-silicon: $(STAMP)
	$(PY) -c "import aiconfigurator_core" 2>/dev/null || $(PY) -m pip install -q -e '.[silicon]'
	$(VENV)/bin/memsim validate --source aiconfigurator --full --out $(SILICON_RUN)
	mkdir -p $(SILICON_DIR) && cp $(SILICON_RUN)/summary.json $(SILICON_RUN)/summary.txt $(SILICON_RUN)/points.json \
	  $(SILICON_DIR)/

# The kernel classes (memsim/ops/kernel_classes.toml) refitted on the H100 and H200 rows of
# aiconfigurator-core, CPU only (memsim.silicon.fit): FIT_CLASSES names the classes (shell
# patterns, comma-separated; default every class with its own numbers), FIT_SAMPLE the rows
# per GPU and class. Rewrites only those entries, each with its rows and errors as source.
FIT_CLASSES ?=
FIT_SAMPLE ?= 2000
FIT_DIR ?= measurements/aiconfigurator/fits/$(shell date -u +%Y%m%dT%H%M%S)
fit-classes: $(STAMP)
	$(PY) -c "import aiconfigurator_core, scipy" 2>/dev/null || $(PY) -m pip install -q -e '.[silicon]'
	$(VENV)/bin/memsim validate --source aiconfigurator --fit-classes --write \
	  $(if $(FIT_CLASSES),--classes '$(FIT_CLASSES)') --sample $(FIT_SAMPLE) --out $(FIT_DIR)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis .ruff_cache
