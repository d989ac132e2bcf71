# mpi.mk: data-parallel transports for lib/dist.c (MPI) and lib/dist_nccl.c (NCCL).
#
#   make MPI=0     build without MPI: net-train is then always a single process
#   make NCCL=0    build without the NCCL transport
#
# MPI: the flags come from the MPI compiler wrapper (mpicc --showme:compile / :link, Open
# MPI's spelling; MPICH's is -compile-info / -link-info, tried second). NCCL: nccl.h under
# CUDA_HOME and MPI (it hands NCCL its unique id). Only dist.o and dist_nccl.o need the
# compile flags; every program links the libraries (libbn.a holds dist.o).

MPICC ?= mpicc
ifeq ($(MPI),0)
  HAVE_MPI := 0
  MPI_WHY  := disabled by MPI=0
else ifeq ($(shell command -v $(MPICC) 2>/dev/null),)
  HAVE_MPI := 0
  MPI_WHY  := $(MPICC) not found
else
  MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null || $(MPICC) -compile-info 2>/dev/null | cut -d' ' -f2- | tr ' ' '\n' | grep '^-[ID]' | tr '\n' ' ')
  MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null || $(MPICC) -link-info 2>/dev/null | cut -d' ' -f2- | tr ' ' '\n' | grep '^-[LlW]' | tr '\n' ' ')
  ifeq ($(strip $(MPI_LIBS)),)
    HAVE_MPI := 0
    MPI_WHY  := $(MPICC) gives no link flags
  else
    HAVE_MPI := 1
    MPI_WHY  := $(MPICC): $(strip $(MPI_LIBS))
  endif
endif

ifeq ($(NCCL),0)
  HAVE_NCCL := 0
  NCCL_WHY  := disabled by NCCL=0
else ifneq ($(HAVE_MPI),1)
  HAVE_NCCL := 0
  NCCL_WHY  := needs MPI
else ifeq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
  HAVE_NCCL := 0
  NCCL_WHY  := nccl.h not found under $(CUDA_HOME)/include
else
  HAVE_NCCL := 1
  NCCL_WHY  := nccl.h and libnccl under $(CUDA_HOME)
endif

DIST_CFLAGS :=
ifeq ($(HAVE_MPI),1)
  DIST_CFLAGS += -DHAVE_MPI $(MPI_CFLAGS)
  LDLIBS      += $(MPI_LIBS)
endif
ifeq ($(HAVE_NCCL),1)
  DIST_CFLAGS += -DHAVE_NCCL -I$(CUDA_HOME)/include
  LDLIBS      += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcudart
endif

$(BUILD)/lib/dist.o $(BUILD)/lib/dist_nccl.o: CFLAGS += $(DIST_CFLAGS)
# rebuild them when the transport flags change (MPI=0 after a build with MPI, ...)
$(BUILD)/lib/dist.o $(BUILD)/lib/dist_nccl.o: $(BUILD)/dist.flags
# (written while the makefiles are read, so that `make -n` stays quiet when nothing changed)
$(shell mkdir -p $(BUILD) && { echo '$(DIST_CFLAGS)' | cmp -s - $(BUILD)/dist.flags || echo '$(DIST_CFLAGS)' > $(BUILD)/dist.flags; })
.PHONY: mpi-status

all: mpi-status
mpi-status:
	@echo "build: data-parallel MPI $(if $(filter 1,$(HAVE_MPI)),ON,OFF) ($(MPI_WHY)); NCCL $(if $(filter 1,$(HAVE_NCCL)),ON,OFF) ($(NCCL_WHY))"
