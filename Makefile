# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/llmaccel demo

# `make test`: every unit on small configurations; `make test-slow`: the other configuration
# variants, real bitstreams, gate-level simulation, Ray and long fault campaigns
test: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -q -m slow

bench: $(STAMP)
	$(PY) -m benchmarks.run

docs: $(STAMP)
	$(PY) -m hw.isa_doc > docs/isa.md

clean:
	rm -rf $(VENV) build .pytest_cache
