# loom: the two commands (contract): `make demo` and `make test`.
# Both install what is missing (scripts/install-deps.sh), configure and build first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
LOOM = $(BUILD_DIR)/loom

.PHONY: all deps configure build demo test layers format format-check test-unit test-integration test-asan test-tsan bench install clean fuzz

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS) > $(BUILD_DIR).configure.log 2>&1 || \
	  { cat $(BUILD_DIR).configure.log; exit 1; }

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job: train the CNN on Fashion-MNIST and print the test accuracy.
# It builds only the library and the CLI (not the tests, benchmarks or examples).
demo: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target loom_cli
	@bash scripts/demo.sh $(LOOM)

# Every test, through ctest (unit tests run ranks as threads; integration tests run
# real processes through the real launcher), after the decoder's fuzz run (`fuzz`
# below: FUZZ_SECONDS plus a small clang build; a crash fails `make test`) and the
# layering check (an include from a lower layer to a higher one fails it) and the
# format check (scripts/check_format.sh).
test: layers format-check build fuzz
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 $(CTEST_FLAGS)

layers:
	@python3 scripts/check_layers.py

# .clang-format's style: `make test` checks the C++ files changed since origin/main;
# `make format` formats every tracked C++ file.
format-check: deps
	@bash scripts/check_format.sh

format: deps
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

test-unit: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_FLAGS)

test-integration: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L integration $(CTEST_FLAGS)

# The unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (any report fails
# the run), in their own build directory. Slow to build: about half an hour here.
ASAN_DIR ?= build-asan
test-asan: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DLOOM_SANITIZE=address -DLOOM_BUILD_BENCH=OFF \
	  > $(ASAN_DIR).configure.log 2>&1 || { cat $(ASAN_DIR).configure.log; exit 1; }
	@cmake --build $(ASAN_DIR) -j $(JOBS) --target loom_unit_tests
	@cd $(ASAN_DIR) && ASAN_OPTIONS=$(ASAN_OPTIONS_LOOM) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ctest --output-on-failure -j $(JOBS) -L unit --timeout 1200 $(CTEST_FLAGS)
# libtorch itself is not instrumented: its new/delete pairs and globals are not ours.
# Full (slow) unwinding on malloc, so leak suppressions can match libtorch's frames.
ASAN_OPTIONS_LOOM = detect_leaks=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:fast_unwind_on_malloc=0

# ThreadSanitizer over the threaded parts: the reducer (dp), the parameter server (ps)
# and the transport under both (comm). Findings and their explanations: docs/reliability.md.
TSAN_DIR ?= build-tsan
TSAN_TESTS ?= ^(dp|ps|comm)\.
test-tsan: deps
	@cmake -S . -B $(TSAN_DIR) -G Ninja -DLOOM_SANITIZE=thread -DLOOM_BUILD_BENCH=OFF \
	  > $(TSAN_DIR).configure.log 2>&1 || { cat $(TSAN_DIR).configure.log; exit 1; }
	@cmake --build $(TSAN_DIR) -j $(JOBS) --target loom_cli loom_unit_dp loom_unit_ps loom_unit_comm loom_tsan_canary
	@cd $(TSAN_DIR) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)' --timeout 1200 $(CTEST_FLAGS)
	@bash tests/tsan/check_canary.sh $(TSAN_DIR)/tests/loom_tsan_canary $(CURDIR)/tests/tsan.supp

# libFuzzer on the parameter server's message decoder, in its own clang build directory
# (no torch, only the decoder's sources), for a bounded time from generated seeds of
# valid headers; fails on any crash, sanitizer report or input slower than 10 s.
# Part of `make test`. Needs clang (scripts/install-deps.sh installs it).
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CXX ?= $(shell command -v clang++-14 || command -v clang++)

fuzz: deps
	@test -n "$(FUZZ_CXX)" || { echo "make fuzz: needs clang++ (apt-get install clang)"; exit 1; }
	@cmake -S . -B $(FUZZ_DIR) -G Ninja -DLOOM_BUILD_FUZZ=ON -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  > $(FUZZ_DIR).configure.log 2>&1 || { cat $(FUZZ_DIR).configure.log; exit 1; }
	@cmake --build $(FUZZ_DIR) -j $(JOBS)
	@mkdir -p $(FUZZ_DIR)/corpus
	@$(FUZZ_DIR)/fuzz/ps_fuzz_seeds $(FUZZ_DIR)/corpus
	@$(FUZZ_DIR)/fuzz/ps_decoder_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus > $(FUZZ_DIR)/fuzz.log 2>&1 || \
	  { tail -n 40 $(FUZZ_DIR)/fuzz.log; echo "make fuzz: the parameter-server decoder crashed (input in $(FUZZ_DIR)/crash-*)"; exit 1; }
	@grep -E '^Done [0-9]+ runs' $(FUZZ_DIR)/fuzz.log | sed 's/^/make fuzz: decoder /'

install: build
	@cmake --install $(BUILD_DIR) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
