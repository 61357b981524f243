"""The installable project (pyproject.toml), the public API of ``mrcnn``, and the console output helpers."""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import subprocess
import sys
import tomllib

import pytest

from mrcnn import console
from tests.cli import REPO, cli_env

with open(os.path.join(REPO, "pyproject.toml"), "rb") as _f:
    PYPROJECT = tomllib.load(_f)


def test_console_scripts_point_at_main_functions():
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == {"lesion-train", "lesion-detect", "lesion-evaluate", "lesion-train-classifier",
                            "makesense-to-coco"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert function == "main" and callable(getattr(importlib.import_module(module), function))


def test_dependencies_are_requirements_txt_and_bundled_files_are_package_data():
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["lesion.weights"]
    for name in ("mask_rcnn_lesion_light.h5", "lesion_classifier.skops"):
        assert name in data and os.path.isfile(os.path.join(REPO, "weights", name))


def test_checkout_finds_the_bundled_files():
    from lesion import classifier, inference, paths

    assert paths.in_checkout() and paths.CHECKOUT == paths.WORK_DIR
    assert inference.DEFAULT_WEIGHTS == paths.CHECKOUT / "weights" / "mask_rcnn_lesion_light.h5"
    assert classifier.CLASSIFIER_PATH == str(paths.CHECKOUT / "weights" / "lesion_classifier.skops")
    assert inference.DEFAULT_WEIGHTS.is_file() and os.path.isfile(classifier.CLASSIFIER_PATH)


def test_installed_layout_reads_package_data_and_works_in_the_current_folder(tmp_path):
    """lesion/paths.py in a copy of the package without pyproject.toml beside it (as in site-packages)."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(os.path.join(REPO, "lesion"), site / "lesion", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    code = "import lesion.paths as p; print(p.CHECKOUT, p.BUNDLED_WEIGHTS_DIR, p.WORK_DIR, sep='\\n')"
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(site)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["None", str(site / "lesion" / "weights"), str(work)]


def test_no_lesion_module_shadows_a_top_level_module():
    """`python lesion/train.py` puts lesion/ first on sys.path: a module there named like an installed top-level
    module (a `datasets` or `evaluate` package, say) would be imported instead of it."""
    lesion_dir = os.path.join(REPO, "lesion")
    path = [p for p in sys.path if os.path.abspath(p or ".") not in (lesion_dir, REPO)]
    clashes = []
    for name in sorted(f[:-3] for f in os.listdir(lesion_dir) if f.endswith(".py") and f != "__init__.py"):
        if name in sys.stdlib_module_names or importlib.machinery.PathFinder.find_spec(name, path) is not None:
            clashes.append(name)
    assert clashes == []


def test_mrcnn_exports_matterports_names_without_importing_tensorflow():
    code = ("import sys, mrcnn; assert 'tensorflow' not in sys.modules; "
            "from mrcnn import MaskRCNN, Config, utils, visualize; import mrcnn.model as modellib; "
            "assert MaskRCNN is modellib.MaskRCNN and Config is mrcnn.config.Config; "
            "assert mrcnn.build_rpn_targets is modellib.build_rpn_targets and utils.Dataset is mrcnn.Dataset; "
            "print(sorted(set(mrcnn.__all__) - set(dir(mrcnn))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=cli_env(),
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        importlib.import_module("mrcnn").nothing  # noqa: B018


# ------------------------------------------------------------------------------------------------------------
# Console output.


@pytest.mark.parametrize("line, no_driver, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", False, True),
    ("I0000 00:00:1796222627.424065    5998 port.cc:153] oneDNN custom operations are on.", False, True),
    ("W0000 00:00:1796222627.4 12 cpu_feature_guard.cc:227] This TensorFlow binary is optimized", False, True),
    ("E0000 00:00:1796222637.538791    5998 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
     "Failed call to cuInit: UNKNOWN ERROR (303)", True, True),
    # With a CUDA driver installed, a failed cuInit is a real problem.
    ("E0000 00:00:1796222637.538791    5998 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
     "Failed call to cuInit: UNKNOWN ERROR (303)", False, False),
    ("E0000 00:00:1796223043.758931    9417 util.cc:131] oneDNN supports DT_UINT8 only on platforms with AVX-512. "
     "Falling back to the default Eigen-based implementation if present.", False, True),
    ("E0000 00:00:1796223043.758931    9417 gpu_device.cc:99] Could not allocate 8.0 GiB on the GPU", True, False),
    ("F0000 00:00:1796223043.758931    9417 op.cc:12] Check failed: shape", True, False),
    ("Traceback (most recent call last):", True, False),
])
def test_tensorflow_noise_is_told_from_real_messages(line, no_driver, noise):
    assert console.is_tensorflow_noise(line, no_driver) is noise


def test_quiet_tensorflow_respects_the_users_level(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    console.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_line_progress_prints_about_ten_plain_lines():
    out = io.StringIO()
    with console.progress(total=25, desc="detect", unit="image", file=out) as bar:
        assert isinstance(bar, console.LineProgress)  # a StringIO is not a terminal
        for k in range(25):
            if k == 7:
                bar.write("error: x.jpg: broken")
            bar.update(1)
    lines = out.getvalue().splitlines()
    counts = [line.split()[1] for line in lines if line.startswith("detect: ")]
    assert counts == ["3/25", "6/25", "9/25", "12/25", "15/25", "18/25", "21/25", "24/25", "25/25"]
    assert "error: x.jpg: broken" in lines and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    quiet = io.StringIO()
    with console.progress(total=5, file=quiet, disable=True) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""


def test_keras_verbose():
    assert console.keras_verbose(quiet=True) == 0
    assert console.keras_verbose(stream=io.StringIO()) == 2

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert console.keras_verbose(stream=Terminal()) == 1
