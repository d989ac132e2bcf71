# seed.mk: the seed's notebooks (EXPERIMENTS.md), one target each, SEED_RECIPE unless said:
# the Keras bottleneck "ResNet20", SGD lr 0.01, batch 128, 75 epochs, the seed's augmentation.
#   subset-all, subset-bnonly  first 10,000 train / 2,000 test images; variants: plain SGD and
#                              the three Keras cosine schedules (CosineDecay, LinearCosineDecay,
#                              CosineDecayRestarts: lr 0.1, 1,000 decay steps, as the seed)
#   full-all, full-bnonly      the same on the whole dataset
#   full-batch1024             the TPU notebook: batch 1024 (one device here)
#   lr-schedules               batch 1024: Adam (lr 1e-3) with and without the ramp-up, SGD, the
#                              Keras cosines, and a cosine over the whole run ("cosine-run"),
#                              which does not die after 1,000 steps; lr.png: lr vs step
#   frozen                     nothing trainable (Adam, batch 1024): stays at chance
#   batch-sizes                BN-only, Adam, batch 256/512/1024/2048 (BATCHES)
#   viz, viz2                  the two visualisation notebooks, on the subset's SGD runs
#                              (VIZ_FROM=full: on the full runs)
# Variables (also those of common.mk): SUBSET_TRAIN (10000), SUBSET_TEST (2000), SEED_VARIANTS,
# LR_VARIANTS, BATCHES, VIZ_FROM, VIZ_IMAGE (the test image of viz, 0).

SUBSET_TRAIN  ?= 10000
SUBSET_TEST   ?= 2000
SEED_VARIANTS ?= sgd cosine linear-cosine cosine-restarts
LR_VARIANTS   ?= all-adam all-adam-rampup bnonly-adam bnonly-adam-rampup bnonly-sgd bnonly-cosine \
                 bnonly-linear-cosine bnonly-cosine-restarts bnonly-cosine-run
BATCHES       ?= 256 512 1024 2048
VIZ_FROM      ?= subset
VIZ_IMAGE     ?= 0

# the seed's optimizer/schedule variants (net-train flags beyond SEED_RECIPE)
SEEDV_sgd             :=
SEEDV_cosine          := --schedule keras-cosine --lr 0.1 --decay-steps 1000
SEEDV_linear-cosine   := --schedule keras-linear-cosine --lr 0.1 --decay-steps 1000
SEEDV_cosine-restarts := --schedule keras-cosine-restarts --lr 0.1 --decay-steps 1000
SEEDV_cosine-run      := --schedule cosine --lr 0.1
SEEDV_adam            := --optimizer adam --lr 1e-3
SEEDV_adam-rampup     := --optimizer adam --schedule rampup

sub_tr  = $(call train_ds,$(or $(NTRAIN),$(SUBSET_TRAIN)))
sub_te  = $(call test_ds,$(or $(NTEST),$(SUBSET_TEST)))
full_tr = $(call train_ds,$(NTRAIN))
full_te = $(call test_ds,$(NTEST))
seed_b128  = --batch $(or $(BATCH),128)
seed_b1024 = --batch $(or $(BATCH),1024)

SEED_TARGETS := subset-all subset-bnonly full-all full-bnonly full-batch1024 lr-schedules frozen batch-sizes
.PHONY: $(SEED_TARGETS) viz viz2 seed-all

# subset-{all,bnonly} and full-{all,bnonly}: $(1) = subset|full, $(2) = all|bnonly
define seed_pair
$(foreach v,$(SEED_VARIANTS),$(eval $(call train_run,$(RUNS)/$(1)-$(2),$(v),$(SEED_ARCH),$(FREEZE_$(2)),$(SEED_RECIPE) $(seed_b128) $(SEEDV_$(v)),$($(if $(filter subset,$(1)),sub,full)_tr),$($(if $(filter subset,$(1)),sub,full)_te))))
$(eval $(call finish,$(RUNS)/$(1)-$(2),$(if $(filter subset,$(1)),first 10000 train / 2000 test images,full CIFAR-10): $(if $(filter all,$(2)),all parameters,BatchNorm only) (seed ResNet20),$(SEED_VARIANTS),SEED_RECIPE (Keras bottleneck ResNet20; SGD lr 0.01 / Keras cosines lr 0.1; batch 128; 75 epochs; seed augmentation)))
$(1)-$(2): $(RUNS)/$(1)-$(2)/summary.md $(RUNS)/$(1)-$(2)/curves.png $(RUNS)/$(1)-$(2)/bars.png
	@cat $$<
endef
$(foreach s,subset full,$(foreach m,all bnonly,$(eval $(call seed_pair,$(s),$(m)))))

# targets whose variants are "<all|bnonly|none>-<seed variant>" at batch 1024 on the full data
# $(1) = target, $(2) = variants, $(3) = title
define seed_1024
$(foreach v,$(2),$(eval $(call train_run,$(RUNS)/$(1),$(v),$(SEED_ARCH),$(FREEZE_$(firstword $(subst -, ,$(v)))),$(SEED_RECIPE) $(seed_b1024) $(SEEDV_$(patsubst $(firstword $(subst -, ,$(v)))-%,%,$(v))),$(full_tr),$(full_te))))
$(eval $(call finish,$(RUNS)/$(1),$(3),$(2),SEED_RECIPE at batch 1024 (the TPU notebooks; SGD lr 0.01 / Keras cosines lr 0.1 / Adam lr 1e-3 / ramp-up peak 4e-4)))
$(1): $(RUNS)/$(1)/summary.md $(RUNS)/$(1)/curves.png $(RUNS)/$(1)/bars.png
	@cat $$<
