# thpreplay: `make demo` and `make test` work from a clean clone (they build .venv themselves).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
THP    := $(VENV)/bin/thpreplay
OUT    ?= out

.PHONY: venv test demo bench bench-big bench-sim lab-qemu clean

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

# Replay-core speed per policy on a real THP capture (root, perf, ~18 GiB available for the capture).
bench-sim: venv
	$(PY) benchmarks/bench_simulate.py

# Re-capture the 2-node QEMU sample (root; downloads a Debian kernel into $$LAB_CACHE; minutes).
lab-qemu:
	sample_traces/lab/capture-qemu.sh $(OUT)/qemu-6.1-2node

clean:
	rm -rf $(VENV) $(OUT)
