"""tools/benchmark.py's bookkeeping (no timing here: the benchmark is a script): the MAdds counter it
shares with the rest of the project, subjects and peers, the jobs its workers get, the table."""
from __future__ import annotations

import torch
from conftest import ROOT
from torch import nn

import mvdense.benchmark
from mvdense.apis import DETECTION
from mvdense.benchmark import (
    Settings,
    Subject,
    benchmark,
    build_torch_workload,
    collect_subjects,
    format_table,
    paired_comparisons,
    runtimes_for,
    summarise,
)
from mvdense.models.layers import MultiHeadSelfAttention
from mvdense.utils.complexity import count_madds


def test_madds_count_convolutions_linears_attention_and_inference_batchnorm():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_madds(conv, torch.rand(1, 3, 10, 10)) == count_madds(conv, (1, 3, 10, 10)) == 8 * 3 * 9 * 100
    conv_bn = nn.Sequential(conv, nn.BatchNorm2d(8)).eval()
    assert count_madds(conv_bn, (1, 3, 10, 10)) == 8 * 3 * 9 * 100 + 2 * 8 * 100   # BN: scale and shift
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


def test_every_worker_job_carries_the_run_settings(monkeypatch, tmp_path):
    """Each (subject, runtime) goes to a fresh worker with the run's size, threads and repeats; an
    onnxruntime row is exported first, and peers get no deploy row."""
    jobs = []

    def fake_worker(job, settings):
        jobs.append(job)
        return {'times_ms': [1.0, 2.0], 'peak_mib': 1.0}

    monkeypatch.setattr(mvdense.benchmark, 'launch_worker', fake_worker)
    ours = Subject('config', 'a.py', 'network', DETECTION)
    peer = Subject('torchvision', 'ssdlite320_mobilenet_v3_large', 'network', DETECTION, 'a.py')
    settings = Settings(input_size=(256, 192), threads=2, repeats=3, warmup=1,
                        runtimes=('eager', 'deploy', 'onnxruntime'), onnx_dir=str(tmp_path), keep_freed_memory=True)
    records = benchmark([ours, peer], settings, log=lambda line: None)
    assert [(job['subject']['source'], job['runtime']) for job in jobs] == [
        ('config', 'eager'), ('config', 'deploy'), ('config', 'export'), ('config', 'onnxruntime'),
        ('torchvision', 'eager'), ('torchvision', 'export'), ('torchvision', 'onnxruntime')]
    assert {(job['input_size'][0], job['input_size'][1], job['threads'], job['repeats'], job['warmup'],
             job['keep_freed_memory']) for job in jobs} == {(256, 192, 2, 3, 1, True)}
    assert len(records) == 5 and {job['onnx_path'] for job in jobs if 'onnx_path' in job} == {
        str(tmp_path / 'config-a-network-256x192.onnx'),
        str(tmp_path / 'torchvision-ssdlite320_mobilenet_v3_large-network-256x192.onnx')}


def test_paired_comparisons_pick_peer_runtime_or_its_eager():
    ours = Subject('config', 'a.py', 'network', 'detection')
    peer = Subject('torchvision', 'ssdlite320_mobilenet_v3_large', 'network', 'detection', 'a.py')
    records = [dict(subject=ours, runtime=r) for r in ('eager', 'deploy', 'onnxruntime')]
    records += [dict(subject=peer, runtime=r) for r in ('eager', 'onnxruntime')]
    pairs = paired_comparisons(records, {('a.py', 'network'): [peer.key]})
    assert [(a[1], b[0].source, b[1]) for a, b in pairs] == [
        ('eager', 'torchvision', 'eager'), ('deploy', 'torchvision', 'eager'), ('deploy', 'config', 'eager'),
        ('onnxruntime', 'torchvision', 'onnxruntime'), ('onnxruntime', 'config', 'eager')]


def test_default_runtime_is_ours_end_to_end_only():
    settings = Settings(runtimes=mvdense.benchmark.DEFAULT_RUNTIMES)
    ours = {part: Subject('config', 'a.py', part, DETECTION) for part in ('network', 'end-to-end')}
    peer = Subject('torchvision', 'ssdlite320_mobilenet_v3_large', 'end-to-end', DETECTION, 'a.py')
    assert runtimes_for(ours['end-to-end'], settings) == ['eager', 'default', 'deploy', 'onnxruntime']
    assert runtimes_for(ours['network'], settings) == ['eager', 'deploy', 'onnxruntime']
    assert runtimes_for(peer, settings) == ['eager']


def test_compiled_runtime_is_asked_for_by_name_and_never_end_to_end():
    assert 'compiled' not in Settings().runtimes
    settings = Settings(runtimes=mvdense.benchmark.RUNTIMES)
    ours = {part: Subject('config', 'a.py', part, DETECTION) for part in ('backbone', 'end-to-end')}
    peer = Subject('timm', 'mobilevit_xxs', 'backbone', DETECTION, 'a.py')
    assert runtimes_for(ours['backbone'], settings) == ['eager', 'deploy', 'onnxruntime', 'compiled']
    assert runtimes_for(ours['end-to-end'], settings) == ['eager', 'default', 'deploy', 'onnxruntime']
    assert runtimes_for(peer, settings) == ['eager', 'onnxruntime', 'compiled']


def test_compiled_workload_runs_the_compiled_part():
    """The workload calls torch.compile's wrapper of the eager part (compiling on the first call)."""
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    example = torch.rand(1, 3, 16, 16)
    compiled = mvdense.benchmark.compiled_workload(mvdense.benchmark.Workload(lambda: None, module, example))
    with torch.inference_mode():
        torch._dynamo.reset()
        out = compiled.step()
        assert torch._dynamo.utils.counters['stats']['unique_graphs'] >= 1
        torch.testing.assert_close(out, module(example))
    assert compiled.module is module


def test_default_runtime_predicts_with_the_model_prepared_as_the_tools_do():
    """The ``default`` end-to-end workload runs ``predict`` on the model with its BatchNorms folded (what
    tools/test.py and the inferencers run); ``eager`` on the model as built."""
    config = str(ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py')
    subject = Subject('config', config, 'end-to-end', DETECTION)
    workloads = {runtime: build_torch_workload(subject, (320, 320), runtime) for runtime in ('eager', 'default')}
    assert any(isinstance(m, nn.BatchNorm2d) for m in workloads['eager'].module.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in workloads['default'].module.modules())
    with torch.inference_mode():
        predictions = workloads['default'].step()
    assert len(predictions) == 1 and len(predictions[0].pred_instances) > 0


def test_onnx_workload_of_a_peer_export_without_metadata(tmp_path):
    """Peers' exports (timm, torchvision) have no ``.json`` beside them: their rows still run."""
    from mvdense.benchmark import build_onnx_workload
    from mvdense.deploy.onnx_export import export_module

    path = str(tmp_path / 'peer.onnx')
    export_module(nn.Conv2d(3, 4, 3), torch.rand(1, 3, 32, 48), path, ['out'], {'image': {0: 'batch'}}, 17)
    subject = Subject('timm', 'mobilevit_xxs', 'backbone', DETECTION, 'a.py')
    (out,) = build_onnx_workload(subject, (32, 48), path, threads=1).step()
    assert out.shape == (1, 4, 30, 46)
