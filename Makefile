# thpreplay: `make demo` and `make test` work from a clean clone (they build .venv themselves).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
THP    := $(VENV)/bin/thpreplay
OUT    ?= out

.PHONY: venv browser test test-slow test-sweep demo screenshot fidelity fidelity-samples lab-fidelity fuzz fuzz-asan validate-samples bench bench-big bench-sim bench-sweep lab-qemu clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tests/plugins/thpreplay_example_policy/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q -e tests/plugins/thpreplay_example_policy  # the example policy plugin (docs/writing-a-policy.md)
	touch $@

# The report's browser test needs Debian's chromium; installed here when missing (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the report's browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

test: venv browser
	THPREPLAY_REQUIRE_BROWSER=1 $(PY) -m pytest -n auto --maxprocesses=4 -m "not slow"

# The long tests make test leaves out (pytest -m slow: the killed-process and full-disk checks, the
# distributed sweep, the long property tests, a million comm names, every run of the fidelity lab
# against its golden and docs/fidelity.md; a few minutes).
test-slow: venv browser
	$(PY) -m pytest -n auto --maxprocesses=4 -m slow

# The full distributed sweep test: every bundled sample x every policy x two defrag settings on a
# `dask scheduler` and two `dask worker` processes, one killed mid-sweep (about 1.5 minutes).
test-sweep: venv
	$(PY) -m pytest tests/test_sweep.py -m slow

