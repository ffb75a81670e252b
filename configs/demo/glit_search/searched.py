# The architecture found by the GLiT-search demo (`make demo-search`), retrained from scratch on the whole
# training split and tested on val. It reads the search's config-ready result, stage 2's best_arch.py
# (`glit_arch`); GLIT_ARCH=/path/to/best_arch.py points it at another one.
_base_ = [
    './deeplabv3_glit_synthetic.py',
    '{{$GLIT_ARCH:../../../work_dirs/demo/glit_search/stage2_search/best_arch.py}}',
]
model = dict(backbone=dict(arch={{_base_.glit_arch}}))
