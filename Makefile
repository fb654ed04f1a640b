# simlink — one-command setup. Needs only Python >= 3.11 on the PATH.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The torch build installed before the project, so pip never pulls an uncapped (multi-GB) torch.
# Override for GPUs, e.g. `make install TORCH_SPEC="torch==2.14.1"`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/simlink run scenarios/quickstart.yaml --out results/quickstart

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) results/quickstart .pytest_cache
