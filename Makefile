# The two commands a fresh machine needs: `make demo` and `make test`. Both install the pinned stack
# into .venv/ first (tools/setup_env.sh; a no-op when nothing changed).
PY := .venv/bin/python
DEMO_CONFIG ?= configs/demo/ssdlite_mobilevit_xxs_synthetic.py
DEMO_DATA ?= data/synthetic
# SEED=N trains with another seed than the config's (into its own work dir), for the spread over seeds.
SEED ?=
DEMO_WORK_DIR = work_dirs/demo/$(basename $(notdir $(DEMO_CONFIG)))$(if $(SEED),-seed$(SEED))
SEED_OPTION = $(if $(SEED),--cfg-options randomness.seed=$(SEED))
TEST_ARGS ?=

.PHONY: setup demo demo-seg demo-mobileformer demo-search demo-search-compare test test-fast lint compat clean-demo

setup:
	@bash tools/setup_env.sh

# Generate the synthetic data (if missing), train the demo config, evaluate the last checkpoint.
# `--resume`: an interrupted demo goes on from its last checkpoint; a finished one only re-evaluates.
demo: setup
	$(PY) tools/make_synthetic_data.py --root $(DEMO_DATA)
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR) --resume $(SEED_OPTION)
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" --work-dir $(DEMO_WORK_DIR)/test

demo-seg:
	$(MAKE) demo DEMO_CONFIG=configs/demo/deeplabv3_mobilevit_xxs_synthetic.py

# The detection demo with a Mobile-Former backbone (SSDLite-Mobile-Former-151M).
demo-mobileformer:
	$(MAKE) demo DEMO_CONFIG=configs/demo/ssdlite_mobileformer_151m_synthetic.py

# GLiT's two-stage architecture search on the synthetic shapes, scored on mIoU (docs/glit_search.md): the
# stage-1 supernet (G per block) trained and searched, the stage-2 supernet (the low-level choices for
# stage 1's distribution) trained and searched, then the architecture found retrained on all the training
# images and tested on val. Run again, every step resumes (or only re-evaluates when finished).
SEARCH_CONFIGS = configs/demo/glit_search
SEARCH_DIR = work_dirs/demo/glit_search$(if $(SEED),-seed$(SEED))
SEARCH_ARCH = $(abspath $(SEARCH_DIR)/stage2_search/best_arch.py)
# $(call glit_retrain,NAME): train $(SEARCH_CONFIGS)/NAME.py, then test its last checkpoint on val.
define glit_retrain
	GLIT_ARCH=$(SEARCH_ARCH) $(PY) tools/train.py $(SEARCH_CONFIGS)/$(1).py --work-dir $(SEARCH_DIR)/$(1) --resume $(SEED_OPTION)
	GLIT_ARCH=$(SEARCH_ARCH) $(PY) tools/test.py $(SEARCH_CONFIGS)/$(1).py "$$(cat $(SEARCH_DIR)/$(1)/last_checkpoint)" \
		--work-dir $(SEARCH_DIR)/$(1)/test
endef

demo-search: setup
	$(PY) tools/make_synthetic_data.py --root $(DEMO_DATA)
	$(PY) tools/train.py $(SEARCH_CONFIGS)/stage1_supernet.py --work-dir $(SEARCH_DIR)/stage1_supernet --resume $(SEED_OPTION)
	$(PY) tools/search.py $(SEARCH_CONFIGS)/stage1_supernet.py "$$(cat $(SEARCH_DIR)/stage1_supernet/last_checkpoint)" \
		--work-dir $(SEARCH_DIR)/stage1_search $(SEED_OPTION)
	$(PY) tools/train.py $(SEARCH_CONFIGS)/stage2_supernet.py --work-dir $(SEARCH_DIR)/stage2_supernet --resume $(SEED_OPTION) \
		--cfg-options model.backbone.search_space.distribution=$(SEARCH_DIR)/stage1_search/best_arch.json
	$(PY) tools/search.py $(SEARCH_CONFIGS)/stage2_supernet.py "$$(cat $(SEARCH_DIR)/stage2_supernet/last_checkpoint)" \
		--work-dir $(SEARCH_DIR)/stage2_search --stage1 $(SEARCH_DIR)/stage1_search/best_arch.json $(SEED_OPTION)
	$(call glit_retrain,searched)

# The baselines of the same FLOPs budget, trained and tested like the architecture found: all blocks global
# (plain self-attention), all blocks local (the convolution module).
demo-search-compare: setup
	$(PY) tools/make_synthetic_data.py --root $(DEMO_DATA)
	$(call glit_retrain,all_global)
	$(call glit_retrain,all_local)

test: setup
	$(PY) -m pytest $(TEST_ARGS)

# Everything but the tests marked slow (subprocesses, mmengine's Runner, end-to-end training).
test-fast: setup
	$(PY) -m pytest -m "not slow" $(TEST_ARGS)

lint: setup
	$(PY) -m ruff check mvdense tools tests

# mvdense installed with plain pip into the oldest supported OpenMMLab stack (torch 2.1, mmcv 2.1.0 built
# against it, mmengine 0.10.0, mmdet 3.3.0, mmseg 1.2.2) in .venv-compat/: checks that the install changes
# none of those packages, then runs the plug-in tests there (tools/compat_check.sh). First run: about 20
# minutes (a 2.5 GB torch download and an mmcv build); then a few minutes.
compat:
	@bash tools/compat_check.sh $(TEST_ARGS)

clean-demo:
	rm -rf work_dirs/demo
