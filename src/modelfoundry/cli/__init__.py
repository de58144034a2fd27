"""The `foundry` command (main.py), one module per verb."""

from .errors import EXIT_BAD_INPUT, EXTRAS, missing_extra
from .main import build_parser, main, run

__all__ = ["main", "run", "build_parser", "EXIT_BAD_INPUT", "EXTRAS", "missing_extra"]
