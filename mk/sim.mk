# sim.mk: the CUDA backend's own code run on the CPU, under tests/cudasim (an emulation of
# the CUDA runtime and cuDNN calls kernels/ makes, and of its kernels' threads and barriers).
#
#   make sim        build build/sim/tests/test_cuda_ops and test_cuda_train (and the tools,
#                   build/sim/bin/, for tests/cli_sim.sh) against the
#                   emulation: kernels/*.cu compiled by g++ (each launch k<<<...>>>(args)
#                   rewritten as sim_launch(...)), lib/ built with HAVE_CUDA, no libcudart,
#                   no libcudnn. `make test` runs them beside the real ones (which skip
#                   where there is no GPU), listed as build/sim/tests/...
#   make sim-mutants
#                   the same tests against kernels/ with one bug planted at a time
#                   (tests/cudasim/mutants.sh, about a minute each): every one must be caught.
#
# Needs the CUDA and cuDNN headers (not nvcc, not a GPU): every machine here has them.
# SIM=0 leaves it out.

SIM_BUILD := $(BUILD)/sim
ifeq ($(SIM),0)
  HAVE_SIM := 0
else ifeq ($(wildcard $(CUDA_HOME)/include/cuda_runtime.h),)
  HAVE_SIM := 0
else ifeq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
  HAVE_SIM := 0
else
  HAVE_SIM := 1
endif

SIM_CXX      ?= g++
SIM_CXXFLAGS := -std=c++17 -O3 -g -fopenmp -ffp-contract=off -Wall -Wno-unused-function -Wno-deprecated-declarations \
                -I$(CUDA_HOME)/include -Ikernels -Ilib -Itests/cudasim
SIM_CFLAGS    = $(filter-out -DHAVE_CUDA=1,$(CFLAGS)) -DHAVE_CUDA=1 -I$(CUDA_HOME)/include
SIM_LDLIBS    = -lmsgpackc -lcurl -larchive -lcrypto -lz -ldnnl -lm -lpthread $(if $(filter 1,$(HAVE_MPI)),$(MPI_LIBS)) -lstdc++
SIM_KOBJ     := $(CU_SRC:kernels/%.cu=$(SIM_BUILD)/kernels/%.o) $(SIM_BUILD)/cudasim.o
SIM_LOBJ     := $(LIB_SRC:lib/%.c=$(SIM_BUILD)/lib/%.o)
SIM_TESTS    := $(SIM_BUILD)/tests/test_cudasim $(SIM_BUILD)/tests/test_cuda_ops $(SIM_BUILD)/tests/test_cuda_train
SIM_TOOLS    := $(patsubst tools/%.c,$(SIM_BUILD)/bin/%,$(sort $(wildcard tools/*.c)))
SIM_BENCHES  := $(patsubst tests/%.c,$(SIM_BUILD)/tests/%,$(sort $(wildcard tests/bench_*.c)))

.PHONY: sim sim-mutants
ifeq ($(HAVE_SIM),1)
sim: $(SIM_TESTS) $(SIM_TOOLS) $(SIM_BENCHES)
test check: sim
# kernels/ with one bug each (tests/cudasim/mutants.sh): test_cuda_ops must catch every one
sim-mutants: sim
	@sh tests/cudasim/mutants.sh $(MUTANTS)
else
sim:
	@echo "sim: skipped (needs cuda_runtime.h and cudnn.h under $(CUDA_HOME)/include)"
endif

# the one rewrite: k<<<cfg>>>(args  ->  sim_launch(sim_cfg(cfg), k, args
SIM_REWRITE = { echo '\#line 1 "$<"'; sed -e 's/\([A-Za-z_][A-Za-z0-9_]*\(<[^<>]*>\)\{0,1\}\)<<<\(.*\)>>>()/sim_launch(sim_cfg(\3), \1)/' \
	      -e 's/\([A-Za-z_][A-Za-z0-9_]*\(<[^<>]*>\)\{0,1\}\)<<<\(.*\)>>>(/sim_launch(sim_cfg(\3), \1, /' $<; } > $@
$(SIM_BUILD)/kernels/%.cc: kernels/%.cu
	@mkdir -p $(@D)
	$(SIM_REWRITE)
$(SIM_BUILD)/gen/test_cudasim.cc: tests/cudasim/test_cudasim.cu
	@mkdir -p $(@D)
	$(SIM_REWRITE)
$(SIM_BUILD)/tests/test_cudasim.o: $(SIM_BUILD)/gen/test_cudasim.cc tests/cudasim/cudasim.h
	@mkdir -p $(@D)
	$(SIM_CXX) $(SIM_CXXFLAGS) -Itests -MMD -MP -include cudasim.h -c -o $@ $<
$(SIM_BUILD)/tests/test_cudasim: $(SIM_BUILD)/tests/test_cudasim.o $(SIM_BUILD)/cudasim.o
	$(SIM_CXX) -fopenmp -o $@ $^ -lm -lpthread

$(SIM_BUILD)/kernels/%.o: $(SIM_BUILD)/kernels/%.cc tests/cudasim/cudasim.h
	$(SIM_CXX) $(SIM_CXXFLAGS) -MMD -MP -include cudasim.h -c -o $@ $<

# the emulation itself for this machine's vectors (its convolutions are most of a test's time;
# each output is its own sum, so the vector width does not change a bit); kernels/ stays generic
SIM_ARCH ?= -march=native
$(SIM_BUILD)/cudasim.o: tests/cudasim/cudasim.cc tests/cudasim/cudasim.h
	@mkdir -p $(@D)
	$(SIM_CXX) $(SIM_CXXFLAGS) $(SIM_ARCH) -MMD -MP -c -o $@ $<

$(SIM_BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(SIM_CFLAGS) -c -o $@ $<
$(SIM_BUILD)/lib/dist.o: SIM_CFLAGS += $(if $(filter 1,$(HAVE_MPI)),-DHAVE_MPI $(MPI_CFLAGS))
$(SIM_BUILD)/lib/ops_cpu_bn.o: SIM_CFLAGS += -Wno-psabi

$(SIM_BUILD)/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(SIM_CFLAGS) -c -o $@ $<
$(SIM_BUILD)/bin/%: $(SIM_BUILD)/tools/%.o $(SIM_BUILD)/libbn-sim.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(SIM_LDLIBS)

$(SIM_BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(SIM_CFLAGS) -c -o $@ $<

$(SIM_BUILD)/libbn-sim.a: $(SIM_LOBJ) $(SIM_KOBJ)
	$(AR) rcs $@ $^

$(SIM_BUILD)/tests/%: $(SIM_BUILD)/tests/%.o $(SIM_BUILD)/libbn-sim.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SIM_LDLIBS)
