"""CPU benchmark of our detectors and segmentors against peers: parameters, MAdds, latency, peak memory,
in torch eager and in onnxruntime. ``tools/benchmark.py`` is the command line; this is the logic.

What is measured, and how:

* Subjects. For each config, three parts: its **backbone** (input [1, 3, H, W] -> the config's
  ``out_indices`` maps), its **network** (the raw-output wrapper of :mod:`mvdense.deploy.wrappers`:
  image -> head outputs / logits at input size) and **end to end** (mmdet/mmseg's data preprocessor and
  ``predict``: box decoding + NMS, or logit resize + argmax). Peers at the same input size:
  timm's ``mobilevit_<arch>`` stem + stages at the config's output stride (timm's own modules, same
  math as our backbone: timm's ``features_only`` would add its final 1x1 conv) for MobileViT backbones; torchvision's
  ``ssdlite320_mobilenet_v3_large`` (detection; ``num_classes`` = ours + background, the transform's
  fixed size set to the input size) or ``deeplabv3_mobilenet_v3_large`` (segmentation, same classes),
  ``weights=None, weights_backbone=None``: network = backbone + head, end to end = the model's
  ``forward`` (its transform, anchors, decoding and NMS; normalisation + argmax for DeepLabv3).
  DETR-style configs (``e2e_mobileformer_*``, mmdet ``DetectionTransformer``s) have mmdet's DETR-R50
  (``mmdet::detr/detr_r50_8xb2-150e_coco.py``, built through mmdet's registry with our class count)
  as peer, and for both the network is :class:`mvdense.deploy.wrappers.RawEndToEndDetector`: image ->
  last decoder layer's logits and boxes plus the head's top-k detections (its whole post-processing:
  set prediction has no NMS); end to end is again the data preprocessor + ``predict``.
  Weights are random everywhere. Post-processing runs with each library's own test settings, and with
  random weights nearly every candidate passes the score thresholds (a heavy case for NMS).
* Runtimes. ``eager``: the model as built (eval, ``torch.inference_mode``). ``default`` (ours, end to
  end only): what ``tools/test.py``, ``tools/infer.py`` and the OpenMMLab inferencers run, i.e. the model
  prepared for inference (:func:`mvdense.deploy.optimize.prepare_for_inference`) and then the data
  preprocessor and ``predict`` as for ``eager``. ``deploy`` (ours only):
  after :func:`mvdense.deploy.optimize.prepare_for_inference` (conv-BN folding + channels-last); its end
  to end is the raw network + our post-processing (:mod:`mvdense.deploy.postprocess`: mmdet's boxes,
  with top-k instead of a full sort and per-class NMS), our deployment path in torch. ``onnxruntime``: the part exported by ``torch.onnx.export`` (TorchScript exporter, opset 17) and run
  by onnxruntime's CPU provider with all graph optimisations; end to end adds our post-processing
  (:mod:`mvdense.deploy.postprocess`) on its outputs (ours only). ``compiled`` (asked for by name;
  backbone and network, ours and peers): ``torch.compile`` of the eager part with its default backend,
  compiled during the first warm-up run.
* Latency: batch 1, fp32, ``threads`` intra-op threads (torch and onnxruntime alike), ``warmup`` runs
  then ``repeats`` timed runs (``time.perf_counter``); median and p10-p90.
* Parameters: of the module of the part (the network for end to end). MAdds:
  :func:`mvdense.utils.complexity.count_madds` on the eager module (the project's one counter: convolutions,
  linear layers, matmuls and attention, inference BatchNorm, LayerNorm, pooling and upsampling; not
  activations or post-processing).
* Paired ratios (``--paired``): each of our rows and its peer (or our eager row) run in turn, one
  after the other, in one process; the median and p10-p90 of the per-pair latency ratios. On a machine
  whose load comes and goes (ours is shared) they are steadier than ratios of medians taken minutes
  apart.
* Peak memory: every (subject, runtime) runs in a fresh Python process; after the imports we reset the
  kernel's peak-RSS mark (``/proc/self/clear_refs``), then build, warm up and time, and report the
  peak RSS (``VmHWM``) minus the RSS before building: weights, activations, allocator and runtime
  arenas (onnxruntime loads a pre-exported file: the export is not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .apis.inference import DETECTION, SEGMENTATION, init_model, load_config, model_task
from .utils.complexity import count_madds
from .utils.memory import keep_freed_memory

PARTS = ('backbone', 'network', 'end-to-end')
RUNTIMES = ('eager', 'default', 'deploy', 'onnxruntime', 'compiled')
# ``compiled`` (torch.compile of the network part, compiled during the warm-up) is asked for by name only.
DEFAULT_RUNTIMES = ('eager', 'default', 'deploy', 'onnxruntime')
MADDS_TOOL = 'mvdense.utils.complexity.count_madds (mmengine FlopAnalyzer conventions)'
TIMM_BACKBONE_PEERS = {'MobileViT': lambda backbone_cfg: f'mobilevit_{backbone_cfg["arch"]}'}
TORCHVISION_PEERS = {DETECTION: 'ssdlite320_mobilenet_v3_large', SEGMENTATION: 'deeplabv3_mobilenet_v3_large'}
# The peer of DETR-style detectors: an mmdet config, built through mmdet's registry.
END_TO_END_PEER = 'detr/detr_r50_8xb2-150e_coco.py'


@dataclass(frozen=True)
class Subject:
    """One thing to time: a part of one of our configs, or a peer model."""

    source: str  # 'config', 'timm', 'torchvision' or 'mmdet'
    name: str  # config path, the timm / torchvision model name, or an mmdet config (relative to its configs)
    part: str  # one of PARTS
    task: str = ''  # DETECTION or SEGMENTATION
    # For a peer: the config it is compared with. Not part of the identity: a peer shared by several
    # configs runs once.
    peer_for: str = field(default='', compare=False)
    options: dict = field(default_factory=dict, hash=False)  # how to build a peer

    @property
    def label(self) -> str:
        name = os.path.splitext(os.path.basename(self.name))[0] if self.source in ('config', 'mmdet') else self.name
        return f'{name}' if self.source == 'config' else f'{self.source}:{name}'

    @property
    def key(self) -> tuple:
        return self.source, self.name, self.part, json.dumps(self.options, sort_keys=True)


@dataclass
class Workload:
    """What a worker times: ``step()`` runs one inference; ``module(example)`` is the network part."""

    step: Callable[[], object]
    module: object = None
    example: object = None


# --------------------------------------------------------------------------------------------------------
# Subjects


def config_subjects(config_path: str, parts: tuple[str, ...], with_peers: bool = True) -> list[Subject]:
    """Our parts of ``config_path`` and, with ``with_peers``, their peers."""
    cfg = load_config(config_path)
    task = model_task(cfg)
    backbone_cfg = cfg.model.backbone.to_dict()
    subjects = []
    for part in parts:
        subjects.append(Subject('config', config_path, part, task))
        if not with_peers:
            continue
        if part == 'backbone':
            peer = TIMM_BACKBONE_PEERS.get(backbone_cfg.get('type'))
            if peer and isinstance(backbone_cfg.get('arch', 's'), str):
                backbone_cfg.setdefault('arch', 's')
                options = {k: backbone_cfg[k] for k in ('out_indices', 'output_stride', 'with_final_conv')
                           if k in backbone_cfg}
                subjects.append(Subject('timm', peer(backbone_cfg), part, task, config_path, options))
        elif is_end_to_end_config(cfg):
            subjects.append(Subject('mmdet', END_TO_END_PEER, part, task, config_path,
                                    {'num_classes': cfg.model.bbox_head.num_classes}))
        else:
            num_classes = _num_classes(cfg, task)
            subjects.append(Subject('torchvision', TORCHVISION_PEERS[task], part, task, config_path,
                                    {'num_classes': num_classes}))
    return subjects


def is_end_to_end_config(cfg) -> bool:
    """Whether the config's model is a DETR-style (set-prediction) mmdet detector."""
    from mmdet.models.detectors import DetectionTransformer
    from mmdet.registry import MODELS

    model_type = cfg.model.get('type')
    model_class = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    return isinstance(model_class, type) and issubclass(model_class, DetectionTransformer)


