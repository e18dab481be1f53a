# The two set-up commands of the README: `make demo` and `make test`.
# Every install goes through constraints.txt, which pins torch to the CPU wheel.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test install bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip -c constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/neon-ray demo --out $(OUT)

# The end-to-end test runs in its own pytest process, next to no in-process Ray of the
# integration tests; it stops only the cluster processes it started (never `ray stop`).
test: $(VENV)/.installed
	$(PY) -m pytest -m "not e2e"
	$(PY) -m pytest -m e2e

clean:
	rm -rf $(VENV) runs .pytest_cache
