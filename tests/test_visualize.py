"""Tests of mrcnn.visualize: every drawing function renders headless and saves a PNG."""

import matplotlib
import numpy as np
import pytest

from mrcnn import utils, visualize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = ["BG", "lesion", "ruler"]


def _scene():
    """A 60x80 grey image with two rectangular instances."""
    image = np.full((60, 80, 3), 100, dtype=np.uint8)
    masks = np.zeros((60, 80, 2), dtype=bool)
    masks[10:30, 10:40, 0] = True
    masks[35:55, 45:75, 1] = True
    return image, utils.extract_bboxes(masks), masks, np.array([1, 2]), np.array([0.98, 0.75])


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(autouse=True)
def _no_show(monkeypatch):
    """Fail if anything calls plt.show() under the non-interactive test backend."""
    import matplotlib.pyplot as plt

    if not visualize.is_interactive_backend():
        monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() called on a headless backend"))


@pytest.mark.parametrize("env, backend", [
    ({}, "agg"),  # no display, no MPLBACKEND: the module picks Agg
    ({"MPLBACKEND": "svg"}, "svg"),  # the user's choice is kept
    ({"DISPLAY": ":99"}, None),  # a display: matplotlib's own choice, not forced to Agg by the module
])
def test_backend_selection_in_a_fresh_process(env, backend):
    # In a child process: this one has MPLBACKEND set by conftest and pyplot imported already.
    import subprocess
    import sys

    from tests.cli import cli_env

    child_env = {k: v for k, v in cli_env().items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    code = ("import matplotlib, sys; import mrcnn.visualize as v; "
            "print(matplotlib.rcParams._get_backend_or_none() or 'unset', 'matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env={**child_env, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    chosen, pyplot_imported = done.stdout.split()
    assert pyplot_imported == "True"
    if backend is None:
        assert chosen.lower() != "agg" or not sys.platform.startswith("linux")
    else:
        assert chosen.lower() == backend


def test_random_colors():
    colors = visualize.random_colors(5)
    assert len(colors) == 5 and len(set(colors)) == 5
    assert all(0 <= c <= 1 for color in colors for c in color)


def test_apply_mask_blends_inside_only():
    image = np.zeros((4, 4, 3), dtype=np.float64)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.0), alpha=0.5)
    assert out is image
    np.testing.assert_allclose(out[1:3, 1:3, 0], 127.5)
    assert out[0].sum() == 0 and out[:, 0].sum() == 0 and out[..., 1:].sum() == 0


def test_display_instances_saves_png(tmp_path):
    image, boxes, masks, class_ids, scores = _scene()
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores, title="t",
                                     figsize=(4, 4))
    path = tmp_path / "instances.png"
    ax.figure.savefig(path)
    _assert_png(path)


def test_display_instances_on_given_axes_and_no_instances(tmp_path):
    from matplotlib.figure import Figure

    image, _, _, _, _ = _scene()
    fig = Figure(figsize=(3, 3))
    ax = fig.subplots()
    returned = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((60, 80, 0), bool),
                                           np.zeros(0, int), CLASS_NAMES, ax=ax)
    assert returned is ax
    fig.savefig(tmp_path / "empty.png")
    _assert_png(tmp_path / "empty.png")


def test_display_differences_saves_png(tmp_path):
    image, boxes, masks, class_ids, scores = _scene()
    ax = visualize.display_differences(image, boxes, class_ids, masks, boxes[:1], class_ids[:1], scores[:1],
                                       masks[..., :1], CLASS_NAMES)
    ax.figure.savefig(tmp_path / "diff.png")
    _assert_png(tmp_path / "diff.png")


def test_draw_boxes_saves_png(tmp_path):
    image, boxes, masks, _, _ = _scene()
    ax = visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 1, masks=masks,
                              captions=["a", "b"], visibilities=[2, 0], title="boxes")
    ax.figure.savefig(tmp_path / "boxes.png")
    _assert_png(tmp_path / "boxes.png")


def test_draw_rois_saves_png(tmp_path):
    image, boxes, _, _, _ = _scene()
    ax = visualize.draw_rois(image, boxes, boxes + 2, np.ones((2, 28, 28), np.float32), np.array([1, 0]),
                             CLASS_NAMES)
    ax.figure.savefig(tmp_path / "rois.png")
    _assert_png(tmp_path / "rois.png")


def test_display_top_masks_and_images_save_png(tmp_path):
    image, _, masks, class_ids, _ = _scene()
    fig = visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=2)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "top.png")
    _assert_png(tmp_path / "top.png")
    fig = visualize.display_images([image, image[..., 0]], titles=["rgb", "grey"], cols=2)
    fig.savefig(tmp_path / "images.png")
    _assert_png(tmp_path / "images.png")


def test_plot_precision_recall_and_overlaps_save_png(tmp_path):
    image, boxes, masks, class_ids, scores = _scene()
    ap, precisions, recalls, overlaps = utils.compute_ap(boxes, class_ids, masks, boxes, class_ids, scores,
                                                         masks)
    ax = visualize.plot_precision_recall(ap, precisions, recalls)
    ax.figure.savefig(tmp_path / "pr.png")
    _assert_png(tmp_path / "pr.png")
    ax = visualize.plot_overlaps(class_ids, class_ids, scores, overlaps, CLASS_NAMES)
    ax.figure.savefig(tmp_path / "overlaps.png")
    _assert_png(tmp_path / "overlaps.png")


def test_draw_box_in_place():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (5, 5, 15, 15), (255, 0, 0))
    assert out is image
    assert image[5, 10, 0] == 255 and image[10, 10].sum() == 0


def test_draw_instances_cv2_changes_pixels_inside_boxes_only():
    image, boxes, masks, class_ids, scores = _scene()
    out = visualize.draw_instances_cv2(image, boxes, masks, class_ids, CLASS_NAMES, scores)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (image == 100).all()  # The input is not modified.
    changed = np.any(out != image, axis=-1)
    inside = masks.any(axis=-1)  # Here each box is exactly its rectangular mask.
    assert changed.any()
    assert not changed[~inside].any()
    for y1, x1, y2, x2 in boxes:
        # The box outline: its four edges are drawn.
        assert changed[y1, x1:x2].all() and changed[y2 - 1, x1:x2].all()
        assert changed[y1:y2, x1].all() and changed[y1:y2, x2 - 1].all()


def test_draw_instances_cv2_greyscale_and_no_masks():
    grey = np.full((30, 30), 50, dtype=np.uint8)
    out = visualize.draw_instances_cv2(grey, np.array([[5, 5, 25, 25]]), None, np.array([1]), CLASS_NAMES)
    assert out.shape == (30, 30, 3)
    changed = np.any(out != 50, axis=-1)
    assert changed[5:25, 5:25].any() and not changed[:5].any() and not changed[25:].any()
    assert not changed[:, :5].any() and not changed[:, 25:].any()
