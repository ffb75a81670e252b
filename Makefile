# The two commands a fresh machine needs: `make demo` and `make test`. Both install the pinned stack
# into .venv/ first (tools/setup_env.sh; a no-op when nothing changed).
PY := .venv/bin/python
DEMO_CONFIG ?= configs/demo/ssdlite_mobilevit_xxs_synthetic.py
DEMO_DATA ?= data/synthetic
DEMO_WORK_DIR = work_dirs/demo/$(basename $(notdir $(DEMO_CONFIG)))
TEST_ARGS ?=

.PHONY: setup demo demo-seg demo-mobileformer test test-fast lint clean-demo

setup:
	@bash tools/setup_env.sh

# Generate the synthetic data (if missing), train the demo config, evaluate the last checkpoint.
# `--resume`: an interrupted demo goes on from its last checkpoint; a finished one only re-evaluates.
demo: setup
	$(PY) tools/make_synthetic_data.py --root $(DEMO_DATA)
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR) --resume
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" --work-dir $(DEMO_WORK_DIR)/test

demo-seg:
	$(MAKE) demo DEMO_CONFIG=configs/demo/deeplabv3_mobilevit_xxs_synthetic.py

# The detection demo with a Mobile-Former backbone (SSDLite-Mobile-Former-151M).
demo-mobileformer:
	$(MAKE) demo DEMO_CONFIG=configs/demo/ssdlite_mobileformer_151m_synthetic.py

test: setup
	$(PY) -m pytest $(TEST_ARGS)

# Everything but the tests marked slow (subprocesses, mmengine's Runner, end-to-end training).
test-fast: setup
	$(PY) -m pytest -m "not slow" $(TEST_ARGS)

lint: setup
	$(PY) -m ruff check mvdense tools tests

clean-demo:
	rm -rf work_dirs/demo
