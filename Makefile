# TaskQ - thin wrapper around CMake and the private test servers.
#
#   make run     install missing packages, build, start private PostgreSQL and
#                Redis under .run/, migrate, run taskqd with the bundled plugins
#   make test    the same set-up, then the whole suite under CTest, in the
#                normal build and again under ASan+UBSan
#   make stop    stop the private servers
#   make deb     build the Debian package (see packaging/)

SHELL := /bin/bash
BUILD ?= build
BUILD_SAN ?= build-san
JOBS ?= $(shell nproc)
CONF ?= etc/taskq-dev.conf
SERVERS := scripts/servers.sh
PG_PORT ?= 15432
REDIS_PORT ?= 16379
export TASKQ_PG_PORT := $(PG_PORT)
export TASKQ_REDIS_PORT := $(REDIS_PORT)

.PHONY: all deps build build-san servers run stop test test-unit check-config bench bench-quick chaos deb rpm clean distclean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DTASKQ_WERROR=ON >/dev/null

$(BUILD_SAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_SAN) -DTASKQ_WERROR=ON -DTASKQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-san: deps $(BUILD_SAN)/CMakeCache.txt
	cmake --build $(BUILD_SAN) -j $(JOBS)

servers: deps
	@$(SERVERS) start

stop:
	@$(SERVERS) stop

# TASKQ_DATABASE_URL / TASKQ_REDIS_URL, when set, point at existing servers.
run: build
	@scripts/run.sh $(BUILD) $(CONF)

test-env = set -a; eval "$$($(SERVERS) env)"; set +a; \
	export TASKQ_TEST_PG_URL=postgresql://taskq@127.0.0.1:$(PG_PORT)/postgres \
	       TASKQ_TEST_REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0 \
	       TASKQ_TEST_SERVERS=$(CURDIR)/$(SERVERS)

test: build build-san servers
	@$(test-env); cd $(BUILD) && ctest --output-on-failure --timeout 600
	@$(test-env); export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	cd $(BUILD_SAN) && ctest --output-on-failure --timeout 600

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

check-config: build
	$(BUILD)/core/taskqd -c $(CONF) --check-config

# Benchmarks (see docs/PERFORMANCE.md): the full run, or a quick check that
# every scenario works.
bench: build servers
	@scripts/bench.sh $(BUILD)

bench-quick: build servers
	@scripts/bench.sh $(BUILD) --quick

# The whole chaos suite (make test runs its short form).
chaos: build servers
	@$(test-env); TASKQ_CHAOS=full $(BUILD)/tests/test_chaos

deb: deps
	@packaging/build-deb.sh

rpm: deps
	@packaging/build-rpm.sh

clean:
	rm -rf $(BUILD) $(BUILD_SAN)

distclean: stop clean
	rm -rf .run
