"""ModelFoundry: from raw data to an evaluated, compressed, served model with one YAML config.

The public API (`modelfoundry.train`, `.resume`, `.compress`, `.tune`, `.Predictor`, `.load_config`, `.Config`,
`.CompressConfig`, `.Run`, `.run_config`) lives in `modelfoundry.api` and is loaded on first use, so that `foundry
--help` and `import modelfoundry.core` stay fast."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelfoundry")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_API = ("Config", "ConfigError", "CompressConfig", "Predictor", "Run", "compress", "load_config", "resume",
        "run_config", "train", "tune")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        api = import_module(".api", __name__)
        # importing the stages bound the subpackages train, tune and compress here, shadowing the public functions
        # of the same names: bind every public name to its function (train and tune are callable packages too)
        globals().update({n: getattr(api, n) for n in _API})
        return globals()[name]
    raise AttributeError(f"module 'modelfoundry' has no attribute {name!r}")
