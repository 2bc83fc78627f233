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

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# every core (TEST_JOBS=0: one process); a test file stays on one worker, so its module-scoped
# fixtures (workspaces with a built release) are built once; the ten slowest tests are listed
TEST_JOBS ?= auto
test: lint
	$(VENV)/bin/pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=10

# docs/settings.md is written from the settings' descriptions (tests/unit/test_settings_docs.py)
docs: install
	$(PY) -m embedlake.config > docs/settings.md.new && mv docs/settings.md.new docs/settings.md

clean:
	rm -rf $(VENV) demo-ws .pytest_cache .mypy_cache .ruff_cache
