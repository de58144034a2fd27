"""The FastAPI application: routes per served model, the input schema from each run, validation and answers."""

import asyncio
import base64
import binascii
import json
from pathlib import Path
from typing import Any

from ..core.spec import GENERATIVE_TASKS
from ..data.pii import OutputGuard
from ..predictor import Predictor
from .batcher import Batcher, QueueFull
from .config import ServeConfig
from .guard import Guard, Metrics
from .keys import check_keys


class ServeSettings(ServeConfig):
    """The `serve:` section plus what never goes in a config file: the API keys."""

    api_keys: set[str] = set()


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
        found = [path / "model" / f for f in ("weights.safetensors", "model.onnx", "model.safetensors", "model.keras")]
        if (path / "model").is_dir() and not any(f.exists() for f in found):
            others = sorted(p.name for p in (path / "model").iterdir())
            raise ValueError(f"{r}: model/ has no weights.safetensors, model.safetensors (an aligned run), model.keras "
                             f"(a keras run) or model.onnx (found {others}); only these are served")
        pred = Predictor.load(path, backend=backend)
        if pred.task == "mlm":
            raise ValueError(f"{r}: a masked-LM pretraining run has nothing to serve (no predictions, no generation); "
                             "fine-tune it (model.path: <run>/model) and serve that run")
        if pred.task == "knowledge_tracing":
            raise ValueError(f"{r}: a knowledge-tracing run reads a student's whole answer history, not one row; "
                             "trace it with `foundry predict RUN answers.csv` or Predictor.trace")
        if pred.task not in GENERATIVE_TASKS and pred.preprocessor.data.sequence is not None:
            raise ValueError(f"{r}: a sequence-window run (data.sequence) answers per window of a series, which one "
                             "request of rows does not carry; predict files with `foundry predict` instead")
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
    from pydantic import ConfigDict, Field, create_model

    image = (str, Field(..., description="the image file's bytes, base64 (a data: URL is fine)"))
    audio = (str, Field(..., description="the audio file's bytes (WAV, FLAC, OGG, MP3), base64 (a data: URL is fine)"))
    kinds = {"numeric": (float | None, None), "binary": (float | str | bool | None, None),
             "datetime": (str | None, None), "categorical": (str | int | float | bool | None, None),
             "text": (str, ...), "pair": (str, ...), "image": image, "audio": audio,
             "sequence": (list[float] | None, None), "smiles": (str, Field(..., description="a molecule as SMILES"))}
    fields = {c: kinds.get(k, (Any, None)) for c, k in _input_columns(pred).items()}
    id_col = pred.preprocessor.data.id_column
    if id_col:
        fields[id_col] = (str | int | None, None)
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return create_model(f"{safe}_record", __config__=ConfigDict(extra="forbid"), **fields)


def _file_bytes(value: str, row: int, col: str, kind: str) -> bytes:
    from fastapi import HTTPException

    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, [{"loc": ["body", row, col], "msg": f"expected the {kind} file's bytes as base64; "
                                   "file paths are not read by the server", "type": "value_error"}]) from None


def _rows(rows: list, pred: Predictor) -> list[dict]:
    """FastAPI-validated rows (record models, or plain strings for a single-text model) as plain records; images
    and audio decoded from base64 into bytes (a client never names a file on the server)."""
    from fastapi import HTTPException

    inputs = _input_columns(pred)
    text_cols = [c for c, k in inputs.items() if k == "text"]
    file_cols = {c: k for c, k in inputs.items() if k in ("image", "audio")}
    records = []
    for i, item in enumerate(rows):
        if isinstance(item, str):
            if len(inputs) != 1 or len(text_cols) != 1:
                raise HTTPException(422, [{"loc": ["body", i], "msg": f"a plain string needs a model with one text "
                                           f"input; this one takes {sorted(inputs)}", "type": "value_error"}])
            records.append({text_cols[0]: item})
        else:
            record = item.model_dump()
            for c, kind in file_cols.items():
                record[c] = _file_bytes(record[c], i, c, kind)
            records.append(record)
    return records


