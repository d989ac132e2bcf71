# common.mk: what every experiment pipeline shares (seed.mk, paper.mk, demo.mk).
#
# Variables a user may set on the command line (make VAR=value target):
#   DATA     the CIFAR-10 binary archive: a URL, file:// URL or path. Default: the official
#            URL, or the shared sample (../shared/data) where one sits beside this checkout.
#   RUNS     results root (default runs): every file of target T lands under $(RUNS)/T/
#   RUN      prefix of every training command, e.g. RUN="srun -N1 -n1 --gres=gpu:1"
#   EPOCHS   epochs of every run (default: the recipe's: seed 75, paper 160)
#   BATCH    batch size (default: the recipe's / the notebook's)
#   DEVICE   auto (default), cpu, cuda or ref       THREADS  OpenMP threads per run
#   SEED     initialisation, shuffling and augmentation seed (default 1)
#   NTRAIN / NTEST  use only the first N training / test images (default: the target's)
#   EVERY    a checkpoint every N epochs in each run's stream (default 5)
# Every recipe runs under bash with pipefail and errexit, and .DELETE_ON_ERROR (top
# Makefile) removes a target whose recipe failed. Training runs go through
# pipelines/train-run.sh: an interrupted run resumes from its last checkpoint next time.

SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -ec

OFFICIAL_URL := https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
SHARED_SAMPLE := ../shared/data/cifar-10-sample.tar.gz
DATA    ?= $(if $(wildcard $(SHARED_SAMPLE)),$(SHARED_SAMPLE),$(OFFICIAL_URL))
RUNS    ?= runs
RUN     ?=
DEVICE  ?= auto
SEED    ?= 1
EVERY   ?= 5
THREADS ?=
EPOCHS  ?=
BATCH   ?=
NTRAIN  ?=
NTEST   ?=
FETCH_FLAGS ?= $(if $(filter $(OFFICIAL_URL),$(DATA)),,--allow-unofficial)

PIPE     := pipelines
empty    :=
space    := $(empty) $(empty)
comma    := ,
DATADIR  := $(RUNS)/data
NEEDBIN  := $(BIN)/cifar-fetch $(BIN)/cifar-subset $(BIN)/net-init $(BIN)/net-freeze $(BIN)/net-train \
            $(BIN)/net-eval $(BIN)/net-inspect $(BIN)/net-lr $(BIN)/net-ablate $(BIN)/filter-viz
DEVFLAGS  = --device $(DEVICE) $(if $(THREADS),--threads $(THREADS))

# The two recipes (EXPERIMENTS.md). Each target says which one it follows.
#  SEED_RECIPE: the seed's Keras bottleneck "ResNet20" (9n+2), SGD lr 0.01 (no momentum, no
#               wd), batch 128, 75 epochs, its augmentation (pad 40, crop, brightness),
#               pixels in [0,1]; BN-only = everything but BN frozen, the output layer too.
#  PAPER_RECIPE: the paper's ResNet (6n+2, width 16), SGD 0.1 momentum 0.9, wd 1e-4, batch
#               128, 160 epochs, lr x0.1 at 80 and 120, crop + flip, mean/std.
SEED_ARCH    ?= --arch bottleneck --depth 20
SEED_RECIPE   = --recipe seed --epochs $(or $(EPOCHS),75)
PAPER_RECIPE  = --recipe paper --epochs $(or $(EPOCHS),160)

# net-freeze flags of the usual variants (FREEZE_<variant>)
FREEZE_all    := --train all
FREEZE_bnonly := --train bn
FREEZE_none   := --train none

# --- data: both official splits in one pass, then the first N images as asked --------------
$(DATADIR)/train.ds $(DATADIR)/test.ds &: | $(BIN)/cifar-fetch
	@mkdir -p $(@D)
	$(BIN)/cifar-fetch --url $(DATA) $(FETCH_FLAGS) --split both -o $(DATADIR)/train.ds --test-output $(DATADIR)/test.ds
