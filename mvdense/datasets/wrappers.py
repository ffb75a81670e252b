"""Opt-in tolerance of bad samples for long training runs: :class:`SkipBadSamples`."""
from __future__ import annotations

import copy
import logging
from typing import Any

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.registry import DATASETS

from .checks import DataError, data_error_summary

__all__ = ['SkipBadSamples']


@DATASETS.register_module()
class SkipBadSamples:
    """Wraps a training set: a sample whose data is bad (:class:`~mvdense.datasets.checks.DataError`: a
    missing or undecodable image, an invalid mask, ...) is logged in one warning line,
    ``skipped a bad sample (index 17): bad data: <file>: <problem>``, and the next sample is returned
    instead. ``tools/train.py --skip-bad-samples`` wraps the config's training set in it.

    The default, without the wrapper, is to stop at the first bad sample. Annotation files are still
    checked when the data set is built (a broken file stops the run before training), and evaluation
    never skips: a metric over part of the images would not be comparable.

    Args:
        dataset: The data set (or its config).
        max_consecutive: Stop (raise the last :class:`DataError`) when this many samples in a row are bad:
            then something other than a few damaged files is wrong.
    """

    def __init__(self, dataset: BaseDataset | dict, max_consecutive: int = 16) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        if max_consecutive < 1:
            raise ValueError(f'max_consecutive must be positive, got {max_consecutive}')
        self.max_consecutive = max_consecutive

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        error: DataError | None = None
        for offset in range(self.max_consecutive):
            index = (idx + offset) % len(self.dataset)
            try:
                return self.dataset[index]
            except DataError as bad:
                error = bad
                print_log(f'skipped a bad sample (index {index}): {data_error_summary(bad)}', logger='current',
                          level=logging.WARNING)
        raise DataError(f'{data_error_summary(error)} ({self.max_consecutive} bad samples in a row: stopped)')
