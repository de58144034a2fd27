"""A stage package that can be called like its main function: `modelfoundry.train(cfg)` is both the package
`modelfoundry.train` and the function `train`, since Python binds a loaded subpackage to its parent's attribute
of the same name (which would otherwise shadow the public function)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable


def make_callable(module_name: str, fn: Callable) -> None:
    """Calling the module `module_name` calls `fn`."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    CallableModule.__call__.__doc__ = fn.__doc__
    sys.modules[module_name].__class__ = CallableModule
