"""Reading and writing matterport / Keras-2 ``.h5`` weight files, and fetching the pretrained ones.

matterport's weight files (``mask_rcnn_coco.h5``, training checkpoints ``mask_rcnn_<name>_<epoch>.h5``, the
ImageNet ResNet-50 file) use Keras 2's ``save_weights`` HDF5 layout:

* root attributes ``layer_names`` (every layer, in ``model.layers`` order), ``backend``, ``keras_version``;
  full-model files hold the same under a top-level ``model_weights`` group;
* one group per layer, with attribute ``weight_names`` (``["conv1/kernel:0", "conv1/bias:0"]``); the datasets
  sit at ``/<layer>/<weight_name>``, so ``/conv1/conv1/kernel:0``;
* a nested model (matterport's ``rpn_model``) is one group whose weight names carry the inner layer's name:
  ``/rpn_model/rpn_conv_shared/kernel:0``.

Keras 3's own ``model.load_weights`` reads only its new ``.weights.h5`` format, so this module maps the old layout
onto a Keras 3 model by layer name:

* The model is walked recursively. A *unit* is a layer loaded as one group: a layer that owns variables itself
  (``Conv2D``, ``BatchNormalization``, ...), a wrapper such as ``TimeDistributed`` (stored under the wrapper's
  name, as matterport's heads), or a nested model whose name is a group in the file (``rpn_model``). Any other
  nested model (a backbone or head built as its own ``keras.Model``) is looked through, so its layers match the
  flat groups of matterport's file.
* Within a group the file's weights are matched to ``layer.weights`` in order (Keras 2 and 3 agree: kernel, bias;
  gamma, beta, moving_mean, moving_variance; a ``Conv2DTranspose`` kernel is ``(kh, kw, out, in)`` in both). For a
  nested model whose ``<inner_layer>/<variable>`` names match the file's exactly, they are matched by name.

Example::

    from mrcnn.weights import load_weights
    report = load_weights(model, "weights/mask_rcnn_coco.h5",
                          exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"])
    print(report.summary())
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import urllib.error
import urllib.request
from typing import Iterable, Sequence

import h5py
import keras
import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .checkpoints import epoch_from_checkpoint_name  # Part of this module's API since before mrcnn.checkpoints.

__all__ = [
    "COCO_MODEL_URL",
    "COCO_WEIGHTS_SIZE",
    "IMAGENET_WEIGHTS_URL",
    "IMAGENET_WEIGHTS_FILENAME",
    "CLASS_SPECIFIC_HEADS",
    "DEFAULT_NESTED_GROUPS",
    "LoadReport",
    "WeightsInfo",
    "WeightsFileError",
    "WeightsMismatchError",
    "WeightsDownloadError",
    "load_weights",
    "save_weights",
    "inspect_weights",
    "epoch_from_checkpoint_name",
    "get_imagenet_weights",
    "download_trained_weights",
]

logger = logging.getLogger(__name__)

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
"""matterport release v2.0: Mask R-CNN, ResNet-101 FPN, 81 COCO classes."""

COCO_WEIGHTS_SIZE = 257_557_808
"""Size in bytes of the complete ``mask_rcnn_coco.h5``."""

IMAGENET_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
IMAGENET_WEIGHTS_FILENAME = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"

CLASS_SPECIFIC_HEADS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")
"""Layers whose shapes depend on NUM_CLASSES (``mrcnn_bbox`` is a weightless reshape, listed as matterport does).
Exclude them to fine-tune the COCO weights on another class count."""

# Nested models that :func:`save_weights` stores as one group, as matterport did.
DEFAULT_NESTED_GROUPS = ("rpn_model",)

# HDF5 keeps attributes in the object header, limited to 64 KiB; Keras 2 split longer lists into
# "<name>0", "<name>1", ... chunks. Written and read the same way here.
_HDF5_ATTR_LIMIT = 64512

_COCO_HINT = (f"Get the COCO weights (matterport release v2.0, mask_rcnn_coco.h5, {COCO_WEIGHTS_SIZE:,} bytes) "
              f"from {COCO_MODEL_URL} into the weights/ folder, or call "
              "mrcnn.weights.download_trained_weights(path).")


class WeightsFileError(OSError):
    """The weight file cannot be read: not readable (permissions), not HDF5, truncated, not in the Keras-2 layout,
    or holding NaN or infinite values."""


class WeightsMismatchError(ValueError):
    """The weight file does not fit the model: a shape or weight-count mismatch, or missing layers."""


class WeightsDownloadError(OSError):
    """A pretrained weight file could not be downloaded."""


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        filepath: the file read.
        loaded: layer (group) names whose weights were assigned, in file order.
        file_only: weighted groups of the file with no model layer of that name (not loaded), e.g. res4g..res4w
            when a ResNet-50 model reads a ResNet-101 file.
        model_only: weighted model layers with no group in the file (left as they were).
        excluded: layers skipped because of ``exclude`` (model or file names).
        mismatched: ``{layer: reason}`` for groups skipped because ``skip_mismatch=True``.
        num_values: number of scalar values assigned.
        keras_version: the ``keras_version`` attribute of the file, if any.
    """

    filepath: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    file_only: list[str] = dataclasses.field(default_factory=list)
    model_only: list[str] = dataclasses.field(default_factory=list)
    excluded: list[str] = dataclasses.field(default_factory=list)
    mismatched: dict[str, str] = dataclasses.field(default_factory=dict)
    num_values: int = 0
    keras_version: str | None = None

    def summary(self, max_names: int = 8) -> str:
        """A few lines saying what was loaded and what was skipped, naming up to ``max_names`` layers per line."""

        def names(items: Sequence[str]) -> str:
            shown = ", ".join(items[:max_names])
            more = len(items) - max_names
            return shown + (f", ... ({more} more)" if more > 0 else "")

        origin = f" (written by Keras {self.keras_version})" if self.keras_version else ""
        lines = [f"Loaded {len(self.loaded)} layers ({self.num_values:,} values) from {self.filepath}{origin}."]
        if self.excluded:
            lines.append(f"  excluded ({len(self.excluded)}): {names(self.excluded)}")
        if self.mismatched:
            lines.append(f"  shape mismatch, skipped ({len(self.mismatched)}): {names(list(self.mismatched))}")
        if self.file_only:
            lines.append(f"  in the file, not in the model, skipped ({len(self.file_only)}): {names(self.file_only)}")
        if self.model_only:
            lines.append(f"  in the model, not in the file, left as they were ({len(self.model_only)}): "
                         f"{names(self.model_only)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclasses.dataclass
class _Unit:
    """One layer loaded/saved as one group, with its variables and their names inside the group."""

    layer: keras.layers.Layer
    variables: list
    names: list[str]  # "<owner>/<variable>" without the ":0" suffix


def _sublayers(layer) -> list:
    """Direct sub-layers of ``layer`` (the layers of a functional model; tracked children of other layers)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", []))


def _owned_variables(layer) -> list:
    """Variables of ``layer`` not owned by one of its sub-layers, in ``layer.weights`` order."""
    inner = {id(w) for sub in _sublayers(layer) for w in sub.weights}
    return [w for w in layer.weights if id(w) not in inner]


def _leaf_owner_names(layer) -> dict[int, str]:
    """Map ``id(variable)`` to the name of the innermost layer that owns it, for every weight of ``layer``."""
    owners: dict[int, str] = {}

    def visit(node) -> None:
        for w in _owned_variables(node):
            owners.setdefault(id(w), node.name)
        for sub in _sublayers(node):
            visit(sub)

    visit(layer)
    return owners


def _make_unit(layer) -> _Unit:
    variables = list(layer.weights)
    own = _owned_variables(layer)
    if len(own) == len(variables) or isinstance(layer, keras.layers.Wrapper):
        # A plain layer, or a wrapper stored under its own name (matterport's TimeDistributed heads).
        names = [f"{layer.name}/{v.name}" for v in variables]
    else:
        owners = _leaf_owner_names(layer)
        names = [f"{owners.get(id(v), layer.name)}/{v.name}" for v in variables]
    return _Unit(layer, variables, names)


def _walk(model, group_names: Iterable[str]) -> tuple[list[_Unit], list[str], list]:
    """Split ``model`` into units.

    Args:
        model: the model (its own name is not a group: its layers are).
        group_names: names of nested layers to keep whole (file groups when loading, ``rpn_model`` when saving).

    Returns:
        (units, layer_names, weightless): the units in walk order; every layer name in walk order (units and
        weightless leaves, as Keras 2's ``layer_names``); the weightless leaf layers.
    """
    group_names = set(group_names)
    units: list[_Unit] = []
    layer_names: list[str] = []
    weightless: list = []
    seen: set[int] = set()

    def visit(container) -> None:
        for layer in _sublayers(container):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            children = _sublayers(layer)
            if not layer.weights:
                if children and not isinstance(layer, keras.layers.Wrapper):
                    visit(layer)
                else:
                    layer_names.append(layer.name)
                    weightless.append(layer)
                continue
            whole = (layer.name in group_names or isinstance(layer, keras.layers.Wrapper)
                     or not children or bool(_owned_variables(layer)))
            if whole:
                units.append(_make_unit(layer))
                layer_names.append(layer.name)
            else:
                visit(layer)

    visit(model)
    return units, layer_names, weightless


def _decode(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf8")
    return str(value)


def _read_str_list(obj, name: str) -> list[str] | None:
    """A list-of-strings attribute, ``str`` or ``bytes``, possibly split into Keras 2 chunks; None if absent."""
    attrs = obj.attrs
    if name in attrs:
        raw = [attrs[name]]
    elif f"{name}0" in attrs:
        raw, i = [], 0
        while f"{name}{i}" in attrs:
            raw.append(attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out: list[str] = []
    for chunk in raw:
        out.extend(_decode(v) for v in np.atleast_1d(chunk).ravel())
    return out


def _write_str_list(obj, name: str, values: Sequence[str]) -> None:
    """Write a list of strings as fixed-length bytes (what Keras 2 wrote), chunked past the HDF5 header limit."""
    data = np.array([v.encode("utf8") for v in values], dtype=bytes) if values else np.zeros((0,), dtype="S1")
    chunks = 1
    while data.nbytes / chunks > _HDF5_ATTR_LIMIT:
        chunks += 1
    if chunks == 1:
        obj.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, chunks)):
        obj.attrs[f"{name}{i}"] = part


def _strip_suffix(weight_name: str) -> str:
    """``"conv1/kernel:0"`` -> ``"conv1/kernel"``."""
    return re.sub(r":\d+$", "", weight_name)


def _is_excluded(name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if name == pattern:
            return True
        try:
            if re.fullmatch(pattern, name):
                return True
        except re.error:
            continue
    return False


def _missing_file_message(path: str) -> str:
    base = os.path.basename(path)
    if base == IMAGENET_WEIGHTS_FILENAME:
        hint = (f"Get the ImageNet ResNet-50 weights from {IMAGENET_WEIGHTS_URL} into the weights/ folder, "
                "or call mrcnn.weights.get_imagenet_weights().")
    else:
        hint = _COCO_HINT
    return f"Weight file not found: {path}. {hint}"


_KNOWN_SIZES = {"mask_rcnn_coco.h5": COCO_WEIGHTS_SIZE}
"""Download sizes of the published files, by file name (a checkpoint's size depends on its model)."""


def _open_error_message(path: str, error: Exception) -> str:
    size = os.path.getsize(path)
    expected = _KNOWN_SIZES.get(os.path.basename(path))
    if expected is not None:
        advice = (f"(an interrupted download?). The full file is {expected:,} bytes; delete it and download it "
                  "again.")
    else:
        advice = ("(an interrupted copy, or a checkpoint written by a run that was killed?). Use another copy or "
                  "an earlier checkpoint.")
    return (f"{path} ({size:,} bytes) cannot be read as an HDF5 weight file: it looks truncated or corrupt "
            f"{advice} (h5py: {error})")


def _unreadable_message(path: str, error: Exception) -> str:
    return (f"{path}: the file is not readable (permission denied): give this user read access to it, or copy it "
            f"somewhere readable. ({error})")


def _check_finite(value: np.ndarray, path: str, layer: str, weight_name: str) -> None:
    """Raise a WeightsFileError naming the file, layer and dataset when a float value is NaN or infinite."""
    if not np.issubdtype(value.dtype, np.floating):
        return
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    if bad:
        raise WeightsFileError(f"{path}: layer '{layer}', weight '{weight_name}' holds {bad:,} NaN or infinite values "
                               f"(of {np.size(value):,}): the file is damaged (or was written by a training run "
                               "that diverged); nothing was loaded")


def _weights_root(f: h5py.File, path: str):
    """The group holding ``layer_names``: the root, or ``model_weights`` in a full-model file."""
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    if "model_weights" in f:
        return f["model_weights"]
    raise WeightsFileError(
        f"{path} is an HDF5 file but not a Keras-2 / matterport weight file (no 'layer_names' attribute at the "
        "root or under 'model_weights'). Keras 3 '.weights.h5' files are loaded with model.load_weights(path).")


def _read_weight_names(group, path: str) -> list[str]:
    names = _read_str_list(group, "weight_names")
    if names is None:
        if len(group):
            raise WeightsFileError(f"{path}: group '{group.name}' has datasets but no 'weight_names' attribute.")
        return []
    return names


def _match_group(unit: _Unit, file_names: list[str], file_shapes: list[tuple]) -> tuple[list[int] | None, str]:
    """Match a unit's variables to the file's datasets of the same group.

    Returns:
        (order, problem): ``order[i]`` is the index of the file dataset for ``unit.variables[i]``, or None with a
        description of the count or shape mismatch.
    """
    name = unit.layer.name
    if len(file_names) != len(unit.variables):
        hint = ""
        if not file_names:
            hint = " (the file's group has no weights; is it a weightless layer there?)"
        return None, (f"layer '{name}': the file has {len(file_names)} weights {file_names} but the model layer has "
                      f"{len(unit.variables)} {[n + ':0' for n in unit.names]}{hint}. The layer's structure differs "
                      "from the one that wrote the file.")
    order = list(range(len(file_names)))
    stripped = [_strip_suffix(n) for n in file_names]
    if (len(set(stripped)) == len(stripped) and set(stripped) == set(unit.names)
            and stripped != unit.names):
        # Same inner names in another order (a nested model built in another layer order): match by name.
        index = {n: i for i, n in enumerate(stripped)}
        order = [index[n] for n in unit.names]
    problems = [
        f"variable '{unit.names[i]}': shape {tuple(var.shape)} in the model, {tuple(file_shapes[order[i]])} in the file"
        for i, var in enumerate(unit.variables)
        if tuple(var.shape) != tuple(file_shapes[order[i]])
    ]
    if problems:
        return None, f"layer '{name}', " + "; ".join(problems) + "."
    return order, ""


def _to_numpy(var) -> np.ndarray:
    """A variable's value as a NumPy array (through the backend tensor's own ``numpy()`` where it has one)."""
    value = var.value
    if callable(getattr(value, "numpy", None)):
        return np.asarray(value.numpy())
    return keras.ops.convert_to_numpy(value)


def _cast(value: np.ndarray, var) -> np.ndarray:
    try:
        return np.asarray(value).astype(var.dtype, copy=False)
    except TypeError:
        # A dtype NumPy does not know (bfloat16): let the variable convert it on assignment.
        return np.asarray(value)


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """What a weight file says about the model it fits (:func:`inspect_weights`).

    Attributes:
        num_classes: NUM_CLASSES (background included), from the ``mrcnn_class_logits`` kernel; None if unknown.
        backbone: ``"light"``, ``"resnet50"`` or ``"resnet101"`` from the layer names; None if unknown.
    """

    num_classes: int | None
    backbone: str | None


def inspect_weights(filepath: str | os.PathLike) -> WeightsInfo:
    """Read the class count and backbone of a matterport-layout ``.h5`` file without building a model.

    Args:
        filepath: the weight file.

    Returns:
        A :class:`WeightsInfo`; fields the file does not reveal (or an unreadable file) are None, and loading it
        (:func:`load_weights`) reports the problem.
    """
    path = os.fspath(filepath)
    try:
        with h5py.File(path, "r") as f:
            root = _weights_root(f, path)
            names = _read_str_list(root, "layer_names") or []
            num_classes = None
            if "mrcnn_class_logits" in root:
                group = root["mrcnn_class_logits"]
                for weight_name in _read_str_list(group, "weight_names") or []:
                    if weight_name.split("/")[-1].startswith("kernel") and weight_name in group:
                        num_classes = int(group[weight_name].shape[-1])
    except (OSError, KeyError, ValueError, WeightsFileError):
        return WeightsInfo(None, None)
    if any(n.startswith("light") for n in names):
        backbone = "light"
    elif "res4w_branch2a" in names:
        backbone = "resnet101"
    elif "res4a_branch2a" in names:
        backbone = "resnet50"
    else:
        backbone = None
    return WeightsInfo(num_classes, backbone)


def load_weights(model: keras.Model, filepath: str | os.PathLike, by_name: bool = True,
                 exclude: str | Sequence[str] | None = None, skip_mismatch: bool = False) -> LoadReport:
    """Load a matterport / Keras-2 ``.h5`` weight file into a Keras 3 model, matching layers by name.

    The whole file is checked against the model before any variable is assigned, so a failed load leaves the
    model unchanged.

    Args:
        model: a built Keras 3 model. Its layers are walked recursively; layers that own variables, wrappers
            (``TimeDistributed``) and nested models whose name is a group in the file (``rpn_model``) are matched
            to the group of the same name; other nested models are looked through.
        filepath: the ``.h5`` file (``save_weights`` layout at the root, or a full-model file with a
            ``model_weights`` group); string attributes may be ``str`` or ``bytes``.
        by_name: True (recommended): load every group that has a model layer of the same name and report the
            rest. False stands for matterport's default, topological loading, which Keras 3 cannot reproduce for
            these files; it also loads by name, but requires that every weighted layer of the model is in the
            file and every weighted group of the file is in the model (as topological loading did), and raises
            :class:`WeightsMismatchError` otherwise. A non-empty ``exclude`` implies by_name=True, as matterport.
        exclude: layer names not to load: exact names (matterport's usage) or regular expressions matched
            against the whole name, e.g. ``["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]``
            to fine-tune the COCO weights on another class count.
        skip_mismatch: skip groups whose weight count or shapes differ from the model layer, listing them in
            the report, instead of raising.

    Returns:
        A :class:`LoadReport`; its summary is also logged at INFO level.

    Raises:
        FileNotFoundError: no such file (the message says where to get the COCO weights).
        WeightsFileError: not readable (permissions), not an HDF5 file, truncated (the message gives its size), not
            in the Keras-2 layout, or a NaN or infinite value (the message names the layer and dataset).
        WeightsMismatchError: a shape or weight-count mismatch (unless skip_mismatch), a layer name used twice
            in the model, or, with by_name=False, layers missing on either side.
    """
    path = os.fspath(filepath)
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
    if exclude:
        by_name = True
    if os.path.isdir(path):
        raise WeightsFileError(f"{path} is a folder, not a weight file: give the .h5 file inside it (a training "
                               "run folder holds mask_rcnn_<name>_<epoch>.h5 checkpoints)")
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_file_message(path))
    try:
        f = h5py.File(path, "r")
    except PermissionError as error:
        raise WeightsFileError(_unreadable_message(path, error)) from error
    except OSError as error:
        raise WeightsFileError(_open_error_message(path, error)) from error

    with f:
        root = _weights_root(f, path)
        file_groups = _read_file_groups(root, path)
        version = _read_str_list(root, "keras_version") or _read_str_list(f, "keras_version")
        report = LoadReport(filepath=path, keras_version=version[0] if version else None)
        plan, problems = _plan_load(model, file_groups, exclude, skip_mismatch, report, path)
        if problems:
            raise WeightsMismatchError(_mismatch_message(path, problems))
        if not by_name and (report.model_only or report.file_only):
            raise WeightsMismatchError(
                f"{path}: by_name=False needs the same weighted layers in the file and the model: not in the file: "
                f"{report.model_only[:10]}; not in the model: {report.file_only[:10]}. Load with by_name=True "
                "(and exclude=[...]) to load the layers the two share.")

        # Read (and check) every value before assigning any, so an unreadable (truncated) dataset or a NaN leaves
        # the model unchanged.
        assignments = []
        try:
            for unit, name, order in plan:
                weight_names = file_groups[name][0]
                for var, i in zip(unit.variables, order):
                    value = np.asarray(root[name][weight_names[i]][()])
                    _check_finite(value, path, name, weight_names[i])
                    assignments.append((var, _cast(value, var)))
        except WeightsFileError:
            raise
        except (KeyError, ValueError, RuntimeError, OSError) as error:
            raise WeightsFileError(_open_error_message(path, error)) from error

    for var, value in assignments:
        var.assign(value)
    report.loaded = [name for _, name, _ in plan]
    report.num_values = int(sum(np.size(value) for _, value in assignments))
    logger.info("%s", report.summary())
    return report


def _mismatch_message(path: str, problems: dict[str, str], limit: int = 10) -> str:
    """One error message for all layers that do not fit, with the fix for class-specific heads."""
    lines = [f"{path} does not fit the model:"]
    lines += [f"  {message}" for message in list(problems.values())[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more layers")
    heads = [name for name in problems if name in CLASS_SPECIFIC_HEADS]
    if heads:
        lines.append(f"{', '.join(heads)}: class-specific heads, so the file was trained with another NUM_CLASSES. "
                     f"Pass exclude={list(CLASS_SPECIFIC_HEADS)!r} to load everything else and train these heads "
                     "from scratch.")
    lines.append("Pass skip_mismatch=True to skip the layers that do not fit and load the rest.")
    return "\n".join(lines)


def _read_file_groups(root, path: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """``{layer: (weight_names, shapes)}`` for every entry of ``layer_names``, in file order (no values read)."""
    groups: dict[str, tuple[list[str], list[tuple]]] = {}
    try:
        for name in _read_str_list(root, "layer_names") or []:
            if name not in root:
                groups[name] = ([], [])  # a weightless layer stored without a group
                continue
            group = root[name]
            weight_names = _read_weight_names(group, path)
            missing = [w for w in weight_names if w not in group]
            if missing:
                raise WeightsFileError(f"{path}: group '{name}' lists weights {missing} but has no such datasets.")
            groups[name] = (weight_names, [tuple(group[w].shape) for w in weight_names])
    except WeightsFileError:
        raise
    except (KeyError, ValueError, RuntimeError, OSError) as error:
        raise WeightsFileError(_open_error_message(path, error)) from error
    return groups


def _plan_load(model, file_groups: dict[str, tuple[list[str], list[tuple]]], exclude: Sequence[str],
               skip_mismatch: bool, report: LoadReport, path: str) -> tuple[list[tuple[_Unit, str, list[int]]],
                                                                           dict[str, str]]:
    """Match model units to file groups and fill the report's name lists.

    Returns:
        (plan, problems): ``(unit, group, order)`` for every group to load, and ``{layer: description}`` of the
        mismatches that must raise.
    """
    units, _, weightless = _walk(model, file_groups)
    by_layer: dict[str, list[_Unit]] = {}
    for unit in units:
        by_layer.setdefault(unit.layer.name, []).append(unit)
    duplicated = sorted(n for n, us in by_layer.items()
                        if len(us) > 1 and n in file_groups and not _is_excluded(n, exclude))
    if duplicated:
        raise WeightsMismatchError(f"{path}: the model has several layers named {duplicated}; layer names must be "
                                   "unique to load weights by name.")
    weightless_names = {layer.name for layer in weightless}
    weighted_file = [n for n, (names, _) in file_groups.items() if names]
    all_names = list(dict.fromkeys(list(file_groups) + list(by_layer)))

    report.excluded = [n for n in all_names
                       if _is_excluded(n, exclude) and (n in by_layer or file_groups.get(n, ([],))[0])]
    report.file_only = [n for n in weighted_file
                        if n not in by_layer and n not in weightless_names and not _is_excluded(n, exclude)]
    report.model_only = [n for n in by_layer if n not in file_groups and not _is_excluded(n, exclude)]
    for pattern in exclude:
        if not any(_is_excluded(n, [pattern]) for n in all_names):
            logger.warning("load_weights: exclude entry %r matches no layer of the model or of %s.", pattern, path)

    problems: dict[str, str] = {}

    def mismatch(name: str, message: str) -> None:
        if skip_mismatch:
            report.mismatched[name] = message
        else:
            problems[name] = message

    plan: list[tuple[_Unit, str, list[int]]] = []
    for name, (weight_names, shapes) in file_groups.items():
        if _is_excluded(name, exclude):
            continue
        if name in by_layer:
            order, problem = _match_group(by_layer[name][0], weight_names, shapes)
            if order is None:
                mismatch(name, problem)
            else:
                plan.append((by_layer[name][0], name, order))
        elif weight_names and name in weightless_names:
            # The model layer has no variables: another structure, or a layer that was never built.
            mismatch(name, f"layer '{name}': the file has {len(weight_names)} weights but the model layer has none "
                           "(is the model built?).")
    return plan, problems


def save_weights(model: keras.Model, filepath: str | os.PathLike,
                 nested_groups: Sequence[str] = DEFAULT_NESTED_GROUPS, dtype: str | None = None) -> str:
    """Save a model's weights in matterport's Keras-2 ``.h5`` layout, atomically.

    The file is written to a temporary file in the same folder, flushed to disk, then renamed onto ``filepath``,
    so an interrupted save never leaves a partial file under the final name (a previous file stays intact).

    Args:
        model: a built Keras 3 model.
        filepath: destination, e.g. ``logs/lesion20250101T1200/mask_rcnn_lesion_0005.h5``; folders are created.
        nested_groups: names of nested models stored as one group (matterport's ``rpn_model``); other nested
            models are stored layer by layer, as flat groups.
        dtype: store floating-point values in this dtype (e.g. ``"float16"`` for a file half the size, used for
            the bundled model); a variable whose values do not fit keeps its dtype. The loader casts back to each
            variable's dtype. None keeps the variables' dtypes.

    Returns:
        ``filepath`` as a string.

    Raises:
        ValueError: two weighted layers share a name (the groups would collide).
    """
    path = os.fspath(filepath)
    units, layer_names, _ = _walk(model, nested_groups)
    seen: dict[str, int] = {}
    for name in layer_names:
        seen[name] = seen.get(name, 0) + 1
    weighted = {u.layer.name for u in units}
    duplicated = sorted(n for n, count in seen.items() if count > 1 and n in weighted)
    if duplicated:
        raise ValueError(f"save_weights({path!r}): the model has several layers named {duplicated}; rename them "
                         "so that each weight group has a unique name.")
    unit_by_name = {u.layer.name: u for u in units}
    layer_names = list(dict.fromkeys(layer_names))

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_str_list(f, "layer_names", layer_names)
            f.attrs["backend"] = np.bytes_(keras.backend.backend().encode("utf8"))
            f.attrs["keras_version"] = np.bytes_(keras.__version__.encode("utf8"))
            for name in layer_names:
                group = f.create_group(name)
                unit = unit_by_name.get(name)
                if unit is None:
                    _write_str_list(group, "weight_names", [])
                    continue
                weight_names: list[str] = []
                for base in unit.names:
                    candidate, k = base, 1
                    while f"{candidate}:0" in weight_names:
                        candidate, k = f"{base}_{k}", k + 1
                    weight_names.append(f"{candidate}:0")
                _write_str_list(group, "weight_names", weight_names)
                for weight_name, var in zip(weight_names, unit.variables):
                    value = _to_numpy(var)
                    if dtype is not None and np.issubdtype(value.dtype, np.floating):
                        with np.errstate(over="ignore"):
                            cast = value.astype(dtype)
                        # Values out of the smaller type's range (e.g. BatchNorm variances above 65504 for
                        # float16) keep their own dtype rather than becoming infinite.
                        if np.all(np.isfinite(cast) == np.isfinite(value)):
                            value = cast
                    group.create_dataset(weight_name, data=value)
            f.flush()
    return path


def _download(url: str, dest: str, what: str, verbose: int = 1) -> str:
    """Download ``url`` to ``dest`` atomically and check the result opens as HDF5.

    Raises:
        WeightsDownloadError: network failure, short read, or a file that is not HDF5; ``dest`` is not created.
    """
    manual = (f"Download {url} by hand on a machine with internet access and put it at "
              f"{os.path.abspath(dest)}.")
    logger.info("Downloading %s from %s to %s", what, url, dest)
    if verbose:
        print(f"Downloading {what} to {dest} ...")
    try:
        with atomic_path(dest) as tmp:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise WeightsDownloadError(f"Could not download {what} from {url}: {error}. {manual}") from error
            with response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length") if response.headers else None
                total = int(length) if length and length.isdigit() else None
                progress = None
                if verbose:
                    progress = tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(dest))
                try:
                    received = 0
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress.update(len(chunk))
                except OSError as error:
                    raise WeightsDownloadError(f"Download of {what} from {url} failed after {received:,} bytes: "
                                               f"{error}. {manual}") from error
                finally:
                    if progress is not None:
                        progress.close()
            if total is not None and received != total:
                raise WeightsDownloadError(f"Download of {what} from {url} stopped at {received:,} of {total:,} "
                                           f"bytes. {manual}")
            if not h5py.is_hdf5(tmp):
                raise WeightsDownloadError(f"{url} did not give an HDF5 file ({received:,} bytes received). "
                                           f"{manual}")
    except WeightsDownloadError:
        raise
    except OSError as error:
        raise WeightsDownloadError(f"Could not save {what} to {dest}: {error}. {manual}") from error
    if verbose:
        print(f"... done downloading {what}.")
    return dest


def get_imagenet_weights(cache_dir: str | os.PathLike = "weights") -> str:
    """Path to the ImageNet ResNet-50 ``notop`` weights, downloading them once into ``cache_dir``.

    The file (fchollet/deep-learning-models v0.2) uses matterport's layer names (``conv1``, ``bn_conv1``,
    ``res2a_branch2a``, ...), so it loads into the ResNet backbone with ``load_weights(model, path)``.

    Args:
        cache_dir: folder for the file, relative to the working directory unless absolute.

    Returns:
        The local path. An existing file is returned without touching the network.

    Raises:
        WeightsDownloadError: the download failed; the message says where to put the file by hand.
    """
    dest = os.path.join(os.fspath(cache_dir), IMAGENET_WEIGHTS_FILENAME)
    if os.path.isfile(dest):
        return dest
    return _download(IMAGENET_WEIGHTS_URL, dest, "the ImageNet ResNet-50 weights", verbose=1)


def download_trained_weights(coco_model_path: str | os.PathLike, verbose: int = 1) -> str:
    """Download matterport's COCO-trained weights (release v2.0 ``mask_rcnn_coco.h5``) to ``coco_model_path``.

    Args:
        coco_model_path: destination, e.g. ``weights/mask_rcnn_coco.h5``. An existing file is kept and returned
            without touching the network.
        verbose: 0 for silence; otherwise print progress.

    Returns:
        ``coco_model_path`` as a string.

    Raises:
        WeightsDownloadError: the download failed (network, short read, not HDF5); the message says where to put
            the file by hand. Nothing is left under ``coco_model_path``.
    """
    dest = os.fspath(coco_model_path)
    if os.path.isfile(dest):
        return dest
    return _download(COCO_MODEL_URL, dest, "the COCO Mask R-CNN weights", verbose=verbose)

