"""The tune stage: an Optuna study over any config field (study.py; the `tune:` section in config.py)."""

from ..core.callable import make_callable
from .config import SpaceParam, TuneConfig
from .study import STORAGE_ENV, mask_url, open_storage, study_dir_for, trial_config, tune, work

__all__ = ["tune", "work", "trial_config", "open_storage", "mask_url", "study_dir_for", "STORAGE_ENV", "SpaceParam",
           "TuneConfig"]

make_callable(__name__, tune)  # modelfoundry.tune(cfg), even where the package was imported first
