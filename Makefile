# cdpulse: `make demo` and `make test` from a fresh clone, on a machine with Python 3.11,
# a JDK (17) and Maven. Kafka comes from Maven Central, Redis from Debian; no Docker.
# The stack scripts read CDPULSE_KAFKA_PORT, CDPULSE_KAFKA_CONTROLLER_PORT, CDPULSE_REDIS_PORT,
# CDPULSE_WEB_PORT, CDPULSE_RUN_DIR and CDPULSE_CACHE_DIR from the environment.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: pip runs again only when pyproject.toml changes.
VENV_STAMP := $(VENV)/.installed
# The compiled build (setup.py: the hot core compiled with mypyc), which the bench measures.
COMPILED := .venv-compiled
COMPILED_BIN := $(COMPILED)/bin
COMPILED_STAMP := $(COMPILED)/.installed
STACK := deploy/local/stack.sh
# Where the integration tests' own stack lives (tests/integration/stack.py).
TEST_RUN_DIR := .run/test

.PHONY: help venv compiled test-compiled stack-deps stack-up stack-down stack-status test known-failing scale cluster distributed chaos lint schemas demo bench clean distclean

help:
	@echo "make venv          .venv with cdpulse and its test tools"
	@echo "make compiled      .venv-compiled: cdpulse with its hot core compiled by mypyc (what the bench runs)"
	@echo "make test-compiled the unit tests and the pipeline's integration tests on the compiled build"
	@echo "make stack-up      start Kafka and Redis on 127.0.0.1 (stack-down, stack-status)"
	@echo "                   three brokers: deploy/local/stack.sh --brokers 3 start (README: Running at scale)"
	@echo "                   a Redis Cluster: deploy/local/redis-cluster.sh start (likewise)"
	@echo "make test          the whole suite against a real Kafka and Redis, then ruff and mypy"
	@echo "make scale         three Kafka brokers: replicated topics, a broker killed under acks=all writes"
	@echo "make cluster       Redis Cluster: the exactness tests, a master killed, slots migrated"
	@echo "make distributed   three brokers and the Redis Cluster together: kills, rebalances, failovers"
	@echo "make chaos         the fault suite at full size (tests/chaos; make test runs it small)"
	@echo "make lint          ruff, mypy and the import contracts (arrows point inward)"
	@echo "make schemas       regenerate the JSON Schemas in schemas/"
	@echo "make demo          stack, the three roles and a simulated shop streaming in; Ctrl-C stops it"
	@echo "make bench         the benchmark (BENCHMARKS.md); result and chart in .run/bench-result.*"
	@echo "make clean         stop the stacks and remove .run and tool caches (distclean: also .venv, .venv-compiled, .cache)"

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Real data sets for honest checks, read by path: the lifetimes wheel ships CDNOW, which
	# tests/unit/test_clv.py, test_evaluate.py and test_import_csv.py read.
	# --no-deps: only its data files are used, never its code.
	$(BIN)/pip install --quiet --no-deps lifetimes==0.11.3
	touch $@

venv: $(VENV_STAMP)

