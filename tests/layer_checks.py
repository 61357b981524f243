"""One check for every custom layer: config round trip, output dtypes and shapes, graph and functional use.

In the spirit of Keras's ``testing.TestCase.run_layer_test``: :func:`check_layer` calls the layer eagerly on
concrete inputs, then checks that

- ``get_config`` holds every named argument of the layer's ``__init__``, with the value the layer was built
  with, and survives ``keras.layers.serialize`` -> JSON -> ``keras.layers.deserialize`` and
  ``from_config`` unchanged, and the rebuilt layer (given the original's weights) gives the same outputs;
- the outputs have the expected dtypes and shapes;
- the layer traced in a ``tf.function`` whose input signature leaves the batch axes unknown gives the same
  outputs;
- the layer in a functional ``keras.Model`` on symbolic inputs has the static output shapes it promises and the
  same outputs, and so does that model rebuilt from its own config.
"""

from __future__ import annotations

import inspect
import json

import keras
import numpy as np
import tensorflow as tf


def _flat(outputs):
    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


def _assert_same(got, want, what, atol):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, not {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{what}: output {i} has shape {g.shape}, not {w.shape}"
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=0, atol=atol,
                                   err_msg=f"{what}: output {i} differs")


def _unbatched(x):
    """The shape of ``x`` with its first (batch) axis unknown."""
    return (None,) + tuple(x.shape[1:])


def _init_arguments(cls) -> list[str]:
    """The named arguments of ``cls.__init__`` (not ``*args`` / ``**kwargs``)."""
    return [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_layer(layer: keras.layers.Layer, inputs, kwargs=None, *, expected_shapes, expected_dtypes,
                expected_static_shapes=None, call_kwargs=None, atol: float = 0.0):
    """Run the checks of the module docstring on ``layer`` and return its eager outputs (flattened NumPy list).

    Args:
        layer: an unbuilt (or built) layer.
        inputs: the positional arguments of ``layer``: arrays, or (nested) lists of arrays such as a feature
            pyramid. Every array's first axis is taken as a batch axis that the layer must accept unknown.
        kwargs: keyword tensor arguments of ``layer`` (arrays), treated like ``inputs``.
        call_kwargs: keyword arguments of every call that are not tensors (``training=True``).
        expected_shapes: the shape of each output (flattened in ``keras.tree`` order) on these inputs.
        expected_dtypes: the dtype name of each output.
        expected_static_shapes: the static shape of each output when the inputs' batch axes are unknown (``None``
            for an axis the layer cannot know); by default ``expected_shapes`` with the first axis ``None``.
        atol: the largest difference allowed between outputs of the same computation run differently (0: equal).
    """
    kwargs = dict(kwargs or {})
    call_kwargs = dict(call_kwargs or {})
    to_tensor = lambda x: tf.constant(x)  # noqa: E731
    inputs = keras.tree.map_structure(to_tensor, list(inputs))
    kwargs = keras.tree.map_structure(to_tensor, kwargs)
    name = type(layer).__name__
    expected_shapes = [tuple(s) for s in expected_shapes]
    expected_dtypes = list(expected_dtypes)
    if expected_static_shapes is None:
        expected_static_shapes = [(None,) + s[1:] for s in expected_shapes]
    expected_static_shapes = [tuple(s) for s in expected_static_shapes]

    # Eager call: shapes and dtypes.
    eager = layer(*inputs, **kwargs, **call_kwargs)
    flat = keras.tree.flatten(eager)
    assert [tuple(o.shape) for o in flat] == expected_shapes, f"{name}: output shapes {[o.shape for o in flat]}"
    assert [keras.backend.standardize_dtype(o.dtype) for o in flat] == expected_dtypes, (
        f"{name}: output dtypes {[o.dtype for o in flat]}")

    # Config round trip, through JSON as in a saved model.
    config = layer.get_config()
    for argument in _init_arguments(type(layer)):
        assert argument in config, f"{name}: get_config() misses the argument {argument!r}"
    assert type(layer).from_config(config).get_config() == config, f"{name}: from_config(get_config()) differs"
    revived = keras.layers.deserialize(json.loads(json.dumps(keras.layers.serialize(layer))))
    assert type(revived) is type(layer), f"{name}: deserialized as {type(revived).__name__}"
    assert revived.get_config() == config, f"{name}: the config changed through serialization"
    for argument in _init_arguments(type(layer)):
        if hasattr(layer, argument):
            assert getattr(revived, argument) == getattr(layer, argument), (
                f"{name}: {argument} is {getattr(revived, argument)!r} after the round trip, not "
                f"{getattr(layer, argument)!r}")
    revived(*inputs, **kwargs, **call_kwargs)  # builds its weights
    assert len(revived.weights) == len(layer.weights), f"{name}: the rebuilt layer has other weights"
    revived.set_weights(layer.get_weights())
    _assert_same(revived(*inputs, **kwargs, **call_kwargs), eager, f"{name} from its config", atol)

    # Traced, with the batch axes unknown.
    signature = keras.tree.map_structure(lambda x: tf.TensorSpec(_unbatched(x), x.dtype), (inputs, kwargs))
    traced = tf.function(lambda args, kw: layer(*args, **kw, **call_kwargs), input_signature=list(signature))
    _assert_same(traced(inputs, kwargs), eager, f"{name} in a tf.function", atol)

    # Functional model on symbolic inputs.
    symbolic = keras.tree.map_structure(lambda x: keras.Input(batch_shape=_unbatched(x), dtype=x.dtype.name),
                                        (inputs, kwargs))
    sym_out = layer(*symbolic[0], **symbolic[1], **call_kwargs)
    sym_flat = keras.tree.flatten(sym_out)
    assert [tuple(o.shape) for o in sym_flat] == expected_static_shapes, (
        f"{name}: static output shapes {[o.shape for o in sym_flat]}")
    assert [keras.backend.standardize_dtype(o.dtype) for o in sym_flat] == expected_dtypes, (
        f"{name}: symbolic output dtypes {[o.dtype for o in sym_flat]}")
    model = keras.Model(keras.tree.flatten(symbolic), sym_out)
    concrete = keras.tree.flatten((inputs, kwargs))
    _assert_same(model(concrete), eager, f"{name} in a functional model", atol)
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    _assert_same(rebuilt(concrete), eager, f"{name} in a functional model rebuilt from its config", atol)
    return _flat(eager)
