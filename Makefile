# The README's two commands are `make demo` and `make test`; the rest support them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBIAN_PACKAGES := fonts-dejavu-core fonts-liberation dicom3tools openjdk-17-jre-headless postgresql redis-server orthanc orthanc-dicomweb dcmtk
BENCH_DEBIAN_PACKAGES := tesseract-ocr
export HCA_DATA_DIR ?= $(CURDIR)/data
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test bench ui clean dbt-manifest docs dbt-docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,deploy]'
	touch $(STAMP)

# Azurite, the Azure Storage emulator the object-store tests start (npm; Node.js from Debian if the machine lacks it)
AZURITE := .tools/node_modules/.bin/azurite-blob
$(AZURITE):
	command -v npm >/dev/null || HCA_DEBIAN_PACKAGES="nodejs npm" ./scripts/system-deps.sh
	npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@3.35.0

install: $(STAMP) $(AZURITE)
	HCA_DEBIAN_PACKAGES="$(DEBIAN_PACKAGES)" ./scripts/system-deps.sh

demo: install dbt-manifest
	$(BIN)/hca demo --fresh --patients 6 --seed 0

test: install dbt-manifest
	$(BIN)/python -m pytest -n 2 hca_assets_tests

bench: install
	HCA_DEBIAN_PACKAGES="$(BENCH_DEBIAN_PACKAGES)" ./scripts/system-deps.sh
	$(BIN)/python -m benchmarks.run

ui: install  # the instance lives in the data folder, or in the working copy of an object-store root
	home=$$(env -u DAGSTER_HOME $(BIN)/python -c "from hca_assets.config import Settings; \
	from hca_assets.orchestration.dagster_home import dagster_home; print(dagster_home(Settings.from_env()))") && \
	DAGSTER_HOME="$$home" $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# the dbt manifest @dbt_assets loads (dbt/target/manifest.json): parsed again whenever dbt/ may have changed
dbt-manifest: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster-dbt project prepare-and-package --file hca_assets/orchestration/dbt_project.py

# the documentation site: the configuration page and the lineage picture regenerated, then built strictly into site/
docs: dbt-manifest
	$(BIN)/python -c "from hca_assets.config.reference import reference_markdown; open('docs/configuration.md', 'w').write(reference_markdown())"
	$(BIN)/python scripts/lineage.py docs/img/lineage.png
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "docs: $(CURDIR)/site/index.html"

# dbt docs of the marts over the current data folder: dbt/target/index.html (`dbt docs serve` shows it)
dbt-docs: dbt-manifest
	cd dbt && PATH="$(CURDIR)/$(BIN):$$PATH" dbt docs generate --profiles-dir .
	@echo "dbt docs: $(CURDIR)/dbt/target/index.html (serve: cd dbt && ../$(BIN)/dbt docs serve --profiles-dir .)"

clean:
	rm -rf $(VENV) data .pytest_cache site
