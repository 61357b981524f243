"""Tests of lesion.cli: the usage error, --set overrides and --weights last shared by the lesion command lines."""

import pytest

from lesion import cli, inference, train


def test_one_usage_error_for_every_tool():
    assert inference.UsageError is train.UsageError is cli.UsageError


def test_parse_overrides_reads_literals_and_bare_words():
    assert cli.parse_overrides(["IMAGE_MAX_DIM=512", "RPN_ANCHOR_SCALES=(8, 16)", " USE_MINI_MASK = False",
                                "BACKBONE=resnet50"]) == {
        "IMAGE_MAX_DIM": 512, "RPN_ANCHOR_SCALES": (8, 16), "USE_MINI_MASK": False, "BACKBONE": "resnet50"}
    assert cli.parse_overrides(None) == {}


@pytest.mark.parametrize("pair, message", [
    ("IMAGE_MAX_DIM", "write KEY=VALUE"),
    ("=5", "write KEY=VALUE"),
    ("IMAGE_MAX_DIMS=5", "not a config attribute; did you mean IMAGE_MAX_DIM"),
    ("image_max_dim=5", "image_max_dim is not a config attribute"),
])
def test_parse_overrides_rejects_what_is_not_a_config_attribute(pair, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_overrides([pair])


def test_find_last_takes_the_runs_of_the_config_name_and_says_what_to_do(tmp_path):
    (tmp_path / "lesion_light20250101T0900").mkdir()
    (tmp_path / "lesion_light20250101T0900" / "mask_rcnn_lesion_light_0003.h5").write_bytes(b"")
    assert cli.find_last(tmp_path, "LESION_LIGHT") == str(
        tmp_path / "lesion_light20250101T0900" / "mask_rcnn_lesion_light_0003.h5")
    with pytest.raises(cli.UsageError, match=r"no checkpoint of 'lesion' under .*\. Train one first\.$"):
        cli.find_last(tmp_path, "lesion", "Train one first.")
