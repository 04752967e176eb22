# thpreplay: `make demo` and `make test` work from a clean clone (they build .venv themselves).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
THP    := $(VENV)/bin/thpreplay
OUT    ?= out

.PHONY: venv test demo bench bench-big clean samples-local

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -m "not slow"

# Ingest every bundled real capture and print what was read.
demo: venv
	@mkdir -p $(OUT)
	@for b in sample_traces/*/; do \
	  case "$$b" in */workload/|*/lab/) continue;; esac; \
	  name=$$(basename $$b); \
	  echo "== $$name"; \
	  $(THP) ingest $$b -o $(OUT)/$$name --force || exit 1; \
	done

# Performance figures for BENCHMARKS.md (needs root and perf; minutes, not part of `make test`).
bench: venv
	$(PY) benchmarks/bench_ingest.py

bench-big: venv
	$(PY) benchmarks/bench_big.py

clean:
	rm -rf $(VENV) $(OUT)
