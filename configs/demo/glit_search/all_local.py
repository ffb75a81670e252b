# Baseline of the GLiT-search demo (`make demo-search-compare`): all blocks local (the convolution module,
# G = 0), the largest uniform choice of the all-local grid within the search's budget (230 M FLOPs by the
# authors' formula at 256x256: K = 45, E = 2, d_z = 4 gives 202.7 M; E = 4 needs 256.0 M or more),
# trained and tested like searched.py.
_base_ = './deeplabv3_glit_synthetic.py'
model = dict(backbone=dict(arch=dict(
    embed_dim=96, num_heads=3, blocks=[dict(g=0, kernel_size=45, expansion=2, mlp_ratio=4)] * 6)))
