"""Test configuration: quiet TensorFlow, a headless matplotlib backend.

The packages are imported from the checkout: ``python -m pytest`` from the repository root puts it on the path (the
README's setup also installs it with ``pip install -e .``)."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture()
def bad_output_folder(tmp_path, monkeypatch):
    """``make(case)`` -> ``(folder, problem)``: an output folder that is a file ("a file"), lies under one ("under a
    file") or cannot be written ("not writable", simulated: root writes anyway), and the problem the command-line
    tools should report for it. The file on the way is ``tmp_path / "a_file"``."""
    import types

    from mrcnn import atomic

    def make(case: str):
        a_file = tmp_path / "a_file"
        a_file.write_text("not a folder")
        if case == "not writable":
            def denied(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(atomic, "tempfile", types.SimpleNamespace(mkstemp=denied))
        folder = {"a file": a_file, "under a file": a_file / "sub", "not writable": tmp_path / "read_only"}[case]
        problem = {"a file": "is a file, not a folder", "under a file": f"{a_file} is a file, not a folder",
                   "not writable": "the folder is not writable (Permission denied)"}[case]
        return folder, problem

    return make