$(DATADIR)/train-first%.ds: $(DATADIR)/train.ds | $(BIN)/cifar-subset
	$(BIN)/cifar-subset --first $* $< -o $@
$(DATADIR)/test-first%.ds: $(DATADIR)/test.ds | $(BIN)/cifar-subset
	$(BIN)/cifar-subset --first $* $< -o $@
# $(call train_ds,N) / $(call test_ds,N): the stream of the first N images (all when N is empty)
train_ds = $(DATADIR)/train$(if $(1),-first$(1)).ds
test_ds  = $(DATADIR)/test$(if $(1),-first$(1)).ds

# --- one run ---------------------------------------------------------------------------------
# $(call train_run,DIR,VARIANT,INIT_FLAGS,FREEZE_FLAGS,TRAIN_FLAGS,TRAIN_DS,TEST_DS) defines
#   DIR/VARIANT.init.ckpt    net-init INIT_FLAGS --seed SEED
#   DIR/VARIANT.frozen.ckpt  net-freeze FREEZE_FLAGS (DIR/VARIANT.frozen.txt: what it trains)
#   DIR/VARIANT.ckpt         net-train TRAIN_FLAGS (RUN-prefixed, resumable), and its metrics
#                            DIR/VARIANT.tsv (one row per epoch)
#   DIR/VARIANT.settings     the three command lines, for summary.md
#   DIR/VARIANT.eval.tsv     net-eval on TEST_DS (key<TAB>value)
define train_run
$(1)/$(2).init.ckpt: | $(BIN)/net-init
	@mkdir -p $$(@D)
	$(BIN)/net-init $(3) --seed $(SEED) -o $$@ 2>/dev/null
$(1)/$(2).frozen.ckpt: $(1)/$(2).init.ckpt | $(BIN)/net-freeze
	$(BIN)/net-freeze $(4) $$< -o $$@ 2> $(1)/$(2).frozen.txt || { cat $(1)/$(2).frozen.txt >&2; exit 1; }
$(1)/$(2).ckpt: $(1)/$(2).frozen.ckpt $(6) $(7) | $(NEEDBIN)
	printf 'net-init %s\nnet-freeze %s\nnet-train %s\n' "$(strip $(3))" "$(strip $(4))" "$(strip $(5))" > $(1)/$(2).settings
	$(RUN) $(PIPE)/train-run.sh $$@ $$< --train $(6) --test $(7) $(5) --seed $(SEED) --every $(EVERY) $(DEVFLAGS)
$(1)/$(2).eval.tsv: $(1)/$(2).ckpt $(7)
	$(BIN)/net-eval $$< $(7) --format tsv $(DEVFLAGS) > $$@
endef

# --- what every target ends with -------------------------------------------------------------
# $(call finish,DIR,TITLE,VARIANTS,RECIPE-NOTE): DIR/summary.md (our final numbers beside the
# published ones, pipelines/published.tsv), DIR/curves.png (accuracy and loss per epoch of
# every variant), DIR/bars.png (final test accuracy, ours vs published).
define finish
$(1)/summary.md $(1)/bars.tsv &: $(foreach v,$(3),$(1)/$(v).eval.tsv) $(PIPE)/summary.sh $(PIPE)/published.tsv
	BIN=$(BIN) $(PIPE)/summary.sh $(1) "$(2)" "$(4)" "$(DATA)" $(3)
$(1)/curves.png: $(foreach v,$(3),$(1)/$(v).ckpt) $(PIPE)/curves.gp
	gnuplot -e "out='$$@.tmp'; files='$(foreach v,$(3),$(1)/$(v).tsv)'; titles='$(3)'; heading='$(2)'" $(PIPE)/curves.gp
	mv $$@.tmp $$@
$(1)/bars.png: $(1)/bars.tsv $(PIPE)/bars.gp
	gnuplot -e "out='$$@.tmp'; file='$$<'; heading='$(2): final test accuracy'" $(PIPE)/bars.gp
	mv $$@.tmp $$@
endef