def collect_subjects(configs: list[str], parts: tuple[str, ...],
                     with_peers: bool) -> tuple[list[Subject], dict[tuple, list[tuple]]]:
    """All subjects of ``configs``, each once (peers shared by several configs run once), and the map
    (config, part) -> keys of its peers."""
    subjects: list[Subject] = []
    peers: dict[tuple, list[tuple]] = {}
    for path in configs:
        for subject in config_subjects(path, parts, with_peers):
            if subject.peer_for:
                peers.setdefault((subject.peer_for, subject.part), []).append(subject.key)
            if subject not in subjects:
                subjects.append(subject)
    return subjects, peers


def _num_classes(cfg, task: str) -> int:
    """Classes of our model, for the torchvision peer (which counts the background class too)."""
    if task == DETECTION:
        return cfg.model.bbox_head.num_classes + 1
    return cfg.model.decode_head.num_classes


# --------------------------------------------------------------------------------------------------------
# Building workloads (inside a worker process)


def build_torch_workload(subject: Subject, input_size: tuple[int, int], runtime: str = 'eager') -> Workload:
    """The torch workload of ``subject`` in ``runtime`` (eager, default or deploy)."""
    if subject.source in ('config', 'mmdet'):
        return _config_workload(subject, input_size, runtime)
    peers = {'timm': _timm_workload, 'torchvision': _torchvision_workload}   # no deploy runtime for peers
    return peers[subject.source](subject, input_size)


