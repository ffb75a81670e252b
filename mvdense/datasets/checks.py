"""Bad data, named in one line: the error every data check raises, and a checked image reader.

Every check in :mod:`mvdense.datasets` raises :class:`DataError` with the message
``"bad data: <file>: <what is wrong>"``. Inside a DataLoader worker, PyTorch re-raises it in the main process
with the worker's traceback as its message; :func:`data_error_summary` digs the one line back out of either
form, and the tools (``mvdense.runner.data_errors_as_exit``) print that line instead of tracebacks.
"""
from __future__ import annotations

import re

import mmcv
import numpy as np
from mmengine import fileio

__all__ = ['DataError', 'data_error_summary', 'decoding_problem', 'read_image']

# The message format every DataError uses; data_error_summary() looks for it.
_PREFIX = 'bad data: '


class DataError(ValueError):
    """A data file that cannot be used: missing, undecodable, or with invalid contents.

    The message is ``"bad data: <path>: <problem>"``; it takes a single string so that PyTorch's
    DataLoader can re-create it in the main process.
    """

    @classmethod
    def about(cls, path: str, problem: str) -> DataError:
        return cls(f'{_PREFIX}{path}: {problem}')


def data_error_summary(error: BaseException) -> str | None:
    """The ``"bad data: <path>: <problem>"`` line of a :class:`DataError`, also one that a DataLoader
    worker raised (whose message holds the whole worker traceback); None for any other error."""
    if not isinstance(error, DataError):
        return None
    lines = re.findall(rf'{re.escape(_PREFIX)}.*', str(error))
    return lines[-1] if lines else str(error)


def decoding_problem(error: BaseException) -> str:
    """A short description of a decoding error; mmcv's bare ``assert img is not None`` has no message."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else ''
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def read_image(path: str, color_type: str = 'color', imdecode_backend: str = 'cv2',
               backend_args: dict | None = None) -> np.ndarray:
    """The image at ``path`` decoded as mmcv's ``LoadImageFromFile`` decodes it (BGR [H, W, 3] for the
    default ``color_type``: grayscale is replicated, an alpha channel dropped).

    Raises :class:`DataError` for a missing or empty file and for bytes that are not an image.
    """
    if not fileio.exists(path, backend_args=backend_args):
        raise DataError.about(path, 'image file not found')
    data = fileio.get(path, backend_args=backend_args)
    if not data:
        raise DataError.about(path, 'empty file (0 bytes), not an image')
    try:
        image = mmcv.imfrombytes(data, flag=color_type, backend=imdecode_backend)
    except Exception as error:  # cv2, Pillow and turbojpeg raise unrelated types
        raise DataError.about(path, 'cannot decode the image (corrupt or not an image file): '
                                    f'{decoding_problem(error)}') from None
    if image is None or image.size == 0:
        raise DataError.about(path, 'cannot decode the image (corrupt or not an image file)')
    return image
