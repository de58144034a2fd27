"""The serve stage: a FastAPI service in front of one or more complete runs.

    POST /v1/predict                  records (or texts) -> labels and probabilities, or values
    POST /v1/models/<name>/predict    the same for one of several served models
    GET  /v1/model, /v1/models/<name> name, version, task, input schema, labels, test metrics
    GET  /healthz, /readyz, /metrics  liveness, readiness, Prometheus metrics

Requests are batched dynamically: each waits in an asyncio queue up to `max_wait_ms` so that up to
`max_batch` rows run through the model at once, off the event loop (one inference thread per model, which
is what a CPU-bound model wants). API keys travel in the `X-API-Key` header and are compared in constant
time. Bodies over the size limit get 413, invalid rows 422 naming the field, slow requests 504. The service
loads safetensors weights and JSON through `Predictor` and never unpickles anything."""

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..predictor import Predictor

__all__ = ["create_app", "ServeSettings", "load_models"]

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class ServeSettings:
    api_keys: set[str] = field(default_factory=set)
    max_batch: int = 64
    """Rows per model call (dynamic batching); text is cut into length-sorted sub-batches inside the call."""
    max_wait_ms: float = 5.0
    """How long a request waits for others to fill its batch; 0 disables batching."""
    max_rows: int = 1000
    """Rows per request."""
    max_body_bytes: int = 1_000_000
    timeout_s: float = 30.0


def load_models(runs: list[str | Path], allowed_root: str | Path | None = None, backend: str = "auto"
                ) -> dict[str, Predictor]:
    """name -> Predictor for each complete run; a run outside `allowed_root` is refused. backend: torch, onnx
    (model/model.onnx from `foundry compress`, run by ONNX Runtime), or auto (torch where the run has torch weights)."""
    models: dict[str, Predictor] = {}
    root = Path(allowed_root).resolve() if allowed_root else None
    for r in runs:
        path = Path(r).resolve()
        if root is not None and not path.is_relative_to(root):
            raise ValueError(f"{r}: outside the allowed root {root}; refusing to serve it")
        if not path.is_dir():
            raise ValueError(f"{r}: no such run directory")
        weights = path / "model" / "weights.safetensors"
        if (path / "model").is_dir() and not weights.exists() and not (path / "model" / "model.onnx").exists():
            others = sorted(p.name for p in (path / "model").iterdir())
            raise ValueError(f"{r}: model/ has no weights.safetensors or model.onnx (found {others}); only safetensors "
                             "weights and ONNX models are served")
        pred = Predictor.load(path, backend=backend)
        if pred.task == "causal_lm":
            raise ValueError(f"{r}: a causal-LM run; `foundry generate` serves it, not /v1/predict")
        name = pred.run.manifest().get("name") or path.parent.name
        if name in models:
            name = f"{name}-{path.name}"
        models[name] = pred
    if not models:
        raise ValueError("foundry serve: give at least one run directory")
    return models


def _input_columns(pred: Predictor) -> dict[str, str]:
    pre = pred.preprocessor
    return {c: k for c, k in pre.schema.items() if k not in ("ignore",) and c != pre.target}


def _record_model(name: str, pred: Predictor):
    """A pydantic model of one input row, from the run's schema: the OpenAPI document shows real fields."""
    from pydantic import ConfigDict, create_model

    kinds = {"numeric": (float | None, None), "binary": (float | str | bool | None, None),
             "datetime": (str | None, None), "categorical": (str | int | float | bool | None, None),
             "text": (str, ...), "pair": (str, ...), "image": (str, ...), "sequence": (list[float] | None, None)}
    fields = {c: kinds.get(k, (Any, None)) for c, k in _input_columns(pred).items()}
    id_col = pred.preprocessor.data.id_column
    if id_col:
        fields[id_col] = (str | int | None, None)
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return create_model(f"{safe}_record", __config__=ConfigDict(extra="forbid"), **fields)


class Batcher:
    """One model's queue: requests are gathered into batches of up to max_batch rows, waiting at most
    max_wait_ms for company, and predicted on a dedicated thread."""

    def __init__(self, pred: Predictor, settings: ServeSettings, metrics):
        self.pred, self.settings, self.metrics = pred, settings, metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foundry-infer")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            await self.queue.put(None)  # finish what is queued, then stop
            await self.task
        self.pool.shutdown(wait=True)

    async def submit(self, records: list[dict]) -> list[dict]:
        """Answers for `records` (one dict per row), computed in whichever batch they join."""
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((records, fut))
        return await fut

    def _predict(self, records: list[dict]) -> list[dict]:
        """On the inference thread: the batch's frame, the model call and the answers. The event loop keeps
        only HTTP and validation, so requests keep arriving while the model runs."""
        return _answer(self.pred, self.pred.predict(pd.DataFrame(records)))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.queue.get()
            if item is None:
                return
            items, rows = [item], len(item[0])
            deadline = loop.time() + self.settings.max_wait_ms / 1000
            stop = False
            while rows < self.settings.max_batch and self.settings.max_wait_ms > 0:
                if self.queue.empty():
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), timeout)
                    except TimeoutError:
                        break
                else:  # already waiting: take it without a timer
                    nxt = self.queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
                rows += len(nxt[0])
            self.metrics.batch_rows.labels(self.pred.run.path.parent.name).observe(rows)
            try:
                out = await loop.run_in_executor(self.pool, self._predict, [r for records, _ in items for r in records])
                start = 0
                for records, fut in items:
                    if not fut.done():
                        fut.set_result(out[start: start + len(records)])
                    start += len(records)
            except Exception as exc:  # one bad batch answers each of its requests with the error
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
            if stop:
                return


