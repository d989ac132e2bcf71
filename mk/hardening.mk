# hardening.mk: fuzzing (libFuzzer) and the sanitizer build of the test suite (issue #7).
#
#   make fuzz             build the fuzz targets (clang, -fsanitize=fuzzer,address,undefined) and run
#                         each for FUZZ_SECONDS (default 60), one process at a time, under nice;
#                         new inputs go to build-fuzz/corpus/TARGET, crashes to build-fuzz/artifacts/
#   make fuzz-build       only build them
#   make fuzz-merge       minimise what the runs found into the committed corpus tests/fuzz/corpus/TARGET
#   make test-asan        every program and test built with gcc -fsanitize=address,undefined into
#                         build-asan/ and bin-asan/, then the whole test suite run against them; any
#                         sanitizer report (in the log directory) fails it
#
# The committed corpus is replayed through the same harnesses by build/tests/test_fuzz_replay
# in every `make test`.

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := dataset checkpoint archive cli
FUZZ_DIR     := build-fuzz
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Ilib -Itests/fuzz \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LIBS    := -lmsgpackc -larchive -lcrypto -lz -lpthread -lm
FUZZ_LIB_SRC := lib/stream.c lib/dataset.c lib/checkpoint.c lib/cifar.c lib/cli.c
# per target: its harness and the longest input tried
FUZZ_HARNESS_dataset    := tests/fuzz/harness_stream.c
FUZZ_HARNESS_checkpoint := tests/fuzz/harness_stream.c
FUZZ_HARNESS_archive    := tests/fuzz/harness_archive.c
FUZZ_HARNESS_cli        := tests/fuzz/harness_cli.c
FUZZ_MAXLEN_dataset     := 16384
FUZZ_MAXLEN_checkpoint  := 16384
FUZZ_MAXLEN_archive     := 65536
FUZZ_MAXLEN_cli         := 256
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_RUN_FLAGS ?= -timeout=20 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-build fuzz-merge test-asan

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/harness.h tests/fuzz/harness_util.h $(FUZZ_LIB_SRC) \
                    $(wildcard lib/*.h) tests/fuzz/harness_stream.c tests/fuzz/harness_archive.c tests/fuzz/harness_cli.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_HARNESS_$*) $(FUZZ_LIB_SRC) $(FUZZ_LIBS)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts tests/fuzz/corpus/$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  d=; case $$t in dataset) m=$(FUZZ_MAXLEN_dataset); d=-dict=tests/fuzz/stream.dict;; \
	    checkpoint) m=$(FUZZ_MAXLEN_checkpoint); d=-dict=tests/fuzz/stream.dict;; \
	    archive) m=$(FUZZ_MAXLEN_archive);; *) m=$(FUZZ_MAXLEN_cli);; esac; \
	  nice -n 10 $(FUZZ_DIR)/fuzz_$$t $(FUZZ_RUN_FLAGS) $$d -max_len=$$m -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t \
	    2>&1 | tail -n 25 || exit 1; \
	done

fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t; \
	  nice -n 10 $(FUZZ_DIR)/fuzz_$$t -merge=1 tests/fuzz/corpus/$$t $(FUZZ_DIR)/corpus/$$t 2>&1 | tail -n 2; \
	done; du -sh tests/fuzz/corpus

# ---- the sanitizer build ----------------------------------------------------------------
ASAN_BUILD := build-asan
ASAN_BIN   := bin-asan
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_LOGS  := $(ASAN_BUILD)/sanitizer-logs

# CFLAGS/LDFLAGS through the environment (the Makefile appends its own flags to them; on the
# command line they would replace them). run.sh and lib.sh find the build through BN_BUILD/BN_BIN;
# BN_SANITIZED=1 lets a test skip what sanitizers distort (RSS bounds, address-space limits).
# The normal build is made too: some tests (make -n dry runs of the pipelines) look at it.
test-asan: all
	CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" $(MAKE) --no-print-directory \
	  BUILD=$(ASAN_BUILD) BIN=$(ASAN_BIN) CUDA=0 all
	@rm -rf $(ASAN_LOGS); mkdir -p $(ASAN_LOGS)
	@BN_BUILD=$(ASAN_BUILD) BN_BIN=$(CURDIR)/$(ASAN_BIN) BN_SANITIZED=1 \
	  ASAN_OPTIONS="detect_leaks=1:exitcode=86:log_path=$(CURDIR)/$(ASAN_LOGS)/asan:abort_on_error=0" \
	  LSAN_OPTIONS="suppressions=$(CURDIR)/tests/fuzz/lsan.supp:print_suppressions=0" \
	  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$(CURDIR)/$(ASAN_LOGS)/ubsan" \
	  sh tests/run.sh "$(PATTERN)"; rc=$$?; \
	if ls $(ASAN_LOGS)/* >/dev/null 2>&1; then \
	  echo "test-asan: sanitizer reports in $(ASAN_LOGS):"; head -n 40 $(ASAN_LOGS)/*; exit 1; fi; \
	echo "test-asan: no sanitizer report"; exit $$rc
