"""The evaluate stage: test metrics (a registry in metrics.py), baselines beside the model, and the HTML report.
(k-fold cross-validation trains models, so it lives in train/cv.py, above this stage.)"""

from . import metrics as M
from .card import write_card
from .cost import Usage
from .run import evaluate_data, evaluate_run

__all__ = ["evaluate_run", "evaluate_data", "M", "Usage", "write_card"]
