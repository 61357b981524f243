"""What the lesion command lines share: the usage error, ``--set KEY=VALUE`` config overrides, ``--weights last``.

``lesion/train.py``, ``lesion/detect.py`` and ``lesion/evaluate.py`` report a :class:`UsageError` as one line and
exit status 2. This module imports neither TensorFlow nor NumPy, so ``--help`` stays fast.

Example::

    from lesion import cli
    overrides = cli.parse_overrides(["IMAGE_MAX_DIM=512", "BACKBONE=resnet50"])  # {"IMAGE_MAX_DIM": 512, ...}
    path = cli.find_last("logs", "LESION_LIGHT")  # logs/lesion_light<date>/mask_rcnn_lesion_light_<epoch>.h5
"""

from __future__ import annotations

import ast
import difflib
import os
from typing import Any, Iterable

__all__ = ["UsageError", "parse_overrides", "find_last"]


class UsageError(Exception):
    """A problem with the command line or the inputs that the user can fix (missing weights, a bad option):
    printed as one line, exit status 2."""


def parse_overrides(pairs: Iterable[str] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--set``) -> config overrides; values are Python literals (``128``, ``(8, 16)``,
    ``True``) or else plain strings (a bare word, e.g. ``BACKBONE=resnet50``).

    Raises:
        UsageError: an item without ``=``, or a key that is not a config attribute (the upper-case names of
            :class:`mrcnn.config.Config`); the message suggests close names.
    """
    from mrcnn.config import Config

    known = sorted(k for k in dir(Config) if k.isupper())
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: write KEY=VALUE, e.g. --set IMAGE_MAX_DIM=512")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see mrcnn/config.py for the attributes"
            raise UsageError(f"--set {pair!r}: {key} is not a config attribute{hint}")
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


def find_last(logs_dir: str | os.PathLike, config_name: str | None, hint: str = "") -> str:
    """``--weights last``: the newest checkpoint of the runs of the config named ``config_name`` under
    ``logs_dir`` (:func:`mrcnn.checkpoints.find_last`; ``"lesion"`` does not take ``lesion_light`` runs).

    Args:
        logs_dir: the training log folder (``--logs``).
        config_name: the config's NAME.
        hint: what to do instead, appended to the error message.

    Raises:
        UsageError: no run of that name, or none with a checkpoint.
    """
    from mrcnn import checkpoints

    name = checkpoints.run_name(config_name)
    try:
        return checkpoints.find_last(logs_dir, name)
    except FileNotFoundError as exc:
        message = f"--weights last: no checkpoint of {name!r} under {os.fspath(logs_dir)} ({exc.strerror})"
        raise UsageError(f"{message}. {hint}" if hint else message) from exc
