# bnonly: train BatchNorm and only BatchNorm, as a pipeline of small C programs.
#
#   make            build every program into bin/ (CPU always; CUDA where nvcc + cuDNN are found)
#   make test       run the whole test suite (ends with "N passed, N failed")
#   make bench      throughput benchmarks (images/s, ratios against peers)
#   make deps       install the Debian packages the project needs
#   make CUDA=0     build without the CUDA path even where it is available
#   make demo       the README's main job

VERSION := 0.1.0
CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -ffp-contract=off -D_GNU_SOURCE -Wall -Wextra -fopenmp -MMD -MP -Ilib -DBN_VERSION='"$(VERSION)"'
LDLIBS  := -lmsgpackc -lcurl -larchive -lcrypto -lz -ldnnl -lm -lpthread
LDFLAGS += -fopenmp

BUILD := build
BIN   := bin

# --- CUDA detection: nvcc and cudnn.h, unless CUDA=0 -------------------------------------
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
ifeq ($(CUDA),0)
  HAVE_CUDA := 0
  CUDA_WHY  := disabled by CUDA=0
else ifeq ($(wildcard $(NVCC)),)
  HAVE_CUDA := 0
  CUDA_WHY  := nvcc not found at $(NVCC)
else ifeq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
  HAVE_CUDA := 0
  CUDA_WHY  := cudnn.h not found under $(CUDA_HOME)/include
else
  HAVE_CUDA := 1
  CUDA_WHY  := nvcc and cuDNN found under $(CUDA_HOME)
endif

LIB_SRC  := $(sort $(wildcard lib/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CU_SRC   := $(sort $(wildcard kernels/*.cu))
ifeq ($(HAVE_CUDA),1)
  CFLAGS   += -DHAVE_CUDA=1 -I$(CUDA_HOME)/include
  CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
  LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcudart -lstdc++
  # -fmad=false: no multiply-add fused unless the source says so (fmaf, __fma_rn), as the C
  # build's -ffp-contract=off and the emulation's: the kernels' bits are what the source
  # says, the same in every template copy, on every CUDA version (docs/gpu.md, "Precision")
  NVFLAGS  ?= -O2 -std=c++17 -arch=sm_90 -fmad=false -Ilib -Xcompiler -Wall -Xcompiler -ffp-contract=off
else
  CU_OBJ   :=
endif
TOOLS    := $(patsubst tools/%.c,$(BIN)/%,$(sort $(wildcard tools/*.c)))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
# benchmark programs beside the tests (not run by tests/run.sh): bench_conv, the GPU's convolutions
BENCHES  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(sort $(wildcard tests/bench_*.c)))
LIBA     := $(BUILD)/libbn.a

.PHONY: all test check bench deps clean cuda-status
all: cuda-status mpi-status $(TOOLS) $(TESTS) $(BENCHES)

cuda-status:
	@echo "build: CPU path always; CUDA path $(if $(filter 1,$(HAVE_CUDA)),ON,OFF) ($(CUDA_WHY))"

$(LIBA): $(LIB_OBJ) $(CU_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# BatchNorm's 8-float vectors in static functions: GCC notes that their ABI changed in 4.6
# (there is no ABI to keep; its pragma does not silence the note)
$(BUILD)/lib/ops_cpu_bn.o: CFLAGS += -Wno-psabi

# the objects of kernels/ depend on NVFLAGS too (-fmad=false, the -arch): a stamp, rewritten
# as the Makefile is read and only when the flags changed (so make -n still plans nothing)
NVFLAGS_STAMP := $(BUILD)/nvflags.txt
ifeq ($(HAVE_CUDA),1)
  $(shell mkdir -p $(BUILD) && { [ "$$(cat $(NVFLAGS_STAMP) 2>/dev/null)" = '$(NVFLAGS)' ] || printf '%s\n' '$(NVFLAGS)' > $(NVFLAGS_STAMP); })
endif

$(BUILD)/%.o: %.cu $(NVFLAGS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -c -o $@ $<

$(BIN)/%: $(BUILD)/tools/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test check: all
	@sh tests/run.sh

bench: all
	@sh tests/bench.sh

deps:
	@sh scripts/deps.sh

clean:
	rm -rf $(BUILD) $(BIN)

.SECONDARY:
.DELETE_ON_ERROR:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
-include $(wildcard pipelines/*.mk)
-include $(wildcard mk/*.mk)
