"""In front of every request: the API key, the body size limit (counted as bytes arrive, chunked or not) and the
request metrics, labelled by route template so that random paths cannot mint new series."""

from __future__ import annotations

import hmac
import time

PUBLIC = ("/healthz",)
"""Paths that never need a key (a liveness probe); everything else does when keys are set."""


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
        self.requests = Counter("foundry_requests_total", "Requests by route template and status code",
                                ["route", "status"], registry=self.registry)
        self.generate_blocked = Counter("foundry_generate_blocked_total", "Generate prompts refused by "
                                        "serve.block_prompts", registry=self.registry)
        self.generate_redactions = Counter("foundry_generate_redactions_total", "Personal data redacted from generated "
                                           "text (serve.redact_pii), by kind", ["kind"], registry=self.registry)
        self.errors = Counter("foundry_errors_total", "Requests answered with an error, by kind", ["kind"],
                              registry=self.registry)
        self.latency = Histogram("foundry_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_rows = Histogram("foundry_batch_rows", "Rows per model call", ["model"], registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def route_template(path: str, models: set[str]) -> str:
    """The route a path matches, as a template (`/v1/models/{name}/predict`), or 'other': a label per distinct
    path would grow /metrics without bound."""
    if path in ("/v1/predict", "/v1/predict/upload", "/v1/generate", "/v1/model", "/v1/models", "/healthz",
                "/readyz", "/metrics", "/docs", "/openapi.json"):
        return path
    parts = path.split("/")
    if len(parts) in (4, 5, 6) and parts[1:3] == ["v1", "models"] and parts[3] in models:
        tail = "/".join(parts[4:])
        if tail in ("", "predict", "predict/upload", "generate"):
            return "/v1/models/{name}" + ("/" + tail if tail else "")
    return "other"


class Guard:
    """API key, body size limit and request metrics, before any parsing. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware runs every request in its own task group, which cost more than the routing itself."""

    def __init__(self, app, settings, metrics: Metrics, models: set[str]):
        self.app, self.settings, self.metrics, self.models = app, settings, metrics, models
        self.keys = [k.encode() for k in sorted(settings.api_keys)]

    def _authorised(self, path: str, given: bytes) -> bool:
        if not self.keys or path in PUBLIC or (self.settings.public_metrics and path == "/metrics"):
            return True
        ok = False
        for k in self.keys:  # every key compared, in constant time
            ok |= hmac.compare_digest(given, k)
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        start = time.perf_counter()
        path = scope["path"]
        route = route_template(path, self.models)
        headers = {k: v for k, v in scope["headers"] if k in (b"x-api-key", b"content-length")}

        async def refuse(code: int, detail: str, kind: str):
            self.metrics.errors.labels(kind).inc()
            self.metrics.requests.labels(route, str(code)).inc()
            await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send)

        if not self._authorised(path, headers.get(b"x-api-key", b"")):
            return await refuse(401, "missing or wrong API key (send it in the X-API-Key header)", "auth")
        limit = self.settings.max_body_bytes
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > limit):
            return await refuse(413, f"body is {size.decode('latin-1')} bytes; the limit is {limit}", "too_large")
        body = bytearray()
        if scope["method"] in ("POST", "PUT", "PATCH"):  # read it here, counting: a chunked body has no length
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    return await refuse(413, f"body is over {limit} bytes (the limit)", "too_large")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, replay, send_status)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status[0] >= 400:
                self.metrics.errors.labels(str(status[0])).inc()
