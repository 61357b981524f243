"""Package attributes imported on first use (PEP 562), so importing a package stays cheap (no TensorFlow).

Example (a package's ``__init__.py``)::

    _NAMES = {"MaskRCNN": "mrcnn.model"}
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _NAMES, submodules=("utils",))
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, MutableMapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: MutableMapping[str, Any], names: Mapping[str, str],
                 submodules: Sequence[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's name (``__name__``).
        namespace: the package's ``globals()``; a name is stored there once imported.
        names: public name -> the module that defines it.
        submodules: submodules given as attributes (``package.<name>``).
    """
    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names) | set(submodules))

    return __getattr__, __dir__