endef
$(eval $(call seed_1024,full-batch1024,all-sgd bnonly-sgd bnonly-cosine-restarts,full CIFAR-10 at batch 1024 (seed ResNet20)))
$(eval $(call seed_1024,lr-schedules,$(LR_VARIANTS),learning-rate schedules at batch 1024 (seed ResNet20)))
lr-schedules: $(RUNS)/lr-schedules/lr.png

# frozen: a single variant "none" (nothing trainable), Adam, batch 1024
$(eval $(call train_run,$(RUNS)/frozen,none,$(SEED_ARCH),--train none,$(SEED_RECIPE) $(seed_b1024) $(SEEDV_adam),$(full_tr),$(full_te)))
$(eval $(call finish,$(RUNS)/frozen,every layer frozen (seed ResNet20; Adam; batch 1024),none,SEED_RECIPE with Adam lr 1e-3 at batch 1024; nothing trainable (BN running statistics still follow the data)))
frozen: $(RUNS)/frozen/summary.md $(RUNS)/frozen/curves.png $(RUNS)/frozen/bars.png
	@cat $<

# batch-sizes: BN-only, Adam lr 1e-3, variants b256 ... (BATCH does not apply here)
$(foreach b,$(BATCHES),$(eval $(call train_run,$(RUNS)/batch-sizes,b$(b),$(SEED_ARCH),--train bn,$(SEED_RECIPE) --batch $(b) $(SEEDV_adam),$(full_tr),$(full_te))))
$(eval $(call finish,$(RUNS)/batch-sizes,BatchNorm only at several batch sizes (seed ResNet20; Adam),$(addprefix b,$(BATCHES)),SEED_RECIPE with Adam lr 1e-3; batch size per variant))
batch-sizes: $(RUNS)/batch-sizes/summary.md $(RUNS)/batch-sizes/curves.png $(RUNS)/batch-sizes/bars.png
	@cat $<

# lr.png: the rate of every step of each lr-schedules run, as net-train used it (net-lr)
$(RUNS)/lr-schedules/%.lr.tsv: $(RUNS)/lr-schedules/%.ckpt | $(BIN)/net-lr
	$(BIN)/net-lr $< > $@
$(RUNS)/lr-schedules/lr.png: $(foreach v,$(LR_VARIANTS),$(RUNS)/lr-schedules/$(v).lr.tsv) $(PIPE)/lr.gp
	gnuplot -e "out='$@.tmp'; files='$(foreach v,$(LR_VARIANTS),$(RUNS)/lr-schedules/$(v).lr.tsv)'; titles='$(LR_VARIANTS)'; heading='lr-schedules: learning rate of every step (batch 1024)'" $(PIPE)/lr.gp
	mv $@.tmp $@

# viz / viz2: feature maps of the stem conv (16 channels) and of the first block's 1x1
# expansion conv (64 channels), all-trained vs BN-only, from the SGD runs of VIZ_FROM
VIZ_ALL    = $(RUNS)/$(VIZ_FROM)-all/sgd.ckpt
VIZ_BN     = $(RUNS)/$(VIZ_FROM)-bnonly/sgd.ckpt
VIZ_TEST   = $(if $(filter subset,$(VIZ_FROM)),$(sub_te),$(full_te))
VIZ_LAYERS := stem.conv s1.b0.conv3
$(RUNS)/viz/%.png: $(VIZ_ALL) $(VIZ_BN) $(VIZ_TEST) | $(BIN)/filter-viz
	@mkdir -p $(@D)
	m=$*; run=$${m%%-*}; layer=$${m#*-}; ck=$(VIZ_ALL); [ $$run = bnonly ] && ck=$(VIZ_BN); \
	$(BIN)/filter-viz maps $$ck $(VIZ_TEST) --layer $$layer --image $(VIZ_IMAGE) \
	  --title "$$run: $$layer feature maps, test image $(VIZ_IMAGE)" -o $@
$(RUNS)/viz2/%.png: $(VIZ_ALL) $(VIZ_BN) $(VIZ_TEST) | $(BIN)/filter-viz
	@mkdir -p $(@D)
	ck=$(VIZ_ALL); [ $* = bnonly ] && ck=$(VIZ_BN); \
	$(BIN)/filter-viz maps $$ck $(VIZ_TEST) --layer s1.b0.conv3 --images 8 --channels 7 --seed $(SEED) \
	  --title "$*: 8 random test images, then 7 channels of s1.b0.conv3" -o $@
viz: $(foreach r,all bnonly,$(foreach l,$(VIZ_LAYERS),$(RUNS)/viz/$(r)-$(l).png))
	@echo "viz: $^"
viz2: $(RUNS)/viz2/all.png $(RUNS)/viz2/bnonly.png
	@echo "viz2: $^"

seed-all: $(SEED_TARGETS) viz viz2
