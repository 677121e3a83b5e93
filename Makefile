# The README's two commands are `make demo` and `make test`; the rest support them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBIAN_PACKAGES := dicom3tools
BENCH_DEBIAN_PACKAGES := tesseract-ocr
export HCA_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo test bench ui clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)
	HCA_DEBIAN_PACKAGES="$(DEBIAN_PACKAGES)" ./scripts/system-deps.sh

demo: install
	$(BIN)/hca demo --fresh --patients 6 --seed 0

test: install
	$(BIN)/python -m pytest -n 2 hca_assets_tests

bench: install
	HCA_DEBIAN_PACKAGES="$(BENCH_DEBIAN_PACKAGES)" ./scripts/system-deps.sh
	$(BIN)/python -m benchmarks.run

ui: install
	mkdir -p $(HCA_DATA_DIR)/dagster_home
	DAGSTER_HOME=$(HCA_DATA_DIR)/dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf $(VENV) data .pytest_cache