def _random_image(input_size: tuple[int, int]) -> torch.Tensor:
    """A reproducible image [1, 3, H, W], float values 0-255 (what our raw networks take)."""
    return (torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0)) * 255).round()


def example_input(subject: Subject, input_size: tuple[int, int]) -> torch.Tensor:
    """The input of a subject's network part: 0-255 pixels for our networks (they normalise inside),
    0-1 for backbones and for torchvision's networks."""
    image = _random_image(input_size)
    return image if subject.source in ('config', 'mmdet') and subject.part != 'backbone' else image / 255


def build_subject_model(subject: Subject) -> nn.Module:
    """The detector / segmentor of one of our configs, or of an mmdet config (a peer) with the class
    count in ``subject.options``; random weights, eval mode."""
    if subject.source == 'config':
        return init_model(subject.name)
    from mmengine.hub import get_config

    return init_model(get_config(f'mmdet::{subject.name}'),
                      cfg_options={'model.bbox_head.num_classes': subject.options['num_classes']})


def _config_workload(subject: Subject, input_size: tuple[int, int], runtime: str) -> Workload:
    from .deploy.optimize import prepare_for_inference
    from .deploy.wrappers import is_end_to_end, raw_network

    model = build_subject_model(subject)
    deploy = runtime == 'deploy'
    if runtime == 'default':   # the model as the tools prepare it, then predict as eager does
        prepare_for_inference(model, entry=model.backbone)
    if subject.part == 'backbone':
        backbone = prepare_for_inference(model.backbone) if deploy else model.backbone
        example = example_input(subject, input_size)
        return Workload(lambda: backbone(example), backbone, example)
    if deploy:
        prepare_for_inference(model, entry=model.backbone)
    network = raw_network(model)
    image = example_input(subject, input_size)
    # A DETR-style network holds its whole post-processing (a top-k): deployed end to end is the network.
    if subject.part == 'network' or (deploy and is_end_to_end(model)):
        return Workload(lambda: network(image), network, image)
    if deploy:
        return Workload(_deployed_end_to_end_step(model, subject.task, network, image), network, image)
    return Workload(_end_to_end_step(model, subject.task, image), network, image)


def _deployed_end_to_end_step(model, task: str, network, image) -> Callable[[], object]:
    """Our deployment path in torch: the (optimised) raw network, then :mod:`mvdense.deploy.postprocess`."""
    from .deploy.postprocess import DetectionPostProcess, segmentation_mask

    if task == DETECTION:
        post = DetectionPostProcess.from_detector(model, tuple(image.shape[-2:]))

        def detect():
            cls_logits, box_deltas = network(image)
            return post(cls_logits[0], box_deltas[0])

        return detect
    return lambda: segmentation_mask(network(image))


def _end_to_end_step(model, task: str, image) -> Callable[[], object]:
    """One image through the data preprocessor and ``predict`` (mmdet: decoding + NMS; mmseg: argmax)."""
    height, width = image.shape[-2:]
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                scale_factor=(1.0, 1.0))
    pixels = image[0].to(dtype=torch.uint8)
    if task == DETECTION:
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample

    def step():
        data = model.data_preprocessor({'inputs': [pixels], 'data_samples': [Sample(metainfo=meta)]}, False)
        return model.predict(data['inputs'], data['data_samples'])

    return step


