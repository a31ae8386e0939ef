# concbench: `make test` and `make bench` are all a fresh clone needs (python3 >= 3.11 and make).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint bench bench-quick report clean freethreaded regress bench-pytest bench-swarm validate \
        cost cost-tools resources bench-hosts netns-tools redis-tools classics

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,models]'
	@touch $(STAMP)

venv: $(STAMP)

# two parts: the tests that mostly wait (servers starting, sleeps, timeouts) TEST_JOBS at a
# time, then those marked serial (timing and CPU figures, tests/conftest.py) alone
TEST_JOBS ?= 4
test: $(STAMP) netns-tools
	$(PY) -m ruff check bench servers clients tests
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup -m "not serial" $(TEST_ARGS)
	$(PY) -m pytest -q -m serial $(TEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check bench servers clients tests

# the benchmark: every model through a scenario, into results/<UTC>-<scenario>/ with its report
# (RUN_ARGS passes more options, e.g. RUN_ARGS="--servers epoll,threaded --repeat 3")
bench: $(STAMP)
	$(PY) -m bench run --scenario default $(RUN_ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench run --scenario quick $(RUN_ARGS)

# the field's known results reproduced beside their sources (bench/classics/): the classics
# scenario into results/<UTC>-classics/, its classics.json and a report section per experiment
classics: $(STAMP)
	$(PY) -m bench classics $(CLASSICS_ARGS)

# re-render a run folder's report: make report RUN=results/<run>
report: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make report RUN=results/<run folder>"; exit 2; }
	$(PY) -m bench report $(RUN)

# free-threaded CPython 3.13 (--disable-gil) from Debian's python3.13 source, into .cache/python3.13t
freethreaded:
	bash scripts/build_freethreaded.sh

# performance regression check: the head's servers against BASE's, side by side (bench/regress/check.py)
BASE ?= HEAD~1
PROFILE ?= quick
regress: $(STAMP) cost-tools
	$(PY) -m bench regress --base $(BASE) --profile $(PROFILE) $(REGRESS_ARGS)

# instructions and system calls per request, per model and case (bench/cost/), into results/cost/
# (COST_ARGS, e.g. COST_ARGS="--models epoll,threaded --cases echo64-c1")
# RUN=results/<run>: the record goes into that run folder (cost.json) and its report is rendered
# again with the X-ray section
cost: $(STAMP) cost-tools
	$(PY) -m bench cost $(if $(RUN),--json $(RUN)/cost.json) $(COST_ARGS)
	$(if $(RUN),$(PY) -m bench report $(RUN))

# how each model behaves out of descriptors (bench/resources.py, docs/protocol.md rule 8), about
# 3 s a model; RUN=results/<run>: the record goes into that run folder (resources.json) and its
# report is rendered again with the Resources section (RESOURCES_ARGS, e.g. "--models epoll")
resources: $(STAMP)
	$(PY) -m bench resources $(if $(RUN),--json $(RUN)/resources.json) $(RESOURCES_ARGS)
	$(if $(RUN),$(PY) -m bench report $(RUN))

# Debian tools a target needs: installed with apt when missing and we are root, otherwise one line
# saying what to install. $(call apt-tools,WHO,PROGRAMS,PACKAGES,STATUS): the programs looked for
# on PATH, the packages that bring them, and the exit status when they cannot be had (0: the
# target goes on without them)
apt-tools = missing=""; for p in $(2); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "$(1): missing$$missing; install them with: apt-get install -y $(3) (as root)"; exit $(4); fi; \
	echo "$(1): installing $(3) with apt-get (missing:$$missing)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q $(3) >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q $(3) >/dev/null; } || \
		{ echo "$(1): apt-get could not install $(3); install them by hand"; exit $(4); }

# the cost probe's tools, Debian's valgrind and strace (the cost targets stop without them)
COST_PROGRAMS := valgrind vgdb strace
cost-tools:
	@$(call apt-tools,cost,$(COST_PROGRAMS),valgrind strace,2)

# validate's redis check: Debian's redis-server and redis-tools (without them the check is reported
# as not run and the others still run)
REDIS_PROGRAMS := redis-server redis-benchmark
redis-tools:
	@$(call apt-tools,validate,$(REDIS_PROGRAMS),redis-server redis-tools,0)

# the swarm's own performance goal: swarm vs the native C client against the native server, pinned,
# then the swarm's CPU against every Python model (SWARM_ARGS, e.g. "--rounds 3 --models none")
bench-swarm: $(STAMP)
	$(PY) -m bench swarm-check $(SWARM_ARGS)

# the instrument's report card: the swarm against the C client, a known-latency server, the
# coordinated-omission trap and redis-benchmark on redis-server (VALIDATE_ARGS, e.g.
# "--rounds 3 --only co,redis"); exit 1 on a failed check
validate: $(STAMP) redis-tools
	$(PY) -m bench validate $(VALIDATE_ARGS)

# a scenario on this machine and across hosts made of network namespaces (a server namespace and two
# load namespaces on a private subnet; bench/hosts/netns.py), interleaved, side by side; needs root
# and Debian's iproute2 (ip, tc; make test needs them too for tests/test_hosts.py, which skips
# without them). HOSTS_ARGS, e.g. "--scenario echo50 --servers epoll --rounds 5"
NETNS_PROGRAMS := ip tc
netns-tools:
	@$(call apt-tools,netns,$(NETNS_PROGRAMS),iproute2,0)

bench-hosts: $(STAMP) netns-tools
	@test "$$(id -u)" = 0 || { echo "bench-hosts: network namespaces need root (run it as root)"; exit 2; }
	$(PY) -m bench.hosts.compare $(HOSTS_ARGS)

# pytest-benchmark trend history in .benchmarks/; BENCH_ARGS=--benchmark-compare compares
bench-pytest: $(STAMP)
	$(PY) -m pytest tests/perf -q --benchmark-autosave $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache servers/native/build bench/selfcheck/build
