"""High-level entry points: a model from a config (and checkpoint), and the task it solves."""
from .inference import DETECTION, SEGMENTATION, init_model, load_config, model_task, task_of

__all__ = ['DETECTION', 'SEGMENTATION', 'init_model', 'load_config', 'model_task', 'task_of']
