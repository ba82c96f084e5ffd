# The template repo's two commands: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
DEMO_DIR := build/demo
DEMO_BROKER ?=
DEMO_COUNT ?= 1000
COMMA := ,
# Kafka is not among the default brokers: `make demo DEMO_BROKER=kafka` generates it in too
DEMO_ANSWERS := $(if $(filter kafka,$(DEMO_BROKER)),brokers=pulsar$(COMMA)nats$(COMMA)jetstream$(COMMA)kafka)

.PHONY: demo test test-fast lint clean bench

$(READY): requirements-dev.txt brokerline/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(READY)

demo: $(READY)  ## generate a service, run report + saver on embedded defaults, post reports
	rm -rf $(DEMO_DIR)
	$(BIN)/cookiecutter --no-input --output-dir $(DEMO_DIR) $(CURDIR) $(DEMO_ANSWERS)
	$(MAKE) -C $(DEMO_DIR)/report-pipeline install PYTHON=$(abspath $(BIN)/python)
	cd $(DEMO_DIR)/report-pipeline && .venv/bin/report-pipeline demo --count $(DEMO_COUNT) \
		$(if $(DEMO_BROKER),--broker $(DEMO_BROKER))

#: the generated-project cases other than `defaults` (each its own venv and brokers): they run
#: beside the library's suite and the rest of the template's tests, in two lanes, because most
#: of their time is spent waiting (installs, JVM starts, processes), not on both cores
OTHER_CASES := installs_and_passes and not defaults

test: $(READY)  ## every test: the library's (once), the template's own, each generated project's (JUnit XML: build/test-reports/)
	rm -rf build/test-reports && mkdir -p build/test-reports
	$(MAKE) --no-print-directory -j2 --output-sync=target test-lane-library test-lane-cases

.PHONY: test-lane-library test-lane-cases
test-lane-library: $(READY)  # the library's suite, then the template's tests but OTHER_CASES
	$(BIN)/pytest brokerline/tests --junitxml=build/test-reports/brokerline.xml
	$(BIN)/pytest tests -k "not ($(OTHER_CASES))" --junitxml=build/test-reports/template.xml
test-lane-cases: $(READY)  # OTHER_CASES
	$(BIN)/pytest tests/test_generated_projects.py -k "$(OTHER_CASES)" \
		--junitxml=build/test-reports/template-cases.xml

BENCH_DIR := build/bench
BENCH_ARGS ?=

bench: $(READY)  ## raw clients vs framework vs FastStream; writes bench/results/ (not a test)
	@# the ingest rows' load generator (Debian's nghttp2-client), installed where we may
	@command -v h2load >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client; }
	rm -rf $(BENCH_DIR)
	$(BIN)/cookiecutter --no-input --output-dir $(BENCH_DIR) $(CURDIR)
	$(MAKE) -C $(BENCH_DIR)/report-pipeline install PYTHON=$(abspath $(BIN)/python)
	$(BENCH_DIR)/report-pipeline/.venv/bin/pip install --quiet -r bench/requirements.txt
	cd $(BENCH_DIR)/report-pipeline && .venv/bin/python \
		$(abspath bench/run.py) --project . --workdir ../work $(BENCH_ARGS)

lint: $(READY)  ## ruff on the template repo's code; ruff and mypy on the library
	$(BIN)/ruff check hooks tests local_extensions.py bench
	cd brokerline && $(abspath $(BIN))/ruff check src tests && $(abspath $(BIN))/mypy src tests

clean:
	rm -rf build .pytest_cache