# Built again whenever a source changes: what the bench measures is the code as it is.
# Dependencies and test tools first (mypy among them): mypyc type-checks against them,
# hence --no-build-isolation for the compiled wheel (setup.py); the Dockerfile's steps.
# make's own wildcard, four levels deep (src/cdpulse/models/churn/*.py), not a shell's find:
# prerequisites are expanded whenever make reads this file, whatever the target.
COMPILED_SOURCES := $(filter-out %.pyc %/__pycache__,$(wildcard $(addprefix src/cdpulse/,* */* */*/* */*/*/*)))
$(COMPILED_STAMP): pyproject.toml setup.py $(COMPILED_SOURCES)
	rm -rf $(COMPILED) build
	$(PYTHON) -m venv $(COMPILED)
	$(COMPILED_BIN)/pip install --quiet --upgrade pip
	$(COMPILED_BIN)/pip install --quiet '.[test,compile]'
	$(COMPILED_BIN)/pip install --quiet --no-deps lifetimes==0.11.3  # CDNOW, as in make venv
	@echo "compiling the core with mypyc (a few minutes)"
	rm -rf .run/wheels
	CDPULSE_COMPILE=1 $(COMPILED_BIN)/pip wheel --quiet --no-build-isolation --no-deps --wheel-dir .run/wheels .
	$(COMPILED_BIN)/pip install --quiet --no-deps --force-reinstall .run/wheels/cdpulse-*.whl
	rm -rf build .run/wheels
	cd /tmp && $(CURDIR)/$(COMPILED_BIN)/python -c 'import cdpulse.pipeline.stages as m; assert m.__file__.endswith(".so"), m.__file__'
	touch $@

compiled: $(COMPILED_STAMP)

# What only the compiled build can get wrong (mypyc checks types at run time and binds
# calls natively): the unit tests and the pipeline's integration tests, on its modules.
test-compiled: compiled stack-deps
	$(COMPILED_BIN)/pytest -q -p no:cacheprovider tests/unit tests/integration/test_pipeline.py

# What starting the stack needs, without starting it: the Kafka jars and redis-server.
stack-deps:
	deploy/local/kafka.sh fetch
	deploy/local/redis.sh install

stack-up: stack-deps
	$(STACK) start

stack-down:
	$(STACK) stop

stack-status:
	$(STACK) status

# The session fixture starts and stops its own stack on test ports, so only its
# dependencies are prepared here. Exit 5 is pytest's "no tests collected", not a failure.
# The KPI kill test runs in make chaos only: tests/integration/test_kpis.py is its
# make-test twin (one kill and a replay on a small shop).
# Of tests/cluster, only the state store's tests run here (seconds); make cluster runs all.
# Of tests/distributed, the group coordinator's broker killed, small (~2 min with three
# brokers and the Redis Cluster starting); make distributed runs every fault there.
# Tests that fail now and then are listed here, each tracked in its open issue, while the
# cause is found (`make known-failing` runs them); none today.
KNOWN_FAILING =
test: venv stack-deps
	$(BIN)/pytest tests/ src/ --ignore=tests/scale --ignore=tests/distributed/test_faults.py --ignore=tests/distributed/test_pipeline.py --ignore=tests/chaos/test_kpi_kills.py \
		$(KNOWN_FAILING:%=--ignore=%) \
		$(CLUSTER_ONLY:%=--ignore=%) || { rc=$$?; [ $$rc -eq 5 ] || exit $$rc; echo "pytest: no tests collected"; }
	$(MAKE) --no-print-directory lint

known-failing: venv stack-deps
	$(if $(strip $(KNOWN_FAILING)),$(BIN)/pytest $(KNOWN_FAILING),@echo "no known-failing tests")

# A three-broker cluster of its own (tests/scale, ~1-2 min): replication, min ISR, a broker
# SIGKILLed under acks=all writes and restarted.
scale: venv stack-deps
	$(BIN)/pytest tests/scale

# A Redis Cluster of its own (tests/cluster, ~10 min; deploy/local/redis-cluster.sh: three
# masters and three replicas, ports 16401-16406 and 26401-26406) beside the session's Kafka:
# the pipeline's exactness tests, the features that keep state in Redis, worker kills and
# rebalances, a master SIGKILLed and its replica promoted, slots migrated while events flow.
CLUSTER_ONLY := tests/cluster/test_pipeline.py tests/cluster/test_features.py tests/cluster/test_faults.py
cluster: venv stack-deps
	$(BIN)/pytest tests/cluster

# The whole distributed stack at once (tests/distributed): three brokers (topics with three
# replicas, min.insync.replicas 2) and the Redis Cluster; the pipeline's exactness tests,
# worker kills, workers joining and leaving, a Redis master killed, slots migrated and the
# group coordinator's broker killed, each checked against the oracle. CDPULSE_CHAOS_FULL=1 makes the streams full size.
distributed: venv stack-deps
	$(BIN)/pytest tests/distributed

# The fault suite at full size: 100k-event streams, more kills and restarts (tests/chaos).
chaos: venv stack-deps
	CDPULSE_CHAOS_FULL=1 $(BIN)/pytest tests/chaos

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

schemas: venv
	$(BIN)/cdpulse schemas

demo: venv stack-deps
	deploy/local/demo.sh

# Starts the local stack only when nothing answers at CDPULSE_KAFKA_BOOTSTRAP / CDPULSE_REDIS_URL,
# and stops what it started. BENCH_ARGS passes options: make bench BENCH_ARGS="--events 100000".
# The local stack is one broker: one replica per topic unless the environment says otherwise.
bench: venv compiled stack-deps
	CDPULSE_TOPIC_REPLICATION=$${CDPULSE_TOPIC_REPLICATION:-1} \
	CDPULSE_TOPIC_MIN_INSYNC_REPLICAS=$${CDPULSE_TOPIC_MIN_INSYNC_REPLICAS:-1} \
	$(COMPILED_BIN)/cdpulse bench --out .run/bench-result.json --chart .run/bench-result.png $(BENCH_ARGS)

clean:
	$(STACK) stop
	deploy/local/redis-cluster.sh stop
	CDPULSE_RUN_DIR=$(TEST_RUN_DIR) $(STACK) stop
	CDPULSE_RUN_DIR=$(TEST_RUN_DIR) deploy/local/redis-cluster.sh stop
	CDPULSE_RUN_DIR=.run/test-k3 $(STACK) stop
	rm -rf .run build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find src tests -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(COMPILED) .cache
