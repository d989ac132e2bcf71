# paper.mk: the paper's experiments (Frankle, Schwab, Morcos 2021), PAPER_RECIPE: the CIFAR
# ResNet (6n+2, width 16), SGD lr 0.1 momentum 0.9 wd 1e-4, batch 128, 160 epochs, lr x0.1 at
# epochs 80 and 120, crop + flip, mean/std normalisation, gamma ~ U[0,1].
#   paper-depths     all vs BN-only for ResNet-DEPTHS (14 20 32 56 110; add 218 434 866 by
#                    DEPTHS="..."); variants d<depth>-all, d<depth>-bnonly
#   paper-widths     all vs BN-only for ResNet-WIDTH_DEPTH (14) at widths WIDTHS (16 32 64 128)
#   paper-baselines  ResNet-BASE_DEPTH (20): all, BN-only, output only, BN + output, k random
#                    parameters per channel (k = 2: as many as BN-only), nothing trained
#   paper-gamma      the BN-only and all runs of paper-depths at GAMMA_DEPTH (20): fraction of
#                    |gamma| below GAMMA_THRESHOLDS (0.01 0.05 0.1) per layer, and the test
#                    accuracy after setting those gammas to zero (net-ablate)
# Variables (also those of common.mk): DEPTHS, WIDTHS, WIDTH_DEPTH, BASE_DEPTH, GAMMA_DEPTH,
# GAMMA_THRESHOLDS, PAPER_FLAGS (more net-train flags for every paper run).

DEPTHS           ?= 14 20 32 56 110
WIDTHS           ?= 16 32 64 128
WIDTH_DEPTH      ?= 14
BASE_DEPTH       ?= 20
GAMMA_DEPTH      ?= 20
GAMMA_THRESHOLDS ?= 0.01 0.05 0.1
PAPER_FLAGS      ?=

pap_tr = $(call train_ds,$(NTRAIN))
pap_te = $(call test_ds,$(NTEST))
pap_train = $(PAPER_RECIPE) --batch $(or $(BATCH),128) $(PAPER_FLAGS)
PAPER_NOTE := PAPER_RECIPE (CIFAR ResNet; SGD lr 0.1 momentum 0.9 wd 1e-4; batch 128; 160 epochs; steps at 80 and 120; crop + flip; mean/std)
PAPER_TARGETS := paper-depths paper-widths paper-baselines paper-gamma
.PHONY: $(PAPER_TARGETS) paper-all

# A sweep of all vs BN-only over one quantity: $(call sweep,TARGET,LETTER,NAME,VALUES,RULE_VALUES,
# INIT_FLAGS_FN,TITLE,XLABEL): variants LETTER<v>-all / -bnonly for v in VALUES (rules for
# RULE_VALUES), INIT_FLAGS_FN a function of v, and NAME.tsv / NAME.png (accuracy vs v).
define sweep
$(foreach v,$(5),$(foreach m,all bnonly,$(eval $(call train_run,$(RUNS)/$(1),$(2)$(v)-$(m),$(call $(6),$(v)),$(FREEZE_$(m)),$(pap_train),$(pap_tr),$(pap_te)))))
$(eval $(call finish,$(RUNS)/$(1),$(7),$(foreach v,$(4),$(2)$(v)-all $(2)$(v)-bnonly),$(PAPER_NOTE)))
$(RUNS)/$(1)/$(3).tsv: $(RUNS)/$(1)/bars.tsv
	awk -F'\t' 'NR>1{split($$$$1,a,"-"); x=substr(a[1],2); v[x,a[2]]=$$$$2; xs[x]=1} \
	  END{print "$(3)\tall\tbnonly"; for (x in xs) print x "\t" v[x,"all"] "\t" v[x,"bnonly"]}' $$< | \
	  { IFS= read -r h; echo "$$$$h"; sort -n; } > $$@
$(RUNS)/$(1)/$(3).png: $(RUNS)/$(1)/$(3).tsv $(PIPE)/sweep.gp
	gnuplot -e "out='$$@.tmp'; file='$$<'; xlab='$(8)'; heading='Test accuracy vs $(3): $(7)'" $(PIPE)/sweep.gp
	mv $$@.tmp $$@
$(1): $(RUNS)/$(1)/summary.md $(RUNS)/$(1)/curves.png $(RUNS)/$(1)/bars.png $(RUNS)/$(1)/$(3).png
	@cat $$<
endef
depth_init = --arch resnet --depth $(1)
width_init = --arch resnet --depth $(WIDTH_DEPTH) --width $(1)

# paper-depths (rules also for GAMMA_DEPTH, which paper-gamma needs), paper-widths
PD := $(RUNS)/paper-depths
$(eval $(call sweep,paper-depths,d,depth,$(DEPTHS),$(sort $(DEPTHS) $(GAMMA_DEPTH)),depth_init,all parameters vs BatchNorm only by depth (CIFAR ResNet),depth (ResNet-N)))
$(eval $(call sweep,paper-widths,w,width,$(WIDTHS),$(WIDTHS),width_init,all parameters vs BatchNorm only by width (ResNet-$(WIDTH_DEPTH)),width (channels of the first stage)))

