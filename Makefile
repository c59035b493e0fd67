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

validate-gpu: $(STAMP)
	$(VENV)/bin/memsim validate --suite quick --out measurements

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis .ruff_cache