def _model_info(name: str, pred: Predictor) -> dict:
    m = pred.run.manifest()
    metrics_file = pred.run.path / "metrics.json"
    test = json.loads(metrics_file.read_text()).get("test") if metrics_file.exists() else None
    return {"name": name, "version": pred.run.path.name, "task": pred.task,
            "inputs": _input_columns(pred) if pred.task not in GENERATIVE_TASKS else {"prompt": "text"},
            "labels": pred.classes, "metrics": test, "created": m.get("created"),
            "run": f"{pred.run.path.parent.name}/{pred.run.path.name}"}  # a name, never a server path


def create_app(models: dict[str, Predictor], settings: ServeSettings | None = None):
    """The service for `models` (name -> Predictor; the first is the default). Over ~80 lines on purpose: FastAPI
    routes are closures over the batchers, the settings and the metrics, and read best in the order they serve."""
    # deferred: FastAPI and prometheus_client are the `serve` extra; the root config imports this package's section
    from contextlib import asynccontextmanager
    from typing import Annotated

    from fastapi import Body, FastAPI, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from pydantic import BaseModel, Field

    settings = settings or ServeSettings()
    settings.api_keys = check_keys(sorted(settings.api_keys), "api_keys")  # an empty key would match no header
    metrics = Metrics()
    output_guard = OutputGuard(settings.redact_pii, settings.block_prompts)
    batchers: dict[str, Batcher] = {}
    one_at_a_time: dict[str, asyncio.Lock] = {}  # per model: a generation or an explanation uses every core
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        for name, pred in models.items():
            if pred.task in GENERATIVE_TASKS:
                one_at_a_time[name] = asyncio.Lock()
            else:
                batchers[name] = Batcher(pred, settings, metrics, name)
                batchers[name].start()
                one_at_a_time[name] = asyncio.Lock()  # explanations: one at a time per model, they use every core
        state["ready"] = True
        yield
        state["ready"] = False
        for b in batchers.values():  # queued requests are answered before shutdown
            await b.stop()

    default = next(iter(models))
    app = FastAPI(title="ModelFoundry", version="1", lifespan=lifespan,
                  description=f"Serving: {', '.join(models)}. POST a JSON list of records (or texts) to predict."
                              + (" Send the API key in the X-API-Key header." if settings.api_keys else ""))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        """422 naming row and field; the offending input is echoed as text (NaN and infinity are not JSON)."""
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
                   **({"input": repr(e["input"])[:200]} if "input" in e else {})} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_middleware(Guard, settings=settings, metrics=metrics, models=set(models))

    async def run_batch(name: str, records: list[dict]) -> list[dict]:
        try:
            return await asyncio.wait_for(batchers[name].submit(records), settings.timeout_s)
        except QueueFull as exc:
            raise HTTPException(503, f"{exc}; retry shortly", headers={"Retry-After": "1"}) from None
        except TimeoutError:
            raise HTTPException(504, f"prediction took longer than {settings.timeout_s} s") from None
        except ValueError as exc:  # the preprocessor refused a value of this request's rows
            raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None

    class GenerateRequest(BaseModel):
        prompt: str = Field(min_length=1)
        max_new_tokens: int = Field(64, ge=1, le=settings.max_new_tokens)
        temperature: float = Field(0.0, ge=0.0, le=5.0)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        top_k: int = Field(0, ge=0)
        """Sample from the k likeliest tokens (0 = off)."""
        repetition_penalty: float = Field(1.0, ge=1.0, le=10.0)
        seed: int = 0
        stream: bool = False
        """Answer as Server-Sent Events: `data: {"text": piece}` as the response grows, then `data: {"done": ...}`."""

    def routes_for(name: str):
        pred = models[name]
        if pred.task in GENERATIVE_TASKS:
            async def generate(req: GenerateRequest):
                kw = {"max_new_tokens": req.max_new_tokens, "temperature": req.temperature, "top_p": req.top_p,
                      "top_k": req.top_k, "repetition_penalty": req.repetition_penalty, "seed": req.seed}
                try:
                    pred.prompt_ids([req.prompt])
                except ValueError as exc:
                    raise HTTPException(422, [{"loc": ["body", "prompt"], "msg": str(exc), "type": "value_error"}]) from None
                hit = output_guard.blocked(req.prompt)
                if hit is not None:
                    metrics.generate_blocked.inc()
                    raise HTTPException(400, f"prompt refused: it matches the block list (serve.block_prompts: {hit!r})")
                loop = asyncio.get_running_loop()
                if not req.stream or settings.redact_pii:  # redaction needs the whole text: one piece, then done
                    async with one_at_a_time[name]:  # one generation at a time per model: it uses every core
                        text = await asyncio.wait_for(loop.run_in_executor(None, lambda: pred.generate(req.prompt, **kw)[0]),
                                                      settings.timeout_s)
                    text, kinds = output_guard.clean(text)
                    for k in kinds:
                        metrics.generate_redactions.labels(kind=k).inc()
                    if req.stream:
                        whole = json.dumps({"text": text}, ensure_ascii=False)
                        done = json.dumps({"done": True, "text": text}, ensure_ascii=False)
                        return StreamingResponse(iter([f"data: {whole}\n\n", f"data: {done}\n\n"]),
                                                 media_type="text/event-stream")
                    return {"model": name, "version": pred.run.path.name, "text": text}
                pieces: asyncio.Queue = asyncio.Queue()

                def work() -> None:
                    try:
                        pred.generate_stream(req.prompt, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t), **kw)
                    finally:
                        loop.call_soon_threadsafe(pieces.put_nowait, None)

                async def events():
                    async with one_at_a_time[name]:
                        job = loop.run_in_executor(None, work)
                        parts = []
                        while (piece := await pieces.get()) is not None:
                            parts.append(piece)
                            yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
                        await job
                        yield f"data: {json.dumps({'done': True, 'text': ''.join(parts)}, ensure_ascii=False)}\n\n"

                return StreamingResponse(events(), media_type="text/event-stream")

            return {"generate": generate}
        if pred.task == "recommend":
            class RecommendRequest(BaseModel):
                user: str | int | float = Field(description="a user id as in the training data")
                k: int = Field(10, ge=1, le=settings.max_rows)
                exclude_seen: bool = True
                """Leave out the items the user interacted with in training."""

            async def recommend(req: RecommendRequest) -> dict:
                loop = asyncio.get_running_loop()
                top = await loop.run_in_executor(None, lambda: pred.recommend(req.user, req.k, req.exclude_seen))
                cold = bool(top["cold_start"].iloc[0]) if len(top) else pred.preprocessor.user(req.user) == 0
                return {"model": name, "version": pred.run.path.name, "user": req.user, "cold_start": cold,
                        **({"note": "user not seen in training: the most popular items"} if cold else {}),
                        "items": [{"item": i, "score": round(float(s), 6)} for i, s in zip(top["item"], top["score"])]}

            return {"recommend": recommend}

        if pred.task == "forecast":
            fc = pred.preprocessor.fc
            History = Annotated[list[dict[str, Any]], Body(  # noqa: N806
                min_length=1, description=f"Rows of history like the training data's ({fc.time_column}, "
                f"{fc.series_column or 'one series'}, {pred.preprocessor.target}, exogenous columns); the last "
                f"{fc.context} steps of each series are read")]

            async def forecast(history: History) -> dict:
                if len(history) > settings.max_rows:
                    raise HTTPException(413, f"{len(history)} rows; the limit per request is {settings.max_rows}")
                import pandas as pd

                loop = asyncio.get_running_loop()
                try:
                    out = await loop.run_in_executor(None, lambda: pred.forecast(pd.DataFrame(history)))
                except ValueError as exc:  # a DataError too: an unknown series, a missing column, unparsable times
                    raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
                return {"model": name, "version": pred.run.path.name, "horizon": fc.horizon,
                        "forecast": json.loads(out.to_json(orient="records", date_format="iso", force_ascii=False))}

            forecast.__annotations__ = {"history": History, "return": dict}
            return {"forecast": forecast}

        takes_text = any(k == "text" for k in _input_columns(pred).values())
        record = _record_model(name, pred)
        item = record | str if takes_text else record
        Rows = Annotated[list[item], Body(min_length=1, description=f"Rows to predict with {name}; "  # noqa: N806
                                                "plain strings for a single-text model")]

        async def predict(rows: Rows) -> dict:
            if len(rows) > settings.max_rows:
                raise HTTPException(413, f"{len(rows)} rows; the limit per request is {settings.max_rows}")
            return {"model": name, "version": pred.run.path.name, "predictions": await run_batch(name, _rows(rows, pred))}

        predict.__annotations__ = {"rows": Rows, "return": dict}  # FastAPI must see the per-model body type itself
        out = {"predict": predict}
        inputs = _input_columns(pred)
        if pred.backend == "torch" and pred.preprocessor.data.sequence is None:
            async def explain(rows: Rows) -> dict:
                if len(rows) > settings.max_explain_rows:
                    raise HTTPException(413, f"{len(rows)} rows; explanations take at most {settings.max_explain_rows} "
                                             "per request (each costs hundreds of predictions)")
                records = _rows(rows, pred)
                loop = asyncio.get_running_loop()
                try:
                    async with one_at_a_time[name]:
                        items = await asyncio.wait_for(loop.run_in_executor(None, lambda: pred.explain(records)),
                                                       settings.timeout_s)
                except TimeoutError:
                    raise HTTPException(504, f"explaining took longer than {settings.timeout_s} s") from None
                except ValueError as exc:
                    raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
                return {"model": name, "version": pred.run.path.name, "explanations": items}

            explain.__annotations__ = {"rows": Rows, "return": dict}
            out["explain"] = explain
        if list(inputs.values()) in (["image"], ["audio"]):  # an image- or audio-only model also takes file uploads
            column = next(iter(inputs))

            async def upload(files: list[UploadFile]) -> dict:
                if len(files) > settings.max_rows:
                    raise HTTPException(413, f"{len(files)} files; the limit per request is {settings.max_rows}")
                records = [{column: await f.read()} for f in files]
                return {"model": name, "version": pred.run.path.name, "predictions": await run_batch(name, records)}

            out["upload"] = upload
        return out

    def add_routes(prefix: str, name: str, label: str) -> None:
        routes = routes_for(name)
        if "generate" in routes:
            app.post(f"{prefix}/generate", summary=f"Generate with {label}")(routes["generate"])
        if "recommend" in routes:
            app.post(f"{prefix}/recommend", summary=f"Top items for a user from {label}")(routes["recommend"])
        if "forecast" in routes:
            app.post(f"{prefix}/forecast", summary=f"The next steps of each series in a history, from {label}")(
                routes["forecast"])
        if "predict" in routes:
            app.post(f"{prefix}/predict", summary=f"Predict with {label}")(routes["predict"])
        if "explain" in routes:
            app.post(f"{prefix}/explain", summary=f"Explain {label}'s predictions (SHAP per column, Integrated "
                                                  "Gradients per token)")(routes["explain"])
        if "upload" in routes:
            app.post(f"{prefix}/predict/upload", summary=f"Predict uploaded image or audio files with {label}")(routes["upload"])

    def info_for(name: str):
        async def info() -> dict:
            return _model_info(name, models[name])
        return info

    for name in models:
        add_routes(f"/v1/models/{name}", name, name)
        app.get(f"/v1/models/{name}", summary=f"About {name}")(info_for(name))
    add_routes("/v1", default, f"the default model ({default})")

    @app.get("/v1/model", summary="About the default model")
    async def default_info() -> dict:
        return _model_info(default, models[default])

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
