# Baseline of the GLiT-search demo (`make demo-search-compare`): all blocks global (plain multi-head
# self-attention, G = 3), the largest uniform choice of the all-global grid within the search's budget
# (230 M FLOPs by the authors' formula at 256x256: e_v = 1, d_z = 2 gives 208.7 M; the next, e_v = 0.5,
# d_z = 6, 255.9 M), trained and tested like searched.py.
_base_ = './deeplabv3_glit_synthetic.py'
model = dict(backbone=dict(arch=dict(embed_dim=96, num_heads=3, blocks=[dict(g=3, qkv_ratio=1, mlp_ratio=2)] * 6)))