class TimmMobileViTStages(nn.Module):
    """timm MobileViT's stem and stages, returning the stages of ``out_indices`` (our backbone's math).

    ``output_stride`` 16 or 8 runs the last strided blocks at stride 1, as ours does (timm then dilates
    the MobileViT blocks' local 3x3 conv, ml-cvnets and we do not: same MAdds, nearly the same time).

    Shape: [B, 3, H, W] -> tuple of the ``out_indices`` stage maps.
    """

    def __init__(self, name: str, out_indices: tuple[int, ...], with_final_conv: bool = False,
                 output_stride: int = 32) -> None:
        import timm

        super().__init__()
        net = timm.create_model(name, pretrained=False, output_stride=output_stride)
        self.out_indices = out_indices
        self.stem = net.stem
        self.stages = net.stages[:max(out_indices) + 1]
        self.final_conv = net.final_conv if with_final_conv and 4 in out_indices else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 4 and self.final_conv is not None:
                x = self.final_conv(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)


def _timm_workload(subject: Subject, input_size: tuple[int, int]) -> Workload:
    cfg = subject.options
    module = TimmMobileViTStages(subject.name, tuple(cfg.get('out_indices', (3, 4))),
                                 cfg.get('with_final_conv', False), cfg.get('output_stride', 32)).eval()
    example = example_input(subject, input_size)
    return Workload(lambda: module(example), module, example)


def _torchvision_workload(subject: Subject, input_size: tuple[int, int]) -> Workload:
    import torchvision

    num_classes = subject.options['num_classes']
    builder = getattr(torchvision.models.detection if subject.task == DETECTION
                      else torchvision.models.segmentation, subject.name)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    image01 = example_input(subject, input_size)
    network = TorchvisionNetwork(model, subject.task).eval()
    if subject.part == 'network':
        return Workload(lambda: network(image01), network, image01)
    if subject.task == DETECTION:
        # The transform resizes to a fixed (width, height): make it the input size (no resize work).
        model.transform.fixed_size = (input_size[1], input_size[0])
        return Workload(lambda: model([image01[0]]), network, image01)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    return Workload(lambda: model((image01 - mean) / std)['out'].argmax(1), network, image01)