class Metrics:
    def __init__(self):
        import gc

        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            ProcessCollector,
        )

        self.registry = CollectorRegistry()
        GCCollector(registry=self.registry)  # python_gc_collections_total: full collections are what make a tail
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process
        Gauge("foundry_gc_frozen_objects", "Objects exempt from the cyclic garbage collector (frozen after the "
              "models loaded)", registry=self.registry).set_function(gc.get_freeze_count)
        self.requests = Counter("foundry_requests_total", "Requests by route and status code", ["route", "status"],
                                registry=self.registry)
        self.errors = Counter("foundry_errors_total", "Requests answered with an error, by kind", ["kind"],
                              registry=self.registry)
        self.latency = Histogram("foundry_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_rows = Histogram("foundry_batch_rows", "Rows per model call", ["model"], registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def _rows(rows: list, pred: Predictor) -> list[dict]:
    """FastAPI-validated rows (record models, or plain strings for a single-text model) as plain records."""
    from fastapi import HTTPException

    inputs = _input_columns(pred)
    text_cols = [c for c, k in inputs.items() if k == "text"]
    records = []
    for i, item in enumerate(rows):
        if isinstance(item, str):
            if len(inputs) != 1 or len(text_cols) != 1:
                raise HTTPException(422, [{"loc": ["body", i], "msg": f"a plain string needs a model with one text "
                                           f"input; this one takes {sorted(inputs)}", "type": "value_error"}])
            records.append({text_cols[0]: item})
        else:
            records.append(item.model_dump())
    return records


def _answer(pred: Predictor, out: pd.DataFrame) -> list[dict]:
    """One answer per row, built from whole columns (a row-wise DataFrame walk cost more than a batch-1 model call)."""
    id_col = pred.preprocessor.data.id_column
    ids = out[id_col].tolist() if id_col and id_col in out.columns else None
    if pred.task == "classification":
        names = [str(c) for c in pred.classes]
        probs = out[[f"prob_{c}" for c in pred.classes]].to_numpy(dtype=float).tolist()
        answers = [{"label": label, "probabilities": dict(zip(names, p))}
                   for label, p in zip(out["prediction"].tolist(), probs)]
    else:
        answers = [{"value": v} for v in out["prediction"].to_numpy(dtype=float).tolist()]
    if ids is not None:
        answers = [{id_col: i, **a} for i, a in zip(ids, answers)]
    return answers


def _model_info(name: str, pred: Predictor) -> dict:
    import json

    m = pred.run.manifest()
    metrics_file = pred.run.path / "metrics.json"
    test = json.loads(metrics_file.read_text()).get("test") if metrics_file.exists() else None
    return {"name": name, "version": pred.run.path.name, "task": pred.task, "inputs": _input_columns(pred),
            "labels": pred.classes, "metrics": test, "created": m.get("created"), "run": str(pred.run.path)}


class Guard:
    """API key, body size limit and request metrics, before any parsing. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware runs every request in its own task group, which cost more than the routing itself."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        start = time.perf_counter()
        path = scope["path"]
        route = path if path.startswith("/v1/") else path[:32]
        headers = {k: v for k, v in scope["headers"] if k in (b"x-api-key", b"content-length")}

        async def refuse(code: int, detail: str, kind: str):
            self.metrics.errors.labels(kind).inc()
            self.metrics.requests.labels(route, str(code)).inc()
            await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send)

        if self.settings.api_keys and path.startswith("/v1/"):
            given = headers.get(b"x-api-key", b"")
            if not any(hmac.compare_digest(given, k.encode()) for k in self.settings.api_keys):
                return await refuse(401, "missing or wrong API key (send it in the X-API-Key header)", "auth")
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.settings.max_body_bytes):
            return await refuse(413, f"body is {size.decode('latin-1')} bytes; the limit is "
                                     f"{self.settings.max_body_bytes}", "too_large")
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status[0] >= 400:
                self.metrics.errors.labels(str(status[0])).inc()


def create_app(models: dict[str, Predictor], settings: ServeSettings | None = None):
    from contextlib import asynccontextmanager
    from typing import Annotated

    from fastapi import Body, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    settings = settings or ServeSettings()
    metrics = Metrics()
    batchers: dict[str, Batcher] = {}
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        for name, pred in models.items():
            batchers[name] = Batcher(pred, settings, metrics)
            batchers[name].start()
        state["ready"] = True
        yield
        state["ready"] = False
        for b in batchers.values():  # queued requests are answered before shutdown
            await b.stop()

    default = next(iter(models))
    app = FastAPI(title="ModelFoundry", version="1", lifespan=lifespan,
                  description=f"Serving: {', '.join(models)}. POST a JSON list of records (or texts) to predict."
                              + (" Send the API key in the X-API-Key header." if settings.api_keys else ""))

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        """422 naming row and field; the offending input is echoed as text (NaN and infinity are not JSON)."""
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
                   **({"input": repr(e["input"])[:200]} if "input" in e else {})} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    record_models = {name: _record_model(name, pred) for name, pred in models.items()}

    def endpoint_for(name: str):
        pred = models[name]
        takes_text = any(k == "text" for k in _input_columns(pred).values())
        item = record_models[name] | str if takes_text else record_models[name]
        Rows = Annotated[list[item], Body(min_length=1, description=f"Rows to predict with {name}; "  # noqa: N806
                                                "plain strings for a single-text model")]

        async def predict(rows: Rows) -> dict:
            if len(rows) > settings.max_rows:
                raise HTTPException(413, f"{len(rows)} rows; the limit per request is {settings.max_rows}")
            records = _rows(rows, pred)
            try:
                answers = await asyncio.wait_for(batchers[name].submit(records), settings.timeout_s)
            except TimeoutError:
                raise HTTPException(504, f"prediction took longer than {settings.timeout_s} s") from None
            except ValueError as exc:  # the preprocessor refused a value (an unreadable image, say)
                raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
            return {"model": name, "version": pred.run.path.name, "predictions": answers}

        # this module postpones annotations; FastAPI must see the per-model body type itself
        predict.__annotations__ = {"rows": Rows, "return": dict}

        async def info() -> dict:
            return _model_info(name, pred)

        return predict, info

    for name in models:
        predict, info = endpoint_for(name)
        app.post(f"/v1/models/{name}/predict", summary=f"Predict with {name}")(predict)
        app.get(f"/v1/models/{name}", summary=f"About {name}")(info)
    predict, info = endpoint_for(default)
    app.post("/v1/predict", summary=f"Predict with the default model ({default})")(predict)
    app.get("/v1/model", summary="About the default model")(info)

    @app.get("/v1/models", summary="Served models")
    async def listing() -> dict:
        return {"models": list(models), "default": default}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready", "models": list(models)}

    @app.get("/metrics")
    async def prom() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _dedicate_process() -> None:
    """For a process that only serves, once its models are loaded: freeze what is alive (models, libraries) out of
    the cyclic garbage collector. A full collection walked every object in the process and, every ~3 s under load,
    doubled one batch's latency (int8 MiniLM at 64 clients: p99 305 -> 192 ms; p50 the same). New objects are
    collected as before."""
    import gc

    gc.collect()
    gc.freeze()


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000, api_keys: set[str] | None = None,
          allowed_root: str | None = None, settings: ServeSettings | None = None, backend: str = "auto",
          workers: int = 1) -> None:
    """Run the service. With workers > 1, uvicorn starts that many processes sharing the port, each with its own
    copy of the models and cores / workers threads."""
    import json
    import os

    import uvicorn

    settings = settings or ServeSettings()
    settings.api_keys = set(api_keys or ())
    if host not in LOOPBACK and not settings.api_keys:
        raise ValueError(f"--host {host} is reachable from other machines: give --api-key KEY or --api-keys-file FILE "
                         "(clients send it as X-API-Key)")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers == 1:
        app = create_app(load_models(runs, allowed_root, backend), settings)
        _dedicate_process()
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)
        return
    load_models(runs, allowed_root, backend)  # refuse bad runs here, once, before any worker starts
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ[_ENV] = json.dumps({"runs": [str(r) for r in runs], "allowed_root": allowed_root, "backend": backend,
                                   "threads": threads, "settings": {**settings.__dict__,
                                                                    "api_keys": sorted(settings.api_keys)}})
    uvicorn.run("modelfoundry.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", timeout_graceful_shutdown=30)


_ENV = "FOUNDRY_SERVE_WORKER"


def app_from_env():
    """The app of one uvicorn worker process (`serve(..., workers=N)`), from the settings its parent left."""
    import json
    import os

    import torch

    spec = json.loads(os.environ[_ENV])
    torch.set_num_threads(spec["threads"])
    settings = ServeSettings(**{**spec["settings"], "api_keys": set(spec["settings"]["api_keys"])})
    app = create_app(load_models(spec["runs"], spec["allowed_root"], spec["backend"]), settings)
    _dedicate_process()
    return app
