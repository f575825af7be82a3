# PEFS: `make run` starts the whole system, `make test` runs the suite. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp

.PHONY: run test venv migrate bench clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m pefs_web.launch run

test: $(STAMP)
	$(PY) -m pefs_web.launch test $(PYTEST_ARGS)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

bench: $(STAMP)
	$(PY) -m pefs_web.launch bench $(BENCH)

clean:
	rm -rf $(VENV) var
