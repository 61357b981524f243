"""mrcnn.dataset: the geometry helpers (outside_image, clamp_ring) and check_dataset on a data set of its own."""

from __future__ import annotations

import threading

import pytest

from mrcnn.dataset import (DataCheckError, Dataset, DatasetError, OutsideImageError, check_dataset, clamp_ring,
                           outside_image)


@pytest.mark.parametrize("extent, outside", [
    ((2, 3, 12, 8), False),  # Inside.
    ((-5, -5, 1, 1), False),  # Partly outside: 1 x 1 pixels inside.
    ((20, 0, 25, 5), True),  # Right of a 20-wide image, touching its border.
    ((-9, -9, 0, 0), True),  # Beyond a corner, touching it.
    ((0, 30, 10, 40), True),  # Below a 16-high image.
    ((0, 0, 5, 0), False),  # A line on the top border: no area, but not beyond the image.
    ((21, 3, 21, 9), True),  # A vertical line right of the image.
])
def test_outside_image(extent, outside):
    assert outside_image(*extent, 20, 16) is outside


def test_clamp_ring():
    assert clamp_ring([2, 3, 12, 3, 12, 8], 20, 16) == ([2.0, 3.0, 12.0, 3.0, 12.0, 8.0], 0)
    # (-1, 3) -> (0, 3); (25, 3) -> (20, 3); (25, 20) -> (20, 16); a vertex on the border is not moved.
    assert clamp_ring([-1, 3, 25, 3, 25, 20, 0, 16], 20, 16) == ([0.0, 3.0, 20.0, 3.0, 20.0, 16.0, 0.0, 16.0], 3)
    with pytest.raises(OutsideImageError, match=r"wholly outside the 20x16 image \(x 21 to 30, y 1 to 5\)"):
        clamp_ring([21, 1, 30, 1, 30, 5], 20, 16)


class _Listed(Dataset):
    """Images whose check result is given: None for fine, a string for a problem, an exception to raise."""

    def __init__(self, results):
        super().__init__()
        self.threads = set()
        for i, result in enumerate(results):
            self.add_image("listed", image_id=i, path=f"image_{i}.png", result=result)

    def check_image(self, image_id):
        self.threads.add(threading.get_ident())
        result = self.image_info[image_id]["result"]
        if isinstance(result, Exception):
            raise result
        return super().check_image(image_id) + ([result] if result else [])


def test_check_dataset_collects_every_problem_in_order():
    results = [None, "image_1.png: bad", None, DatasetError("image_3.png: unreadable"), "image_4.png: bad too"]
    dataset = _Listed(results * 20)
    dataset.image_info[2]["problems"] = ["image_2.png: recorded at load time"]
    check = check_dataset(dataset, workers=4)
    assert check.num_images == 100 and check.workers == 4
    assert check.bad_images == sorted([i for i in range(100) if i % 5 in (1, 3, 4)] + [2])
    assert check.lines()[:4] == ["image_1.png: bad", "image_2.png: recorded at load time", "image_3.png: unreadable",
                                 "image_4.png: bad too"]
    assert check.references[3] == "image_3.png"
    with pytest.raises(DataCheckError, match=r"^61 of 100 images cannot be used \(hint\):\n  image_1\.png: bad\n"):
        check.raise_if_bad(" (hint)")


def test_check_dataset_lets_bugs_through():
    with pytest.raises(KeyError):
        check_dataset(_Listed([None, KeyError("a bug")]))
    with pytest.raises(ValueError, match="workers"):
        check_dataset(_Listed([None]), workers=0)
    assert check_dataset(_Listed([]), workers=1).problems == {}


# ------------------------------------------------------------------------------------------------------------
# read_image_header: the displayed size without decoding, as read_image loads the image.


@pytest.mark.parametrize("name, orientation", [("up.jpg", None), ("rot6.jpg", 6), ("rot3.jpg", 3), ("plain.png", None)])
def test_read_image_header_is_the_size_read_image_gives(tmp_path, name, orientation):
    from mrcnn.dataset import ImageHeader, read_image, read_image_header
    from tests.makesense_exports import write_image

    path = write_image(str(tmp_path / name), 30, 20, orientation)
    header = read_image_header(path)
    assert (header.height, header.width) == read_image(path).shape[:2]
    assert header == ImageHeader(*((20, 30) if orientation == 6 else (30, 20)), orientation or 1)
    assert header.stored_size == (30, 20)


def test_read_image_header_names_the_file_and_the_problem(tmp_path):
    from mrcnn.dataset import ImageReadError, read_image_header

    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"bad\.png: not a readable mask \("):
        read_image_header(str(tmp_path / "bad.png"), "mask")
    with pytest.raises(ImageReadError, match=r"absent\.jpg: no such image file"):
        read_image_header(str(tmp_path / "absent.jpg"))
