# Each target sets up its own virtualenv on first use; only a Python >= 3.10 is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_LOGS ?= demo-logs
DEMO_SPEED ?= 0.2

.PHONY: test lock-matrix demo bench stress lint typecheck docs docs-check check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## make test: the unit suite (on the C hot path where it was built); then CPython's lock tests,
## the contract matrix (tests/lock_matrix.py: every traced primitive x {C, pure Python} x the
## cells LOCK_CELLS names: all = every level x lock_order off/on, core = full, contention, off
## and full with lock_order); then the lock, condition, detection and patch tests again on the
## pure-Python hot path
LOCK_CELLS ?= all
LOCK_JOBS ?= 6
PURE_PYTHON_TESTS := tests/test_trace_locks.py tests/test_trace_condition.py tests/test_detect_tries.py \
	tests/test_detect_nested.py \
	tests/test_contract.py tests/test_detect.py tests/test_patch.py tests/test_faults.py
test: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/test_lock_tests.py
	$(BIN)/python tests/lock_matrix.py --cells $(LOCK_CELLS) -j $(LOCK_JOBS)
	TRACEDSYNC_PURE_PYTHON=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PURE_PYTHON_TESTS)

## make lock-matrix: only the lock-test matrix (LOCK_CELLS=all|core|names, LOCK_JOBS at a time)
lock-matrix: $(STAMP)
	$(BIN)/python tests/lock_matrix.py --cells $(LOCK_CELLS) -j $(LOCK_JOBS)

## make demo: the seed's programs traced, each summarised from the logs it wrote:
## the Condition producer/consumer, then multiprocessing.Value with and without get_lock()
demo: $(STAMP)
	rm -rf $(DEMO_LOGS) && mkdir -p $(DEMO_LOGS)
	@echo "== 1. The seed's Condition producer/consumer, traced (last lines of its output):"
	TRACEDSYNC_LOG_DIR=$(DEMO_LOGS)/condition DEMO_SPEED=$(DEMO_SPEED) \
		$(BIN)/python examples/condition_producer_consumer.py > $(DEMO_LOGS)/condition.out
	@tail -n 3 $(DEMO_LOGS)/condition.out
	$(BIN)/tracedsync summary $(DEMO_LOGS)/condition
	@echo
	@echo "== 2. multiprocessing.Value in two processes, v.value += step WITHOUT get_lock():"
	TRACEDSYNC_LOG_DIR=$(DEMO_LOGS)/racy $(BIN)/python examples/value_racy.py
	$(BIN)/tracedsync summary $(DEMO_LOGS)/racy
	@echo
	@echo "== 3. The same WITH get_lock() held across the read and the write:"
	TRACEDSYNC_LOG_DIR=$(DEMO_LOGS)/get_lock $(BIN)/python examples/value_get_lock.py
	$(BIN)/tracedsync summary $(DEMO_LOGS)/get_lock
	@echo
	@echo "Everything, with percentiles and findings: $(BIN)/tracedsync analyze $(DEMO_LOGS)"

## make stress: 64 threads on every primitive, a million operations; the logs must account
## for each one (full, contention, and overflow=drop with an exact dropped count)
stress: $(STAMP)
	$(BIN)/python stress/stress_mix.py --level full
	$(BIN)/python stress/stress_mix.py --level contention
	$(BIN)/python stress/stress_mix.py --overflow drop --buffer-limit 1000 --ops 200000

## make bench: pyperf overhead ratios, traced vs raw, in one run
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_locks.py

## make lint: ruff, and import-linter's layer contract (pyproject.toml, [tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check tracedsync tests benchmarks examples stress tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## make docs: regenerate the field tables of docs/events.md and docs/events.schema.json from
## the event schema table (tracedsync/_core/schema.py); make docs-check fails if they differ
docs: $(STAMP)
	$(BIN)/python tools/gen_events_doc.py

docs-check: $(STAMP)
	$(BIN)/python tools/gen_events_doc.py --check

check: lint typecheck docs-check test

clean:
	rm -rf $(VENV) .venv-* $(DEMO_LOGS) build dist *.egg-info