class TorchvisionNetwork(nn.Module):
    """torchvision SSD's backbone + head (-> cls logits, box regression), or DeepLabv3's
    ``forward(x)['out']``, as a tensor-out module (for timing and export)."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.task == DETECTION:
            outputs = self.model.head(list(self.model.backbone(x).values()))
            return outputs['cls_logits'], outputs['bbox_regression']
        return self.model(x)['out']


def build_onnx_workload(subject: Subject, input_size: tuple[int, int], onnx_path: str, threads: int) -> Workload:
    """onnxruntime on the pre-exported part; end to end adds our post-processing (ours only)."""
    from .deploy.onnx_export import make_session, run_session

    session = make_session(onnx_path, threads)
    image = example_input(subject, input_size).numpy()
    if subject.part != 'end-to-end' or _postprocess_in_graph(onnx_path):
        return Workload(lambda: run_session(session, image))
    if subject.task == DETECTION:
        from .deploy.postprocess import DetectionPostProcess

        post = DetectionPostProcess.from_json(onnx_path + '.json')

        def detect():
            cls_logits, box_deltas = run_session(session, image)
            return post(torch.from_numpy(cls_logits[0]), torch.from_numpy(box_deltas[0]))

        return Workload(detect)
    from .deploy.postprocess import segmentation_mask

    return Workload(lambda: segmentation_mask(torch.from_numpy(run_session(session, image)[0])))


def _postprocess_in_graph(onnx_path: str) -> bool:
    """Whether an export of ours holds its detections as outputs (DETR-style), from its ``.json``."""
    with open(onnx_path + '.json') as file:
        return 'boxes' in json.load(file)['outputs']


def export_subject(subject: Subject, input_size: tuple[int, int], onnx_path: str) -> None:
    """Exports the network part of ``subject`` (the end-to-end rows reuse the network's file)."""
    from .deploy.onnx_export import export_model, export_module

    if subject.source in ('config', 'mmdet') and subject.part != 'backbone':
        export_model(build_subject_model(subject), onnx_path, input_size, dynamic_size=False)
        return
    workload = build_torch_workload(subject, input_size)
    export_module(workload.module, workload.example, onnx_path)


# --------------------------------------------------------------------------------------------------------
# Measuring (inside a worker process)


def time_step(step: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``step`` after ``warmup`` untimed ones."""
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        step()
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def _status_kib(field: str) -> int:
    """A KiB value of ``/proc/self/status`` (Linux): ``VmRSS`` now, ``VmHWM`` the peak since the reset."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
        return True
    except OSError:
        return False


def _import_libraries() -> None:
    """Imports every library a workload may use, so that the memory baseline includes their code."""
    import mmdet.models  # noqa: F401
    import mmdet.structures  # noqa: F401
    import mmseg.models  # noqa: F401
    import mmseg.structures  # noqa: F401
    import onnxruntime  # noqa: F401
    import timm  # noqa: F401
    import torchvision.models.detection  # noqa: F401
    import torchvision.models.segmentation  # noqa: F401

    import mvdense  # noqa: F401
    import mvdense.apis  # noqa: F401
    import mvdense.deploy.onnx_export  # noqa: F401
    import mvdense.deploy.optimize  # noqa: F401


def build_workload(subject: Subject, runtime: str, input_size: tuple[int, int], onnx_path: str | None,
                   threads: int) -> Workload:
    """The workload of ``subject`` in ``runtime`` (eager, default, deploy, onnxruntime or compiled)."""
    if runtime == 'onnxruntime':
        return build_onnx_workload(subject, input_size, onnx_path, threads)
    if runtime == 'compiled':
        return compiled_workload(build_torch_workload(subject, input_size, 'eager'))
    return build_torch_workload(subject, input_size, runtime)


def compiled_workload(eager: Workload) -> Workload:
    """``torch.compile`` (default backend, inductor) of an eager workload's network part, as built: the
    first call, a warm-up one, compiles. Our models' inference fast paths are off while compiling; the
    compiler sees the reference formulation."""
    compiled = torch.compile(eager.module)
    return Workload(lambda: compiled(eager.example), eager.module, eager.example)


def time_alternating(first: Callable[[], object], second: Callable[[], object], warmup: int,
                     repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``first`` and ``second`` run in turn: load that comes and goes hits both alike."""
    first_times, second_times = [], []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        end = time.perf_counter()
        if index >= warmup:
            first_times.append((middle - start) * 1e3)
            second_times.append((end - middle) * 1e3)
    return first_times, second_times


def paired_ratio(first: Callable[[], object], second: Callable[[], object], repeats: int,
                 warmup: int = 1) -> tuple[float, float]:
    """(median of second / first over alternating runs, median time of ``first`` in milliseconds): one
    kernel against another in the kernel benchmarks (``benchmarks/pointwise_conv.py``, ``linear.py``)."""
    first_ms, second_ms = time_alternating(first, second, warmup=warmup, repeats=repeats)
    return statistics.median(b / a for a, b in zip(first_ms, second_ms)), statistics.median(first_ms)


def kernel_benchmark_setup(description: str, repeats: int, what: str) -> int:
    """The command line of a kernel benchmark (``--threads``, ``--repeats``): sets the threads, prints the
    machine line ending with ``what``; returns the repeats."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=repeats)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'{cpu_and_load()}, {args.threads} thread(s), torch {torch.__version__}, {what}\n')
    return args.repeats


def _set_up_worker(job: dict) -> None:
    """The run's threads, and malloc keeping freed memory when asked (``--keep-freed-memory``)."""
    torch.set_num_threads(job['threads'])
    torch.set_num_interop_threads(1)
    if job.get('keep_freed_memory'):
        keep_freed_memory()


def run_paired_worker(job: dict) -> dict:
    """Times two (subject, runtime) workloads alternately in one process (latency only)."""
    _set_up_worker(job)
    input_size = tuple(job['input_size'])
    workloads = [build_workload(Subject(**side['subject']), side['runtime'], input_size, side.get('onnx_path'),
                                job['threads']) for side in job['pair']]
    with torch.inference_mode():
        first, second = time_alternating(workloads[0].step, workloads[1].step, job['warmup'], job['repeats'])
    return {'first_ms': first, 'second_ms': second}


def run_worker(job: dict) -> dict:
    """Builds one (subject, runtime), times it; returns latencies, memory and (eager) size statistics."""
    if 'pair' in job:
        return run_paired_worker(job)
    threads = job['threads']
    _set_up_worker(job)
    subject = Subject(**job['subject'])
    input_size = tuple(job['input_size'])
    runtime = job['runtime']
    if runtime == 'export':
        export_subject(subject, input_size, job['onnx_path'])
        return {}
    _import_libraries()
    _reset_peak_rss()
    baseline = _status_kib('VmRSS')
    result: dict = {}
    workload = build_workload(subject, runtime, input_size, job.get('onnx_path'), threads)
    with torch.inference_mode():
        times = time_step(workload.step, job['warmup'], job['repeats'])
    result['peak_mib'] = (_status_kib('VmHWM') - baseline) / 1024
    result['times_ms'] = times
    if runtime == 'eager':
        result['params'] = sum(p.numel() for p in workload.module.parameters())
        result['madds'] = count_madds(workload.module, workload.example)
    return result


# --------------------------------------------------------------------------------------------------------
# Orchestration (the parent process)


@dataclass
class Settings:
    input_size: tuple[int, int] = (320, 320)
    threads: int = 1
    repeats: int = 50
    warmup: int = 10
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    onnx_dir: str = ''
    keep_freed_memory: bool = False   # mvdense.utils.memory.keep_freed_memory in every worker


def launch_worker(job: dict, settings: Settings) -> dict:
    """Runs :func:`run_worker` in a fresh interpreter; returns its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads))
    completed = subprocess.run([sys.executable, '-m', 'mvdense.benchmark', '--worker', json.dumps(job)],
                               capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f'benchmark worker failed for {job["subject"]["name"]} ({job["part_runtime"]}):\n'
                           f'{completed.stderr[-4000:]}')
    return json.loads(completed.stdout.strip().splitlines()[-1])


def runtimes_for(subject: Subject, settings: Settings) -> list[str]:
    """Our subjects get every runtime asked for (``default`` end to end only: elsewhere it is ``deploy``;
    ``compiled`` not end to end); peers get eager, and onnxruntime and compiled but not end to end."""
    end_to_end = subject.part == 'end-to-end'
    if subject.source != 'config':
        return [r for r in settings.runtimes if r == 'eager' or (r in ('onnxruntime', 'compiled') and not end_to_end)]
    return [r for r in settings.runtimes if (r != 'default' or end_to_end) and (r != 'compiled' or not end_to_end)]


def onnx_file(subject: Subject, settings: Settings) -> str:
    """The export a subject's onnxruntime rows use (end to end shares the network's)."""
    part = 'network' if subject.part == 'end-to-end' else subject.part
    stem = f'{subject.source}-{subject.label.split(":")[-1]}-{part}-{settings.input_size[0]}x{settings.input_size[1]}'
    return os.path.join(settings.onnx_dir, stem + '.onnx')


def benchmark(subjects: list[Subject], settings: Settings, log: Callable[[str], None] = print) -> list[dict]:
    """Measures every (subject, runtime); returns one record per pair."""
    records = []
    for subject in subjects:
        for runtime in runtimes_for(subject, settings):
            job = dict(subject=asdict(subject), runtime=runtime, input_size=list(settings.input_size),
                       threads=settings.threads, repeats=settings.repeats, warmup=settings.warmup,
                       keep_freed_memory=settings.keep_freed_memory, part_runtime=f'{subject.part}/{runtime}')
            if runtime == 'onnxruntime':
                job['onnx_path'] = onnx_file(subject, settings)
                if not os.path.isfile(job['onnx_path']):
                    launch_worker(dict(job, runtime='export'), settings)
            log(f'  {subject.label} {subject.part} {runtime} ...')
            result = launch_worker(job, settings)
            records.append(dict(subject=subject, runtime=runtime, **result))
    return records


def paired_comparisons(records: list[dict], peers: dict[tuple, list[tuple]]) -> list[tuple[tuple, tuple]]:
    """Which (subject, runtime) pairs to time alternately: each of our rows against its peers (same
    runtime, or the peer's eager for deploy and for onnxruntime end to end), and our eager row
    against our deploy and onnxruntime rows."""
    measured = {(r['subject'].key, r['runtime']): r['subject'] for r in records}
    pairs = []
    for record in records:
        subject, runtime = record['subject'], record['runtime']
        if subject.source != 'config':
            continue
        for peer_key in peers.get((subject.name, subject.part), []):
            peer_runtime = runtime if (peer_key, runtime) in measured else 'eager'
            if (peer_key, peer_runtime) in measured:
                pairs.append(((subject, runtime), (measured[(peer_key, peer_runtime)], peer_runtime)))
        if runtime != 'eager' and (subject.key, 'eager') in measured:
            pairs.append(((subject, runtime), (subject, 'eager')))
    return pairs


def benchmark_pairs(pairs: list[tuple[tuple, tuple]], settings: Settings,
                    log: Callable[[str], None] = print) -> list[dict]:
    """Times each pair alternately in one worker; returns the per-pair ratios (first / second)."""
    results = []
    for (first, first_runtime), (second, second_runtime) in pairs:
        sides = []
        for subject, runtime in ((first, first_runtime), (second, second_runtime)):
            side = dict(subject=asdict(subject), runtime=runtime)
            if runtime == 'onnxruntime':
                side['onnx_path'] = onnx_file(subject, settings)
            sides.append(side)
        job = dict(pair=sides, input_size=list(settings.input_size), threads=settings.threads,
                   repeats=settings.repeats, warmup=settings.warmup, keep_freed_memory=settings.keep_freed_memory,
                   subject=sides[0]['subject'],
                   part_runtime=f'{first.part}/{first_runtime} vs {second.label} {second_runtime}')
        log(f'  paired: {first.label} {first.part} {first_runtime} vs {second.label} {second_runtime} ...')
        result = launch_worker(job, settings)
        ratios = sorted(a / b for a, b in zip(result['first_ms'], result['second_ms']))
        deciles = statistics.quantiles(ratios, n=10)
        results.append(dict(first=first, first_runtime=first_runtime, second=second,
                            second_runtime=second_runtime, ratio=statistics.median(ratios),
                            p10=deciles[0], p90=deciles[-1]))
    return results


def format_pairs(results: list[dict]) -> str:
    """One line per pair: median and p10-p90 of the per-pair latency ratios."""
    lines = []
    for result in results:
        first, second = result['first'], result['second']
        lines.append(f'- {first.label} {first.part}: {result["first_runtime"]} / '
                     f'{"" if second == first else second.label + " "}{result["second_runtime"]} = '
                     f'{result["ratio"]:.2f} (p10-p90 {result["p10"]:.2f}-{result["p90"]:.2f})')
    return '\n'.join(lines)


def summarise(records: list[dict]) -> list[dict]:
    """Adds median / p10 / p90 and carries params / MAdds from each subject's eager record."""
    sizes = {r['subject'].key: (r['params'], r['madds']) for r in records if r['runtime'] == 'eager'}
    for record in records:
        times = sorted(record['times_ms'])
        deciles = statistics.quantiles(times, n=10)
        record.update(median=statistics.median(times), p10=deciles[0], p90=deciles[-1])
        record['params'], record['madds'] = sizes.get(record['subject'].key, (None, None))
    return records


def _median(records: list[dict], subject_key: tuple, runtime: str) -> float | None:
    for record in records:
        if record['subject'].key == subject_key and record['runtime'] == runtime:
            return record['median']
    return None


def peer_ratio(records: list[dict], record: dict, peers: dict[tuple, list[tuple]]) -> str:
    """Our median / the peer's, same part and runtime. Peers have no deploy row and no onnxruntime end to
    end: there the peer's eager time is used, marked ``(eager)``."""
    subject = record['subject']
    ratios = []
    for peer_key in peers.get((subject.name, subject.part), []):
        peer_time = _median(records, peer_key, record['runtime'])
        suffix = ''
        if peer_time is None:
            peer_time, suffix = _median(records, peer_key, 'eager'), ' (eager)'
        if peer_time:
            ratios.append(f'{record["median"] / peer_time:.2f}{suffix}')
    return ', '.join(ratios)


def format_table(records: list[dict], peers: dict[tuple, list[tuple]]) -> str:
    """A markdown table: one row per (subject, runtime). ``x peer``: our median / the peer's."""
    header = ('| model | part | runtime | params (M) | MAdds (G) | latency median (ms) | p10-p90 (ms) '
              '| peak RSS (MiB) | x peer |')
    lines = [header, '|' + '---|' * 9]
    for record in records:
        subject = record['subject']
        params = f'{record["params"] / 1e6:.2f}' if record['params'] is not None else ''
        madds = f'{record["madds"] / 1e9:.3f}' if record['madds'] is not None else ''
        lines.append(f'| {subject.label} | {subject.part} | {record["runtime"]} | {params} | {madds} '
                     f'| {record["median"]:.1f} | {record["p10"]:.1f}-{record["p90"]:.1f} '
                     f'| {record["peak_mib"]:.0f} | {peer_ratio(records, record, peers)} |')
    return '\n'.join(lines)


def format_ratios(records: list[dict]) -> str:
    """Speed-ups of our rows: eager / default, deploy, onnxruntime and compiled (and deploy /
    onnxruntime)."""
    lines = []
    for record in records:
        subject = record['subject']
        if subject.source != 'config' or record['runtime'] != 'eager':
            continue
        eager = record['median']
        parts = []
        for runtime in ('default', 'deploy', 'onnxruntime', 'compiled'):
            other = _median(records, subject.key, runtime)
            if other:
                parts.append(f'eager / {runtime} = {eager / other:.2f}x')
        deploy, ort = _median(records, subject.key, 'deploy'), _median(records, subject.key, 'onnxruntime')
        if deploy and ort:
            parts.append(f'deploy / onnxruntime = {deploy / ort:.2f}x')
        if parts:
            lines.append(f'- {subject.label} {subject.part}: ' + '; '.join(parts))
    return '\n'.join(lines)


def cpu_and_load() -> str:
    """'<CPU model>, <n> logical CPUs' and the load average, for the first line of a benchmark's output."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            cpu = next(line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    return f'{cpu}, {os.cpu_count()} logical CPUs, load average {load}'


def describe_machine(settings: Settings) -> str:
    """One line about the conditions of the run: CPU, threads, load, versions."""
    import onnxruntime
    import torch

    memory = '; freed memory kept (keep_freed_memory)' if settings.keep_freed_memory else ''
    return (f'{cpu_and_load()}, {settings.threads} thread(s); '
            f'input {settings.input_size[0]}x{settings.input_size[1]}, batch 1, fp32, '
            f'{settings.warmup} warm-up + {settings.repeats} timed runs{memory}; torch {torch.__version__}, '
            f'onnxruntime {onnxruntime.__version__}; MAdds: {MADDS_TOOL}')


def _log(line: str) -> None:
    """Progress goes to stderr; the results to stdout."""
    print(line, file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='CPU benchmark of mvdense configs against peers')
    parser.add_argument('configs', nargs='*', help='mmdet / mmseg config files')
    parser.add_argument('--input-size', nargs=2, type=int, default=(320, 320), metavar=('H', 'W'))
    parser.add_argument('--repeats', type=int, default=50, help='timed runs per measurement')
    parser.add_argument('--warmup', type=int, default=10, help='untimed runs before timing')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads (torch and onnxruntime)')
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS))
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES, default=list(DEFAULT_RUNTIMES),
                        help='compiled: torch.compile of the backbone / network (not end to end), by name only')
    parser.add_argument('--no-peers', action='store_true', help='time our models only')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='every worker (ours and peers) keeps the memory it frees, as tools/test.py and '
                             'tools/infer.py do (mvdense.utils.memory.keep_freed_memory)')
    parser.add_argument('--paired', action='store_true',
                        help='also time each of our rows alternately with its peer (and eager with deploy / '
                             'onnxruntime) in one process: ratios robust to a machine whose load varies')
    parser.add_argument('--onnx-dir', help='keep the ONNX exports here (default: a temporary directory)')
    parser.add_argument('--json', help='also write the raw records (all timings) to this file')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return []
    if not args.configs:
        raise SystemExit('give at least one config')
    for path in args.configs:
        if not os.path.isfile(path):
            raise SystemExit(f'config file not found: {path}')
    settings = Settings(tuple(args.input_size), args.threads, args.repeats, args.warmup, tuple(args.runtimes),
                        keep_freed_memory=args.keep_freed_memory)
    subjects, peers = collect_subjects([os.path.abspath(p) for p in args.configs], tuple(args.parts),
                                       not args.no_peers)
    with tempfile.TemporaryDirectory() as scratch:
        settings.onnx_dir = args.onnx_dir or scratch
        os.makedirs(settings.onnx_dir, exist_ok=True)
        print(describe_machine(settings), file=sys.stderr)
        records = summarise(benchmark(subjects, settings, _log))
        paired = benchmark_pairs(paired_comparisons(records, peers), settings, _log) if args.paired else []
    print(describe_machine(settings))
    print()
    print(format_table(records, peers))
    print()
    print('Speed-ups (ratios of the medians above):')
    print(format_ratios(records))
    if paired:
        print()
        print('Paired ratios (latency ratio per alternating pair of runs in one process; median, p10-p90):')
        print(format_pairs(paired))
    if args.json:
        with open(args.json, 'w') as file:
            json.dump({'machine': describe_machine(settings),
                       'records': [dict(r, subject=asdict(r['subject'])) for r in records],
                       'paired': [dict(p, first=asdict(p['first']), second=asdict(p['second'])) for p in paired]},
                      file, indent=1)
    return records


if __name__ == '__main__':
    main()
