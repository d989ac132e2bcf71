# precision.mk: `make precision`, the accuracy effect of the GPU's faster arithmetic
# (issue #5: "an option for TF32/bf16 tensor cores with its accuracy effect measured").
#
# ResNet-20 (the paper's, width 16) from one initialisation, trained with all parameters and
# with BatchNorm only, once per precision of PREC_LIST, everything else the same (the
# demo's recipe: SGD 0.1, momentum 0.9, wd 5e-4, cosine, crop + flip, mean/std, batch 128).
# By default on the CPU, where tf32-sim and bf16-sim round the convolutions' operands as
# tensor cores do (lib/ops_sim.c), so it runs anywhere; on a GPU machine
#   make precision PREC_DEVICE=cuda PREC_LIST="fp32 tf32"
# measures the real thing. Results under $(RUNS)/precision-s$(SEED)/: summary.md (final test
# accuracy and loss per run), curves.png, bars.png, and precision.tsv (precision, variant, test
# accuracy, test loss, last epoch's train loss) for comparing seeds:
#   make precision SEED=2
#   make precision [PREC_TRAIN=4000] [PREC_TEST=1000] [PREC_EPOCHS=8] [PREC_LIST=...]
# (NTRAIN, NTEST, EPOCHS and BATCH set the defaults of the first three and the batch, as in
# the other targets)

PREC_TRAIN  ?= $(or $(NTRAIN),4000)
PREC_TEST   ?= $(or $(NTEST),1000)
PREC_EPOCHS ?= $(or $(EPOCHS),8)
PREC_LIST   ?= fp32 tf32-sim bf16-sim
PREC_DEVICE ?= cpu
PREC        := $(RUNS)/precision-s$(SEED)
PREC_TRAINDS = $(call train_ds,$(PREC_TRAIN))
PREC_TESTDS  = $(call test_ds,$(PREC_TEST))
PREC_RECIPE  = --epochs $(PREC_EPOCHS) --batch $(or $(BATCH),128) --optimizer sgd --lr 0.1 --momentum 0.9 --wd 5e-4 \
               --schedule cosine --augment crop-flip --normalize meanstd
PREC_DEV     = --device $(PREC_DEVICE) $(if $(THREADS),--threads $(THREADS))
PREC_RUNS   := $(foreach v,all bnonly,$(foreach p,$(PREC_LIST),$(v)-$(p)))

# $(call prec_run,VARIANT,PRECISION): PREC/VARIANT-PRECISION.{ckpt,tsv,eval.tsv,settings}
define prec_run
$(PREC)/$(1)-$(2).ckpt: $(PREC)/init.ckpt $(PREC_TRAINDS) $(PREC_TESTDS) | $(NEEDBIN)
	$(BIN)/net-freeze $(FREEZE_$(1)) $$< -o $(PREC)/$(1)-$(2).frozen.ckpt 2> $(PREC)/$(1)-$(2).frozen.txt
	printf 'net-init %s\nnet-freeze %s\nnet-train %s\n' "--arch resnet --depth 20 --width 16" "$(FREEZE_$(1))" \
	  "$(strip $(PREC_RECIPE)) --precision $(2)" > $(PREC)/$(1)-$(2).settings
	$(RUN) $(PIPE)/train-run.sh $$@ $(PREC)/$(1)-$(2).frozen.ckpt --train $(PREC_TRAINDS) --test $(PREC_TESTDS) \
	  $(PREC_RECIPE) --precision $(2) --seed $(SEED) --every $(EVERY) $(PREC_DEV)
$(PREC)/$(1)-$(2).eval.tsv: $(PREC)/$(1)-$(2).ckpt $(PREC_TESTDS)
	$(BIN)/net-eval $$< $(PREC_TESTDS) --format tsv --precision $(2) $(PREC_DEV) > $$@
endef

$(PREC)/init.ckpt: | $(BIN)/net-init
	@mkdir -p $(@D)
	$(BIN)/net-init --arch resnet --depth 20 --width 16 --seed $(SEED) -o $@ 2>/dev/null
$(foreach v,all bnonly,$(foreach p,$(PREC_LIST),$(eval $(call prec_run,$(v),$(p)))))
$(eval $(call finish,$(PREC),precision of the convolutions (ResNet-20; tf32-sim / bf16-sim: tensor-core rounding simulated),$(PREC_RUNS),the demo's recipe for $(PREC_EPOCHS) epochs; one initialisation (seed $(SEED)); the variant's suffix is its --precision))

$(PREC)/precision.tsv: $(foreach r,$(PREC_RUNS),$(PREC)/$(r).eval.tsv)
	{ printf 'precision\tvariant\ttest_acc\ttest_loss\ttrain_loss\n'; \
	  for v in all bnonly; do for p in $(PREC_LIST); do \
	    a=$$(awk -F'\t' '$$1=="accuracy"{print $$2}' $(PREC)/$$v-$$p.eval.tsv); \
	    l=$$(awk -F'\t' '$$1=="loss"{print $$2}' $(PREC)/$$v-$$p.eval.tsv); \
	    t=$$(awk -F'\t' 'END{print $$4}' $(PREC)/$$v-$$p.tsv); \
	    printf '%s\t%s\t%s\t%s\t%s\n' $$p $$v $$a $$l $$t; done; done; } > $@

.PHONY: precision
precision: $(PREC)/summary.md $(PREC)/curves.png $(PREC)/bars.png $(PREC)/precision.tsv
	@cat $(PREC)/summary.md; echo; cat $(PREC)/precision.tsv
