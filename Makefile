# Two entry points: `make demo` (the main job on the embedded default) and `make test` (what CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint docs bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[models,openvino,dev,ray,production,aws]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/embedlake demo

# mypy with a worker process a core: 40 s instead of 61 without a cache (a fresh clone, 2 cores)
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --num-workers auto
	$(VENV)/bin/lint-imports --no-cache

# a worker per core and two more (TEST_JOBS=0: one process): many tests wait on servers,
# subprocesses or a minute of idleness, and each worker computes on one thread
# (tests/conftest.py): on two cores, three workers took the suite from 15:05 to 13:09 (one clone,
# 2026-12-06), and four from 15:55 to 14:43 (one clone, 2026-12-07). A test file stays on one
# worker, so its module-scoped fixtures (workspaces with a built release) are built once; the ten
# slowest tests are listed. The lint runs beside the tests, in the CPU time they leave idle (about
# a sixth of two cores); either failing fails the target.
TEST_JOBS ?= $(shell python3 -c "import os; print(len(os.sched_getaffinity(0)) + 2)")
test: install
	@$(MAKE) --no-print-directory lint > .lint.log 2>&1 & lint=$$!; \
	$(VENV)/bin/pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=10; \
	tests=$$?; wait $$lint; linted=$$?; cat .lint.log; rm -f .lint.log; \
	if [ $$linted -ne 0 ]; then echo "make test: the lint failed (above)"; fi; \
	[ $$tests -eq 0 ] && [ $$linted -eq 0 ]

# docs/settings.md is written from the settings' descriptions (tests/unit/test_settings_docs.py)
docs: install
	$(PY) -m embedlake.config > docs/settings.md.new && mv docs/settings.md.new docs/settings.md

clean:
	rm -rf $(VENV) demo-ws .pytest_cache .mypy_cache .ruff_cache
