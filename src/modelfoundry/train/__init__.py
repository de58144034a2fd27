"""The train stage: config -> data -> model -> loop -> evaluation -> a complete Run directory.

recipe (`train`, what `foundry train` runs), fit (`train_model`: build and fit, shared with k-fold and distillation),
cv (k-fold: it trains, so it sits here above evaluation), loop (the epoch loop on Accelerate), accel, optim, track."""

from ..core.callable import make_callable
from .accel import make_accelerator
from .fit import train_model
from .recipe import train

__all__ = ["train", "train_model", "make_accelerator"]

make_callable(__name__, train)  # modelfoundry.train(cfg), even where the package was imported first