# paper-baselines
PB := $(RUNS)/paper-baselines
PB_VARIANTS := all bnonly output bn+output random2 none
FREEZE_output    := --train output
FREEZE_bn+output := --train bn+output
FREEZE_random2   := --train random-k --k 2 --seed $(SEED)
$(foreach v,$(PB_VARIANTS),$(eval $(call train_run,$(PB),$(v),--arch resnet --depth $(BASE_DEPTH),$(FREEZE_$(v)),$(pap_train),$(pap_tr),$(pap_te))))
$(eval $(call finish,$(PB),what else could be trained (ResNet-$(BASE_DEPTH)),$(PB_VARIANTS),$(PAPER_NOTE); random2 = 2 random weights per output channel of every conv (as many as BN-only)))
paper-baselines: $(PB)/summary.md $(PB)/curves.png $(PB)/bars.png
	@cat $<

# paper-gamma
PG := $(RUNS)/paper-gamma
PG_TEST = $(pap_te)
$(PG)/%.ckpt: $(PD)/d$(GAMMA_DEPTH)-%.ckpt
	@mkdir -p $(@D)
	cp $< $@
$(PG)/%.fractions.tsv: $(PG)/%.ckpt | $(BIN)/net-ablate
	$(BIN)/net-ablate $< --report $(subst $(space),$(comma),$(strip $(GAMMA_THRESHOLDS))) > $@
$(PG)/%.ablate.tsv: $(PG)/%.ckpt $(PG_TEST) | $(BIN)/net-ablate $(BIN)/net-eval
	{ printf 'threshold\tzeroed\ttest_acc\n'; \
	  for t in 0 $(GAMMA_THRESHOLDS); do \
	    $(BIN)/net-ablate $< --zero-below $$t -o $(PG)/$*.zero$$t.ckpt 2> $(PG)/$*.zero$$t.txt; \
	    z=$$(sed -n 's/.*: \([0-9]*\) of \([0-9]*\) gammas.*/\1/p' $(PG)/$*.zero$$t.txt); \
	    a=$$($(BIN)/net-eval $(PG)/$*.zero$$t.ckpt $(PG_TEST) --format tsv $(DEVFLAGS) | awk -F'\t' '$$1=="accuracy"{print $$2}'); \
	    printf '%s\t%s\t%s\n' $$t $$z $$a; done; } > $@
$(PG)/fractions.png: $(PG)/bnonly.fractions.tsv $(PG)/all.fractions.tsv $(PIPE)/fractions.gp
	gnuplot -e "out='$@.tmp'; bn='$<'; all='$(PG)/all.fractions.tsv'; heading='ResNet-$(GAMMA_DEPTH): fraction of |gamma| below each threshold, per BN layer'" $(PIPE)/fractions.gp
	mv $@.tmp $@
$(PG)/gamma.png: $(PG)/all.ckpt $(PG)/bnonly.ckpt | $(BIN)/filter-viz
	$(BIN)/filter-viz gamma $(PG)/all.ckpt $(PG)/bnonly.ckpt --labels all,bn-only -o $@
$(PG)/summary.md: $(PG)/bnonly.fractions.tsv $(PG)/all.fractions.tsv $(PG)/bnonly.ablate.tsv $(PG)/all.ablate.tsv
	{ echo "# paper-gamma: small gammas in ResNet-$(GAMMA_DEPTH) (runs of paper-depths)"; echo; \
	  echo "Recipe: $(PAPER_NOTE). Data: $(DATA)."; echo; \
	  echo "The paper: BN-only training drives about a third of the gammas to near zero, disabling those"; \
	  echo "random features; setting the small ones to zero costs little accuracy."; echo; \
	  echo "| run | threshold | fraction of gammas below | test acc after zeroing them |"; echo "|---|---|---|---|"; \
	  for r in bnonly all; do \
	    tail -n +2 $(PG)/$$r.ablate.tsv | while IFS=$$'\t' read -r t z a; do \
	      tot=$$(awk -F'\t' '$$1=="all"{print $$2}' $(PG)/$$r.fractions.tsv); \
	      printf '| %s | %s | %.1f%% | %.1f%% |\n' $$r $$t $$(awk -v z=$$z -v n=$$tot 'BEGIN{print 100*z/n}') $$(awk -v a=$$a 'BEGIN{print 100*a}'); \
	    done; done; \
	  echo; echo "Per layer (BN-only; fractions): see $(PG)/bnonly.fractions.tsv and fractions.png."; } > $@.tmp
	mv $@.tmp $@
paper-gamma: $(PG)/summary.md $(PG)/fractions.png $(PG)/gamma.png
	@cat $<

paper-all: $(PAPER_TARGETS)
