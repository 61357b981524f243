"""3x3 convolutions by Winograd's minimal filtering algorithm F(4x4, 3x3) (Lavin & Gray, 2016).

A stride-1 "same" 3x3 convolution computes each 4 x 4 block of outputs from a 6 x 6 block of inputs. Transformed
into Winograd's domain (``B^T d B`` for the input tile, ``G g G^T`` for the kernel), the block is 36 independent
products summed over input channels, that is 36 matrix products [tiles, C] x [C, K] for the whole map, and the
inverse transform ``A^T m A`` turns them back into the 4 x 4 outputs: 36 multiplications per 16 outputs instead of
144, 4x fewer. The transforms are additions, run as XLA-compiled functions; the matrix product is oneDNN's.

On the 2-core CPU of ``benchmarks/README.md``, in float32, this runs the RPN's 3x3 convolution on P2 (256 -> 512
channels) 1.9-2.2x faster than TensorFlow's direct convolution, the FPN's 1.8-2.4x, and the mask head's (100 ROIs
of 14 x 14, in chunks of 32) 1.26-1.35x; it loses on single maps under 64 x 64, where the transforms cost more than the
multiplications saved, and gains too little on narrow layers (see :func:`suits`). The result differs from the
direct convolution by rounding only, about 2e-5 of the largest output in float32; in bfloat16 the transforms'
rounding makes that about 0.1, so only float32 uses it.

Shapes: ``x`` [N, H, W, C] (channels last, any N), ``kernel`` [3, 3, C, K] -> [N, H, W, K].
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

__all__ = ["conv3x3", "suits", "chunk_for", "MIN_PIXELS", "MIN_CHANNELS", "CHUNK"]

# Interpolation points 0, 1, -1, 2, -2 and infinity.
_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)  # input transform, [6, 6]
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float64)  # kernel transform, [6, 3]
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)  # output transform, [4, 6]
_OUT = 4  # outputs per tile side
_IN = 6  # inputs per tile side

# Measured on 2 CPU cores in float32: maps under 64 x 64 run faster as direct convolutions; 128-channel layers
# gain 1.2x on their own but nothing in a whole detect (the light config: 0.043 s either way), where XLA's
# runtime costs 0.17 GB of memory; 256-channel layers (the FPN, the RPN, ResNet stage 4) gain 1.6-2.2x.
MIN_PIXELS = 64 * 64
MIN_CHANNELS = 256
# A batch of small maps (the mask head's 14 x 14 ROIs, their number known only at run time) runs CHUNK maps per
# call, the remainder by the direct convolution: one call on 32 ROIs of 14 x 14 x 256 gained 1.35x, on 16 1.06x,
# and lost on 8 or fewer.
CHUNK = 32
# Winograd-domain products per band of tile rows (see conv3x3): small enough to stay out of the peak memory,
# large enough for full-speed matrix products.
BAND_BYTES = 32 << 20


def suits(input_shape, filters: int, dtype, roi_batch: bool = False) -> bool:
    """Whether :func:`conv3x3` (with ``chunk=chunk_for(input_shape)``) is the faster way to run this 3x3
    convolution: float32, at least ``MIN_CHANNELS`` channels in and out, and either maps of at least
    ``MIN_PIXELS``, or a batch of smaller maps of which ``CHUNK`` make ``MIN_PIXELS``, if the batch holds at least
    ``CHUNK`` maps, or is a batch of ROIs of unknown size (``roi_batch``: the mask head's).

    Args:
        input_shape: static shape [N, H, W, C] (N may be None; H and W must be known).
        filters: output channels K.
        dtype: the computation's dtype; only float32 qualifies.
        roi_batch: the batch axis holds ROIs, usually many (an unknown N then counts as many).
    """
    n, h, w, c = input_shape
    if h is None or w is None or c is None or tf.as_dtype(dtype) != tf.float32:
        return False
    if c < MIN_CHANNELS or filters < MIN_CHANNELS:
        return False
    if h * w >= MIN_PIXELS:
        return True
    return h * w * CHUNK >= MIN_PIXELS and (n >= CHUNK if n is not None else roi_batch)


def chunk_for(input_shape):
    """``chunk`` for :func:`conv3x3` on ``input_shape``: ``CHUNK`` for maps under ``MIN_PIXELS``, else None."""
    return CHUNK if input_shape[1] * input_shape[2] < MIN_PIXELS else None


def _combine(matrix: np.ndarray, parts: list) -> list:
    """``matrix @ parts`` for a list of tensors: one tensor per row, the zero terms skipped."""
    rows = []
    for coefficients in matrix:
        total = None
        for c, part in zip(coefficients, parts):
            if c == 0:
                continue
            term = part if c == 1 else -part if c == -1 else part * float(c)
            total = term if total is None else total + term
        rows.append(total)
    return rows


def _taps(x, axis: int, tiles: int) -> list:
    """The 6 strided views along ``axis``: view k holds element ``4 t + k`` of tile t (t < ``tiles``)."""
    views = []
    for k in range(_IN):
        index = [slice(None)] * x.shape.rank
        index[axis] = slice(k, k + _OUT * tiles, _OUT)
        views.append(x[tuple(index)])
    return views


def _tiles(size: int) -> int:
    return -(-size // _OUT)


def _transform_input_rows(padded):
    """[N, 4 th + 2, W', C] (padded) -> 6 x [N, th, W', C]: ``B^T`` applied down the rows of every tile (stride 4)."""
    return tuple(_combine(_BT, _taps(padded, 1, (padded.shape[1] - 2) // _OUT)))


def _transform_input_columns(*rows):
    """6 x [N, th, 4 tw + 2, C] -> 36 x [N * th * tw, C]: ``B`` applied along the columns, completing ``B^T d B``
    of every 6 x 6 tile; product (i, j) of a tile is output ``6 i + j``.

    The two halves run as two compiled functions, with the 6 row sums stored in between: fused into one, XLA
    recomputes the row sums for every output and ran 2.6x slower (38.7 vs 14.8 ms for a 256 x 256 x 256 map).
    Separate outputs, not one stacked tensor, for the same reason (7.6 vs 10.7 ms for 100 x 18 x 18 x 256).
    """
    tw, c = (rows[0].shape[2] - 2) // _OUT, rows[0].shape[3]
    return tuple(tf.reshape(u, (-1, c)) for r in rows for u in _combine(_BT, _taps(r, 2, tw)))


def _transform_kernel(kernel):
    """[3, 3, C, K] -> 36 x [C, K]: ``G g G^T`` for every (input, output) channel pair, row-major (a, b)."""
    rows = _combine(_G, [kernel[i] for i in range(3)])  # 6 x [3, C, K]
    return tuple(u for r in rows for u in _combine(_G, [r[j] for j in range(3)]))


def _transform_output(bias, *m, th: int, tw: int, relu: bool):
    """36 x [N * th * tw, K] -> [N, 4 th, 4 tw, K]: ``A^T m A`` of every tile, tiles put back in place, plus
    ``bias`` [K] and then ReLU if ``relu`` (in the same pass)."""
    k = m[0].shape[-1]
    h, w = _OUT * th, _OUT * tw
    m = [tf.reshape(u, (-1, th, tw, k)) for u in m]
    # Row a of a tile's outputs: sum over i of A^T[a, i] * products (i, j), for each column j.
    rows = [_combine(_AT, [m[_IN * i + j] for i in range(_IN)]) for j in range(_IN)]  # [j][a]
    # Output (4 t + a, 4 s + b) is row a, column b of tile (t, s): stack to [N, th, 4, tw, 4, K], then merge.
    y = tf.stack([tf.stack(_combine(_AT, [rows[j][a] for j in range(_IN)]), axis=3) for a in range(_OUT)],
                 axis=2) + bias
    return tf.reshape(tf.nn.relu(y) if relu else y, (-1, h, w, k))


_COMPILED = {}


def _xla(fn, *xs, **static):
    """``fn(*xs, **static)`` compiled by XLA, with one function per input signature, so that each traces once
    (one tf.function retraced for every shape would warn about excessive retracing; so would lambdas, which
    share their code)."""
    key = (fn.__name__, tuple((tuple(x.shape), x.dtype) for x in xs), tuple(sorted(static.items())))
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(functools.partial(fn, **static), jit_compile=True, autograph=False)
    return _COMPILED[key](*xs)


def conv3x3(x, kernel, bias=None, relu: bool = False, band_bytes: int = BAND_BYTES, chunk: int | None = None):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` by Winograd F(4x4, 3x3), plus ``bias`` and ReLU if asked (added
    by the output transform, which saves a pass over the output).

    The map is computed in bands of tile rows, one after the other, each band's products (36 values per tile
    and output channel) about ``band_bytes`` for one image (at least one tile row). The whole map's would be
    2.25x the output (300 MB for the RPN on P2 at 1024 px) and its transformed input 2.25x the input, all at
    once; a band's are small and reused.

    With ``chunk``, the batch (whose size may be known only at run time) runs ``chunk`` images per call, one
    call after the other, and the last ``N mod chunk`` images by the direct convolution: every compiled
    function then has one static shape however many images come, and small maps make enough tiles per call.

    Args:
        x: [N, H, W, C] float32; H and W static (any size: the last tiles are padded).
        kernel: [3, 3, C, K] float32 (a tensor or a variable).
        bias: [K] float32, or None.
        relu: whether to apply ReLU (after the bias).
        band_bytes: about the most bytes of products per band and image.
        chunk: images per call, or None for the whole batch in one (N may still be unknown; each new N then
            compiles its own functions).

    Returns:
        [N, H, W, K] float32.
    """
    x, kernel = tf.convert_to_tensor(x), tf.convert_to_tensor(kernel)  # Keras variables are not traceable
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None or tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(f"conv3x3 needs a static height and width and a 3x3 kernel, got input {x.shape} and "
                         f"kernel {kernel.shape}")
    u = _xla(_transform_kernel, kernel)  # 36 x [C, K]
    bias = tf.zeros(kernel.shape[-1:], x.dtype) if bias is None else tf.convert_to_tensor(bias, x.dtype)
    if chunk is None:
        return _conv_bands(x, u, bias, relu, band_bytes)
    return _conv_chunks(x, kernel, u, bias, relu, int(chunk), band_bytes)


def _conv_bands(x, u, bias, relu: bool, band_bytes: int):
    """The convolution of ``x`` with the transformed kernel ``u`` (plus bias, ReLU), in bands of tile rows."""
    h, w = x.shape[1], x.shape[2]
    th, tw, k = _tiles(h), _tiles(w), int(u[0].shape[-1])
    # Bands of equal height (one compiled shape), as many as make about band_bytes each: the last one may reach
    # into extra padding.
    bands = max(1, int(_IN * _IN * th * tw * k * x.dtype.size / band_bytes + 0.5))
    band = -(-th // min(bands, th))  # tile rows per band
    bands = -(-th // band)
    # One pixel of "same" padding on each side, plus what completes the last tiles and the last band.
    padded = tf.pad(x, [[0, 0], [1, _OUT * band * bands - h + 1], [1, _OUT * tw - w + 1], [0, 0]])
    outputs = []
    for i in range(bands):
        # Band i's tiles read padded rows 4 t0 .. 4 t1 + 1. Each band starts when the previous one is done.
        t0, t1 = i * band, (i + 1) * band
        with tf.control_dependencies(outputs[-1:]):
            rows = _xla(_transform_input_rows, padded[:, _OUT * t0:_OUT * t1 + 2])  # 6 x [N, band, W', C]
        v = _xla(_transform_input_columns, *rows)  # 36 x [N * tiles, C]
        # 36 products [tiles, C] x [C, K]; as separate matrices they ran as fast as one batched product.
        m = [tf.matmul(a, b) for a, b in zip(v, u)]
        outputs.append(_xla(_transform_output, bias, *m, th=band, tw=tw, relu=relu))  # [N, 4 band, 4 tw, K]
    y = tf.concat(outputs, axis=1) if bands > 1 else outputs[0]
    return y[:, :h, :w]


def _conv_chunks(x, kernel, u, bias, relu: bool, chunk: int, band_bytes: int):
    """The convolution of ``x``, ``chunk`` images per Winograd call, the remainder direct; the results are
    gathered in a TensorArray and copied into one tensor once."""
    _, h, w, c = x.shape
    k = int(kernel.shape[-1])
    n = tf.shape(x)[0]
    count = n // chunk

    def step(i, results):
        xs = tf.ensure_shape(x[i * chunk:(i + 1) * chunk], (chunk, h, w, c))
        return i + 1, results.write(i, _conv_bands(xs, u, bias, relu, band_bytes))

    def direct():  # the rest, if any (some CPU convolution kernels fail on an empty batch)
        y = tf.nn.conv2d(x[count * chunk:], kernel, 1, "SAME") + bias
        return tf.nn.relu(y) if relu else y

    results = tf.TensorArray(x.dtype, size=count + 1, infer_shape=False, element_shape=(None, h, w, k))
    _, results = tf.while_loop(lambda i, _: i < count, step, (0, results), parallel_iterations=1)
    rest = tf.cond(count * chunk < n, direct, lambda: tf.zeros((0, h, w, k), x.dtype))
    return tf.ensure_shape(results.write(count, rest).concat(), (None, h, w, k))
