"""The serve stage: a FastAPI service in front of one or more complete runs.

    POST /v1/predict                  records (or texts; images as base64) -> labels and probabilities, or values
    POST /v1/predict/upload           an image-only model: multipart image files
    POST /v1/generate                 a causal-LM run: a prompt -> text (streamed as Server-Sent Events on request)
    POST /v1/models/<name>/...        the same for one of several served models
    GET  /v1/model, /v1/models/<name> name, version, task, input schema, labels, test metrics
    GET  /healthz, /readyz, /metrics  liveness (no key), readiness, Prometheus metrics

Requests are batched dynamically in a bounded queue (`batcher.py`); keys, body limits and metrics sit in front of
every request (`guard.py`). One output row per input row, always: a row that cannot be predicted gets its own error.
The service loads safetensors weights and JSON through `Predictor` and never unpickles anything."""

from .app import ServeSettings, create_app, load_models
from .config import ServeConfig
from .keys import gather_keys
from .run import LOOPBACK, app_from_env, serve

__all__ = ["create_app", "ServeConfig", "ServeSettings", "load_models", "serve", "gather_keys", "app_from_env", "LOOPBACK"]
