# demo.mk: `make demo`, the README's main job. On a 2-core CPU in a few minutes: fetch
# CIFAR-10 (DATA: the shared sample here, see common.mk), train ResNet-20 with all
# parameters vs BN only on a subset, evaluate both, draw the curves, the gamma histogram and
# feature maps, and print a summary. Every step is a real file under runs/demo/.
#   make demo [DATA=path-or-URL] [DEMO_TRAIN=4000] [DEMO_EPOCHS=4] [DEVICE=auto]
#   make readme-pictures   the demo's pictures, small, into docs/ (the README shows them)

DEMO         := $(RUNS)/demo
DEMO_TRAIN   ?= 4000
DEMO_TEST    ?= 1000
DEMO_EPOCHS  ?= 4
DEMO_SEED    ?= 1
DEMO_TRAINFLAGS = --epochs $(DEMO_EPOCHS) --batch 128 --optimizer sgd --lr 0.1 --momentum 0.9 --wd 5e-4 \
                  --schedule cosine --augment crop-flip --normalize meanstd --seed $(DEMO_SEED) $(DEVFLAGS)

.PHONY: demo readme-pictures
demo: $(DEMO)/summary.md $(DEMO)/curves.png $(DEMO)/gamma.png $(DEMO)/maps-all.png $(DEMO)/maps-bnonly.png
	@cat $<
	@echo "pictures: $(DEMO)/curves.png $(DEMO)/gamma.png $(DEMO)/maps-all.png $(DEMO)/maps-bnonly.png"

# Both splits in one pass over the archive (grouped target: one recipe makes both files).
$(DEMO)/train-full.ds $(DEMO)/test-full.ds &: | $(BIN)/cifar-fetch
	@mkdir -p $(@D)
	$(BIN)/cifar-fetch --url $(DATA) $(FETCH_FLAGS) --split both -o $(DEMO)/train-full.ds --test-output $(DEMO)/test-full.ds
$(DEMO)/train.ds: $(DEMO)/train-full.ds
	$(BIN)/cifar-subset --first $(DEMO_TRAIN) $< -o $@
$(DEMO)/test.ds: $(DEMO)/test-full.ds
	$(BIN)/cifar-subset --first $(DEMO_TEST) $< -o $@
$(DEMO)/init.ckpt: | $(BIN)/net-init
	@mkdir -p $(@D)
	$(BIN)/net-init --arch resnet --depth 20 --width 16 --seed $(DEMO_SEED) -o $@
$(DEMO)/all.ckpt: $(DEMO)/init.ckpt $(DEMO)/train.ds $(DEMO)/test.ds
	$(BIN)/net-freeze --train all $< | $(RUN) $(BIN)/net-train - --train $(DEMO)/train.ds --test $(DEMO)/test.ds \
	  $(DEMO_TRAINFLAGS) --log $(DEMO)/all.tsv -o $@
$(DEMO)/bnonly.ckpt: $(DEMO)/init.ckpt $(DEMO)/train.ds $(DEMO)/test.ds
	$(BIN)/net-freeze --train bn $< | $(RUN) $(BIN)/net-train - --train $(DEMO)/train.ds --test $(DEMO)/test.ds \
	  $(DEMO_TRAINFLAGS) --log $(DEMO)/bnonly.tsv -o $@
$(DEMO)/%.eval.tsv: $(DEMO)/%.ckpt $(DEMO)/test.ds
	$(BIN)/net-eval $< $(DEMO)/test.ds --format tsv > $@
$(DEMO)/summary.md: $(DEMO)/all.eval.tsv $(DEMO)/bnonly.eval.tsv
	{ echo "# demo: ResNet-20, $(DEMO_TRAIN) training images, $(DEMO_EPOCHS) epochs, test on $(DEMO_TEST)"; \
	  echo; echo "| variant | trainable parameters | test accuracy | test loss |"; echo "|---|---|---|---|"; \
	  for v in all bnonly; do \
	    p=$$($(BIN)/net-inspect --last --format tsv $(DEMO)/$$v.ckpt | awk -F'\t' 'NR>1 && $$7==1 && $$8=="param"{s+=$$9} END{print s+0}'); \
	    a=$$(awk -F'\t' '$$1=="accuracy"{print $$2}' $(DEMO)/$$v.eval.tsv); \
	    l=$$(awk -F'\t' '$$1=="loss"{print $$2}' $(DEMO)/$$v.eval.tsv); \
	    echo "| $$v | $$p | $$a | $$l |"; done; } > $@
$(DEMO)/curves.png: $(DEMO)/all.ckpt $(DEMO)/bnonly.ckpt pipelines/curves.gp
	gnuplot -e "out='$@.tmp'; files='$(DEMO)/all.tsv $(DEMO)/bnonly.tsv'; titles='all bn-only'; \
	  heading='ResNet-20 on $(DEMO_TRAIN) CIFAR-10 images: all parameters vs BatchNorm only'" pipelines/curves.gp
	mv $@.tmp $@
$(DEMO)/gamma.png: $(DEMO)/all.ckpt $(DEMO)/bnonly.ckpt
	$(BIN)/filter-viz gamma $(DEMO)/all.ckpt $(DEMO)/bnonly.ckpt --labels all,bn-only -o $@
# feature maps of the first stage's first conv for 4 test images: all-trained vs BN-only rows
$(DEMO)/maps-%.png: $(DEMO)/%.ckpt $(DEMO)/test.ds | $(BIN)/filter-viz
	$(BIN)/filter-viz maps $< $(DEMO)/test.ds --layer s1.b0.conv1 --images 4 --channels 7 --seed $(DEMO_SEED) \
	  --size 900x560 --title "$*: 4 test images, then 7 channels of s1.b0.conv1" -o $@

# The README's pictures: small copies of the demo's, committed (regenerate after a change).
readme-pictures: $(DEMO)/curves.png $(DEMO)/gamma.png $(DEMO)/maps-all.png $(DEMO)/maps-bnonly.png
	gnuplot -e "w=900; h=380; fs=9; out='docs/demo-curves.png'; files='$(DEMO)/all.tsv $(DEMO)/bnonly.tsv'; \
	  titles='all bn-only'; heading='make demo: ResNet-20 on $(DEMO_TRAIN) CIFAR-10 images, all parameters vs BatchNorm only'" pipelines/curves.gp
	$(BIN)/filter-viz gamma $(DEMO)/all.ckpt $(DEMO)/bnonly.ckpt --labels all,bn-only --size 700x420 -o docs/demo-gamma.png
	cp $(DEMO)/maps-bnonly.png docs/demo-maps-bnonly.png