SAMPLES := $(filter-out %/workload/ %/lab/ %/fidelity/,$(wildcard sample_traces/*/))

# Ingest every bundled real capture, replay it under every built-in policy, validate it against
# what its kernel did (the table is printed; a figure off by more than 10 % does not stop the demo),
# and write its HTML report (the headline table is printed with where the report is).
demo: venv
	@mkdir -p $(OUT)
	@for b in $(SAMPLES); do \
	  name=$$(basename $$b); \
	  echo "== $$name"; \
	  $(THP) ingest $$b -o $(OUT)/$$name --force -q || exit 1; \
	  $(THP) simulate $(OUT)/$$name -q || exit 1; \
	  $(THP) validate $(OUT)/$$name || true; \
	  $(THP) report $(OUT)/$$name || exit 1; \
	done

# Refresh docs/report.png, the README's screenshot of the demo report (headless Chromium).
screenshot: demo browser
	$(PY) tests/report_browser.py $(OUT)/qemu-6.1-2node/report.html docs/report.png

# Coverage-guided fuzzing of the text parsers (atheris; FUZZ_SECONDS, default 300). The corpus grows in
# $(OUT)/fuzz-corpus (seeded from tests/fuzz/corpus); a crash is written as $(OUT)/crash-*: add it to
# tests/data/fuzz/ (tests/test_fuzz_found.py).
# The trace.dat reader is fuzzed the same way (tests/fuzz/fuzz_tracedat.py, seeded from tests/data/tracedat).
FUZZ_SECONDS ?= 300
fuzz: venv
	$(PY) -m pip install -q 'atheris>=2.3'
	@mkdir -p $(OUT)/fuzz-corpus && cp -n tests/fuzz/corpus/* $(OUT)/fuzz-corpus/
	$(PY) tests/fuzz/fuzz_parse.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
	  -artifact_prefix=$(OUT)/ $(OUT)/fuzz-corpus
	@mkdir -p $(OUT)/fuzz-tracedat-corpus && cp tests/data/tracedat/*.dat $(OUT)/fuzz-tracedat-corpus/ && \
	  for f in tests/data/tracedat/*.dat.xz; do xz -dc $$f > $(OUT)/fuzz-tracedat-corpus/$$(basename $$f .xz); done
	$(PY) tests/fuzz/fuzz_tracedat.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=1048576 \
	  -artifact_prefix=$(OUT)/tracedat- $(OUT)/fuzz-tracedat-corpus
	@mkdir -p $(OUT)/fuzz-perfdata-corpus && for f in tests/data/perfdata/*.perf.data.xz; do \
	  xz -dc $$f > $(OUT)/fuzz-perfdata-corpus/$$(basename $$f .xz); done
	$(PY) tests/fuzz/fuzz_perfdata.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=1048576 \
	  -artifact_prefix=$(OUT)/perfdata- $(OUT)/fuzz-perfdata-corpus

# The C paths (the prefix cutter, the replay core) under AddressSanitizer and UBSan: both are built with
# the sanitizers into a copy of the package in $(OUT)/asan, then tests/fuzz/fuzz_c.py mutates real trace
# lines through the cutter, ingest and simulate for FUZZ_SECONDS (seed FUZZ_SEED), and the replay core's
# hypothesis property tests and the fuzzers' past findings run on the sanitized build. Any sanitizer
# report fails the target. Not part of `make test` (minutes; gcc's libasan is preloaded into Python).
ASAN_DIR   := $(OUT)/asan
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_ENV   := LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONPATH=$(ASAN_DIR)/pipeline:tests \
              FUZZ_OUT=$(OUT) FUZZ_SECONDS=$(FUZZ_SECONDS)
fuzz-asan: venv
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)/pipeline
	cp -r pipeline/thpreplay $(ASAN_DIR)/pipeline/ && ln -s $(CURDIR)/schemas $(ASAN_DIR)/schemas
	find $(ASAN_DIR) -name '*.so' -delete
	inc=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	suf=$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	gcc $(ASAN_FLAGS) -shared -fPIC -I$$inc -o $(ASAN_DIR)/pipeline/thpreplay/parse/_prefix$$suf pipeline/thpreplay/parse/_prefix.c && \
	gcc $(ASAN_FLAGS) -shared -fPIC -I$$inc -o $(ASAN_DIR)/pipeline/thpreplay/sim/_engine$$suf pipeline/thpreplay/sim/_engine.c && \
	gcc $(ASAN_FLAGS) -shared -fPIC -I$$inc -o $(ASAN_DIR)/pipeline/thpreplay/parse/_perfdata$$suf pipeline/thpreplay/parse/_perfdata.c -ldl
	gcc $(ASAN_FLAGS) -shared -fPIC -I$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
	  -o $(ASAN_DIR)/pipeline/thpreplay/parse/_tracedat$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))') \
	  pipeline/thpreplay/parse/_tracedat.c
	$(ASAN_ENV) $(PY) tests/fuzz/fuzz_c.py
	$(ASAN_ENV) $(PY) tests/fuzz/fuzz_tracedat_c.py
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_fuzz_found.py tests/test_parse_properties.py

# Validation of every bundled capture under its own kernel's policy (docs/model.md, Fidelity).
validate-samples: venv
	@mkdir -p $(OUT)
	@for b in $(SAMPLES); do \
	  name=$$(basename $$b); \
	  $(THP) ingest $$b -o $(OUT)/$$name --force -q || exit 1; \
	  $(THP) validate $(OUT)/$$name || true; \
	done

# Performance figures for BENCHMARKS.md (needs root and perf; minutes, not part of `make test`).
bench: venv
	$(PY) benchmarks/bench_ingest.py

bench-big: venv
	$(PY) benchmarks/bench_big.py

# Replay-core speed per policy on a real THP capture (root, perf, ~18 GiB available for the capture).
bench-sim: venv
	$(PY) benchmarks/bench_simulate.py

# Sweep throughput with 1 and 2 local Dask workers, per-task costs, a 10,000-capture estimate (minutes).
bench-sweep: venv
	$(PY) benchmarks/bench_sweep.py 3

# Score the simulator against the fidelity lab's committed captures: writes docs/fidelity.md and
# tests/golden/fidelity.csv (seconds; tests/test_fidelity.py checks both).
fidelity: venv
	$(PY) sample_traces/lab/score.py

# How often the lab's outcomes fall inside the model's 90 % interval (simulate --samples 20: a few minutes
# the first time, which ingests the captures into /tmp/score-samples; prints the shares per scenario and kernel,
# and writes them into docs/fidelity.md's "Calibration" section and tests/golden/calibration.csv).
fidelity-samples: venv
	$(PY) sample_traces/lab/score_samples.py --write

# Re-run the fidelity lab from scratch (root; downloads Debian kernels and linux-source-6.1 into
# $$LAB_CACHE, builds the patched kernels, boots every kernel x scenario in QEMU; about 40 minutes).
LAB_KERNELS ?= 5.10 6.1 6.12 6.1-built-unpatched 6.1-local-only 6.1-relaxed
lab-fidelity: venv
	sample_traces/lab/build-kernel.sh
	sample_traces/lab/run-fidelity.sh $(LAB_KERNELS)
	$(PY) sample_traces/lab/score.py

# Re-capture the 2-node QEMU sample (root; downloads a Debian kernel into $$LAB_CACHE; minutes).
lab-qemu:
	sample_traces/lab/capture-qemu.sh $(OUT)/qemu-6.1-2node

clean:
	rm -rf $(VENV) $(OUT)
