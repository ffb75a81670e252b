"""tools/benchmark.py's bookkeeping (no timing here: the benchmark is a script): MAdds counting,
subjects and peers, the table."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mvdense.benchmark import (
    Settings,
    Subject,
    collect_subjects,
    count_madds,
    format_table,
    paired_comparisons,
    summarise,
)
from mvdense.models.layers import MultiHeadSelfAttention

ROOT = Path(__file__).resolve().parents[1]


def test_madds_count_convolutions_linears_and_attention():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_madds(conv, torch.rand(1, 3, 10, 10)) == 8 * 3 * 9 * 100
    attention = MultiHeadSelfAttention(16, num_heads=4).eval()
    tokens, dim = 10, 16
    linears = tokens * dim * 3 * dim + tokens * dim * dim
    # q k^T and attn v: 2 * N^2 * C multiply-adds over all heads.
    assert count_madds(attention, torch.rand(2, tokens, dim)) == 2 * (linears + 2 * tokens * tokens * dim)


def test_subjects_and_shared_peers():
    configs = [str(ROOT / f'configs/ssdlite_mobilevit_{arch}_coco.py') for arch in ('xxs', 'xs')]
    subjects, peers = collect_subjects(configs, ('backbone', 'end-to-end'), with_peers=True)
    labels = [(s.label, s.part) for s in subjects]
    assert ('timm:mobilevit_xxs', 'backbone') in labels and ('timm:mobilevit_xs', 'backbone') in labels
    # torchvision's SSDLite is the end-to-end peer of both configs and runs once.
    assert labels.count(('torchvision:ssdlite320_mobilenet_v3_large', 'end-to-end')) == 1
    torchvision_peer = next(s for s in subjects if s.source == 'torchvision')
    assert peers[(configs[1], 'end-to-end')] == [torchvision_peer.key]
    assert torchvision_peer.options['num_classes'] == 81  # 80 COCO classes + background


def test_timm_peer_follows_output_stride():
    configs = [str(ROOT / 'configs/ssdlite_mobilevit_xxs_coco.py'), str(ROOT / 'configs/deeplabv3_mobilevit_xxs_voc.py')]
    if not Path(configs[1]).is_file():
        pytest.skip('no DeepLabv3 config')
    subjects, _ = collect_subjects(configs, ('backbone',), with_peers=True)
    timm_peers = [s for s in subjects if s.source == 'timm']
    # Same timm model, different stages and stride: two peers.
    assert [s.options.get('output_stride', 32) for s in timm_peers] == [32, 16]


def test_table_reports_ratio_to_peer():
    ours = Subject('config', '/x/ssdlite_mobilevit_xxs_coco.py', 'backbone', 'detection')
    peer = Subject('timm', 'mobilevit_xxs', 'backbone', 'detection', ours.name)
    records = summarise([
        dict(subject=ours, runtime='eager', times_ms=[8.0, 9.0, 10.0], peak_mib=5.0, params=10, madds=20),
        dict(subject=ours, runtime='deploy', times_ms=[5.0, 6.0, 7.0], peak_mib=5.0),
        dict(subject=peer, runtime='eager', times_ms=[10.0, 12.0, 14.0], peak_mib=5.0, params=10, madds=20)])
    table = format_table(records, {(ours.name, 'backbone'): [peer.key]}).splitlines()
    assert '| ssdlite_mobilevit_xxs_coco | backbone | eager |' in table[2] and table[2].endswith('| 0.75 |')
    assert table[3].endswith('| 0.50 (eager) |')
    assert Settings().threads == 1


def test_paired_comparisons_pick_peer_runtime_or_its_eager():
    ours = Subject('config', 'a.py', 'network', 'detection')
    peer = Subject('torchvision', 'ssdlite320_mobilenet_v3_large', 'network', 'detection', 'a.py')
    records = [dict(subject=ours, runtime=r) for r in ('eager', 'deploy', 'onnxruntime')]
    records += [dict(subject=peer, runtime=r) for r in ('eager', 'onnxruntime')]
    pairs = paired_comparisons(records, {('a.py', 'network'): [peer.key]})
    assert [(a[1], b[0].source, b[1]) for a, b in pairs] == [
        ('eager', 'torchvision', 'eager'), ('deploy', 'torchvision', 'eager'), ('deploy', 'config', 'eager'),
        ('onnxruntime', 'torchvision', 'onnxruntime'), ('onnxruntime', 'config', 'eager')]
