# loom: the two commands (contract): `make demo` and `make test`.
# Both install what is missing (scripts/install-deps.sh), configure and build first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
LOOM = $(BUILD_DIR)/loom

.PHONY: all deps configure build demo test test-unit test-integration bench install clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS) > $(BUILD_DIR).configure.log 2>&1 || \
	  { cat $(BUILD_DIR).configure.log; exit 1; }

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job: train the CNN on Fashion-MNIST and print the test accuracy.
demo: build
	@bash scripts/demo.sh $(LOOM)

# Every test, through ctest (unit tests run ranks as threads; integration tests run
# real processes through the real launcher).
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 $(CTEST_FLAGS)

test-unit: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_FLAGS)

test-integration: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L integration $(CTEST_FLAGS)

install: build
	@cmake --install $(BUILD_DIR) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
