"""ModelFoundry: from raw data to an evaluated, compressed, served model with one YAML config.

The stages are plain functions in their packages (`modelfoundry.train.train`, `modelfoundry.predictor.Predictor`,
...); importing this package loads none of them, so `foundry --help` stays fast."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelfoundry")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
