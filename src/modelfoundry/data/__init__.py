"""The data stage: read, infer types, clean, split, fit the preprocessor, encode, profile."""

from .features import Encoded, Preprocessor
from .prepare import data_files, load_clean, prepare, read_frame
from .prepared import Prepared
from .sources import DataError, from_arrays

__all__ = ["DataError", "Prepared", "data_files", "prepare", "read_frame", "load_clean", "from_arrays", "Preprocessor", "Encoded"]
