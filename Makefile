# memsim: `make demo`, `make test`, `make bench`, `make validate-gpu`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench validate-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/memsim attention --algorithm flash2 --gpu h100-sxm --batch 1 --heads 32 \
		--kv-heads 8 --seq-len 8192 --head-dim 128 --causal

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m benchmarks

# On a GPU machine with no network (the image's torch and transformers in PYTHON's site): a
# venv that sees them (--system-site-packages, plus PYTHON's own site-packages when PYTHON
# is itself a venv's), the wheels carried in $(WHEELS) (numpy 2.4 for numba-cuda 0.30,
# pydantic), memsim installed without fetching anything, then the quick suite. Results:
# measurements/<profile>/<run-id>.jsonl. Leaves the GPU's clocks and settings alone.
WHEELS ?= .whl
validate-gpu:
	test -x $(PY) || { $(PYTHON) -m venv --system-site-packages $(VENV) && \
	  $(PYTHON) -c 'import site; print("\n".join(site.getsitepackages()))' \
	    > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/parent-site.pth"; }
	if ls $(WHEELS)/*.whl >/dev/null 2>&1; then \
	  $(PY) -m pip install -q --no-index --no-deps $(WHEELS)/*.whl; fi
	$(PY) -m pip install -q --no-index --no-deps --no-build-isolation -e .
	PYTHONUNBUFFERED=1 $(VENV)/bin/memsim validate --suite quick --out measurements

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis .ruff_cache
