"""`python -m modelfoundry.cli`: the same as `foundry`."""

from .main import run

run()
