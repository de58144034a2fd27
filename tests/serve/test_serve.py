"""The HTTP service: predictions, model info, health, metrics, dynamic batching, API keys, limits, bad input,
several models, graceful shutdown, and a property-based fuzz of /v1/predict (no 500s)."""

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from modelfoundry.config import load_config
from modelfoundry.serve import ServeSettings, create_app, load_models
from modelfoundry.train import train

from ..conftest import SAMPLE, cli_env, tiny_config


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    from ..conftest import tabular_frame

    d = tmp_path_factory.mktemp("serve")
    tabular_frame().to_csv(d / "t.csv", index=False)
    return train(load_config(tiny_config(d, {"path": str(d / "t.csv"), "target": "label"}, name="churn",
                                         train={"epochs": 3}))).path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-text")
    return train(load_config(tiny_config(d, {"path": str(SAMPLE), "target": "category",
                                             "text": {"vocab_size": 300, "min_frequency": 1}}, name="intents",
                                         train={"epochs": 3}))).path


ROW = {"x1": 0.5, "x2": -1.0, "colour": "red"}


def _client(runs, **kw):
    return TestClient(create_app(load_models(runs), ServeSettings(**kw)))


def test_predict_model_info_health_and_metrics(table_run):
    with _client([table_run]) as c:
        r = c.post("/v1/predict", json=[ROW, {**ROW, "colour": "blue"}])
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == 2 and preds[0]["label"] in {"yes", "no"}
        assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-5
        # the same Predictor as `foundry predict`
        from modelfoundry.predictor import Predictor

        local = Predictor.load(table_run).predict([ROW])
        assert preds[0]["probabilities"]["yes"] == pytest.approx(float(local["prob_yes"][0]), abs=1e-6)
        info = c.get("/v1/model").json()
        assert info["name"] == "churn" and info["labels"] == ["no", "yes"] and info["inputs"]["colour"] == "categorical"
        assert "accuracy" in info["metrics"]
        assert c.get("/healthz").json() == {"status": "ok"} and c.get("/readyz").json()["status"] == "ready"
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert {"x1", "x2", "colour"} <= set(schema["churn_record"]["properties"])  # the real input schema
        text = c.get("/metrics").text
        assert 'foundry_requests_total{route="/v1/predict",status="200"}' in text
        assert "foundry_request_seconds_bucket" in text and "foundry_batch_rows_bucket" in text


def test_texts_and_several_models_in_one_process(table_run, text_run):
    with _client([text_run, table_run]) as c:
        assert c.get("/v1/models").json() == {"models": ["intents", "churn"], "default": "intents"}
        r = c.post("/v1/predict", json=["where is my card?", "cancel my transfer"])
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        r = c.post("/v1/models/churn/predict", json=[ROW])
        assert r.status_code == 200 and r.json()["model"] == "churn"
        assert c.post("/v1/models/churn/predict", json=["plain text"]).status_code == 422


def test_dynamic_batching_groups_concurrent_requests(table_run):
    import httpx

    app = create_app(load_models([table_run]), ServeSettings(max_batch=64, max_wait_ms=50))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(*[c.post("/v1/predict", json=[ROW]) for _ in range(16)])
                metrics = (await c.get("/metrics")).text
        return rs, metrics

    rs, metrics = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("foundry_batch_rows_count")))
    assert count < 16  # 16 one-row requests went through fewer model calls


def test_bad_requests_get_clear_errors_never_500(table_run):
    with _client([table_run], max_rows=5, max_body_bytes=2000) as c:
        r = c.post("/v1/predict", content=b"[{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = c.post("/v1/predict", json=[{"x1": 0.5, "colour": "red", "x2": "abc"}])
        assert r.status_code == 422 and "x2" in r.text  # the field is named
        r = c.post("/v1/predict", json=[{**ROW, "extra": 1}])
        assert r.status_code == 422 and "extra" in r.text
        assert c.post("/v1/predict", json=[]).status_code == 422
        assert c.post("/v1/predict", json={"x1": 1}).status_code == 422
        assert c.post("/v1/predict", json=[ROW] * 6).status_code == 413  # more rows than allowed
        assert c.post("/v1/predict", content=b"[" + b" " * 3000 + b"]",
                      headers={"content-type": "application/json"}).status_code == 413
        missing = c.post("/v1/predict", json=[{"x1": 0.5, "x2": 1.0}])  # colour may be missing: imputed
        assert missing.status_code == 200


def test_a_request_past_its_timeout_gets_504_and_the_server_goes_on(table_run):
    with _client([table_run], timeout_s=1e-6) as c:  # no model call finishes in a microsecond
        r = c.post("/v1/predict", json=[ROW])
        assert r.status_code == 504 and "longer than 1e-06 s" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
        assert 'foundry_errors_total{kind="504"} 1.0' in c.get("/metrics").text
    with _client([table_run]) as c:  # the same run, a sane timeout
        assert c.post("/v1/predict", json=[ROW]).status_code == 200


KEY, OTHER = "s3cret-s3cret-s3cret", "other-other-other-key"


def test_api_keys(table_run, tmp_path):
    with _client([table_run], api_keys={KEY, OTHER}) as c:
        assert c.post("/v1/predict", json=[ROW]).status_code == 401
        assert c.post("/v1/predict", json=[ROW], headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", json=[ROW], headers={"X-API-Key": KEY}).status_code == 200
        info = c.get("/v1/model", headers={"X-API-Key": OTHER})
        assert info.status_code == 200 and info.json()["run"] == f"churn/{table_run.name}"  # a name, not a path
        assert str(table_run.parent) not in info.text
        assert c.get("/healthz").status_code == 200  # the liveness probe needs no key
        for path in ("/metrics", "/docs", "/openapi.json", "/readyz", "/v1/models", "/nowhere"):
            assert c.get(path).status_code == 401, path  # keyed by default
        assert c.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    with _client([table_run], api_keys={KEY}, public_metrics=True) as c:
        assert c.get("/metrics").status_code == 200 and c.get("/readyz").status_code == 401
    from modelfoundry.serve import gather_keys, serve

    with pytest.raises(ValueError, match="reachable from other machines: give --api-keys-file"):
        serve([str(table_run)], host="0.0.0.0")
    for bad, what in [("", "empty"), ("   ", "empty"), ("short", "5 characters")]:
        with pytest.raises(ValueError, match=f"API key 1 of 1 is {what}; keys need 16"):
            serve([str(table_run)], host="0.0.0.0", api_keys={bad})
        with pytest.raises(ValueError, match=f"is {what}"):
            create_app(load_models([table_run]), ServeSettings(api_keys={bad}))
        with pytest.raises(ValueError, match=f"--api-key: API key 1 of 1 is {what}"):
            gather_keys([bad], environ={})
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# ours\n{KEY}\n\n")
    assert gather_keys(None, str(keys_file), environ={"FOUNDRY_API_KEYS": f"{OTHER},"}) == {KEY, OTHER}
    assert gather_keys(None, str(keys_file), environ={"FOUNDRY_API_KEYS": OTHER}) == {KEY, OTHER}
    with pytest.raises(ValueError, match="FOUNDRY_API_KEYS: API key 1 of 1 is empty"):
        gather_keys(None, None, environ={"FOUNDRY_API_KEYS": ""})


def test_refused_runs(table_run, tmp_path):
    with pytest.raises(ValueError, match="outside the allowed root"):
        load_models([table_run], allowed_root=tmp_path)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(table_run, broken)
    (broken / "model" / "weights.safetensors").rename(broken / "model" / "weights.pt")
    with pytest.raises(ValueError, match="no weights.safetensors, model.safetensors .*weights.pt"):
        load_models([broken])
    running = tmp_path / "running"
    shutil.copytree(table_run, running)
    manifest = json.loads((running / "manifest.json").read_text())
    (running / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with pytest.raises(ValueError, match="not 'complete'; finish it first: `foundry train --resume "):
        load_models([running])
    (running / "manifest.json").write_text(json.dumps({**manifest, "status": "failed", "error": "DataError: bad"}))
    with pytest.raises(ValueError, match=r"'failed', not 'complete' \(DataError: bad\); start a new run, or fix"):
        load_models([running])


@pytest.mark.slow
def test_fuzz_predict_never_answers_500(table_run):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                       st.lists(st.integers(), max_size=3))
    rows = st.one_of(st.dictionaries(st.sampled_from(["x1", "x2", "colour", "zzz"]), values, max_size=4), values)
    bodies = st.one_of(st.lists(rows, max_size=4), values, st.dictionaries(st.text(max_size=5), values, max_size=2))
    with _client([table_run]) as c:
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(bodies)
        def check(body):
            r = c.post("/v1/predict", content=json.dumps(body, allow_nan=True).encode(),
                       headers={"content-type": "application/json"})
            assert r.status_code < 500, (body, r.text)

        check()


@contextlib.contextmanager
def serving(*args: str):
    """A real `foundry serve ARGS` process on a free port, ready; yields (port, process), then SIGTERM."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "serve", *args, "--port", str(port)],
                         env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield port, p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.out, p.err = p.communicate(timeout=60)


@pytest.mark.slow
def test_foundry_serve_process_and_graceful_shutdown(table_run):
    import httpx

    with serving(str(table_run)) as (port, p):
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=[ROW], timeout=10)
        assert r.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        frozen = [ln for ln in metrics.splitlines() if ln.startswith("foundry_gc_frozen_objects ")]
        assert frozen and float(frozen[0].split()[1]) > 10_000  # the loaded models and libraries, out of the GC
        assert 'python_gc_collections_total{generation="2"}' in metrics and "process_resident_memory_bytes" in metrics
    # uvicorn drains, shuts the app down (our batchers answer what is queued), then re-raises the signal
    assert p.returncode in (0, -signal.SIGTERM), p.err
    assert "Application shutdown complete" in p.err and "Finished server process" in p.err


@pytest.fixture(scope="module")
def onnx_run(table_run):
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    return compress(table_run, CompressConfig(quantize="int8", latency_calls=3)).path


def test_onnx_backend(table_run, onnx_run):
    rows = [ROW, {**ROW, "x1": -2.0}]
    with _client([table_run]) as torch_c, _client([onnx_run]) as onnx_c:
        a = torch_c.post("/v1/predict", json=rows).json()["predictions"]
        b = onnx_c.post("/v1/predict", json=rows).json()["predictions"]
        assert [p["label"] for p in a] == [p["label"] for p in b]
        assert abs(a[1]["probabilities"]["yes"] - b[1]["probabilities"]["yes"]) < 0.05
        assert onnx_c.get("/v1/model").json()["name"] == "churn-int8"
    with pytest.raises(ValueError, match="ONNX model only"):
        load_models([onnx_run], backend="torch")
    with pytest.raises(ValueError, match="no model/model.onnx"):
        load_models([table_run], backend="onnx")


@pytest.mark.slow
def test_two_worker_processes_share_the_port(onnx_run):
    import httpx

    with serving(str(onnx_run), "--backend", "onnx", "--workers", "2") as (port, p):
        codes = [httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=[ROW], timeout=10).status_code
                 for _ in range(20)]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert float(next(ln for ln in metrics.splitlines() if ln.startswith("foundry_gc_frozen_objects ")).split()[1]) > 0
    assert codes == [200] * 20
    assert p.err.count("Started server process") >= 2, p.err


async def _asgi(app, fn):
    import httpx

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await fn(c)


def test_chunked_body_over_the_limit_gets_413(table_run):
    app = create_app(load_models([table_run]), ServeSettings(max_body_bytes=200_000))

    async def chunks():
        for _ in range(160):  # 10 MB in 64 kB chunks, no Content-Length
            yield b" " * 65_536

    async def go(c):
        r = await c.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
        ok = await c.post("/v1/predict", json=[ROW])
        return r, ok

    r, ok = asyncio.run(_asgi(app, go))
    assert r.status_code == 413 and "over 200000 bytes" in r.text
    assert ok.status_code == 200


@pytest.mark.slow
def test_random_paths_do_not_grow_metrics(table_run):
    import random
    import string

    app = create_app(load_models([table_run]), ServeSettings())

    async def go(c):
        await c.get("/nowhere")
        await c.get("/metrics")  # the scrape's own series exist from here on
        before = (await c.get("/metrics")).text
        for _ in range(10_000):
            await c.get("/" + "".join(random.choices(string.ascii_letters, k=12)))
        after = (await c.get("/metrics")).text
        return before, after

    before, after = asyncio.run(_asgi(app, go))
    series = [ln.split(" ")[0] for ln in after.splitlines() if ln.startswith("foundry_")]
    assert [ln.split(" ")[0] for ln in before.splitlines() if ln.startswith("foundry_")] == series
    assert 'route="other",status="404"' in after and abs(len(after) - len(before)) < 300


def test_a_full_queue_answers_503_with_retry_after(table_run):
    app = create_app(load_models([table_run]), ServeSettings(max_queue_rows=3, max_wait_ms=300))

    async def go(c):
        return await asyncio.gather(*[c.post("/v1/predict", json=[ROW, ROW]) for _ in range(3)])

    rs = asyncio.run(_asgi(app, go))
    codes = sorted(r.status_code for r in rs)
    assert codes[0] == 200 and 503 in codes
    refused = next(r for r in rs if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and "the queue holds 3" in refused.text


@pytest.fixture(scope="module")
def image_csv(tmp_path_factory):
    """Digits as PNG files in a table with a numeric and a categorical column beside the image."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    rows = []
    for i in range(240):
        path = d / f"{i}.png"
        Image.fromarray((digits.images[i] * 16).astype(np.uint8)).save(path)
        rows.append({"image": str(path), "ink": float(digits.images[i].sum()), "pen": int(i % 3), "label": digits.target[i]})
    pd.DataFrame(rows).to_csv(d / "digits.csv", index=False)
    return d / "digits.csv"


def _image_run(tmp_path, csv, bad_images: str):
    data = {"path": str(csv), "target": "label", "image": {"size": [8, 8], "channels": 1}, "bad_images": bad_images,
            "types": {"pen": "categorical"}}
    return train(load_config(tiny_config(tmp_path, data, name=f"digits-{bad_images}",
                                         model={"type": "cnn", "channels": [8], "hidden": [16]}, train={"epochs": 2}))).path


@pytest.mark.parametrize("bad_images", ["skip", "error"])
def test_sixteen_concurrent_clients_each_get_exactly_their_own_answers(tmp_path, image_csv, bad_images):
    """Distinct rows from 16 clients at once, some with unreadable images, some with float categories and nulls
    beside them: every answer equals offline predict of that client's rows alone, and bad rows get their own
    errors (per row under bad_images: skip; the client's own 422, naming its own row, under error)."""
    import base64

    import pandas as pd

    from modelfoundry.predictor import Predictor

    run = _image_run(tmp_path, image_csv, bad_images)
    frame = pd.read_csv(image_csv)
    b64 = [base64.b64encode(open(p, "rb").read()).decode() for p in frame["image"]]
    broken = base64.b64encode(b"not an image at all").decode()
    clients = []
    for k in range(16):
        rows = [{"image": b64[k * 3 + j], "ink": float(frame.ink[k * 3 + j]), "pen": int(frame.pen[k * 3 + j])}
                for j in range(3)]
        if k % 4 == 1:
            rows[2]["image"] = broken  # an unreadable image at the client's row 2
        if k % 4 == 2:
            rows.append({"image": b64[100 + k], "ink": None, "pen": 2.5})  # a float category and a null
        clients.append(rows)
    offline = Predictor.load(run)

    def expected(rows):
        records = [{**r, "image": base64.b64decode(r["image"])} for r in rows]
        try:
            return offline.predict(pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object)
                                                 for c in records[0]}))
        except ValueError as exc:
            return exc

    app = create_app(load_models([run]), ServeSettings(max_batch=64, max_wait_ms=50))

    async def go(c):
        return await asyncio.gather(*[c.post("/v1/predict", json=rows) for rows in clients])

    responses = asyncio.run(_asgi(app, go))
    for k, (rows, r) in enumerate(zip(clients, responses)):
        want = expected(rows)
        if isinstance(want, ValueError):  # bad_images: error, this client's unreadable image
            assert r.status_code == 422 and "unreadable image at row 3:" in r.text, r.text  # its own row 3
            continue
        assert r.status_code == 200, (k, r.text)
        got = r.json()["predictions"]
        assert len(got) == len(rows)
        for i, answer in enumerate(got):
            if "error" in want.columns and isinstance(want["error"][i], str):
                assert answer == {"error": want["error"][i]}
            else:
                assert answer["label"] == want["prediction"][i]
                assert answer["probabilities"]["0"] == pytest.approx(want["prob_0"][i], abs=1e-6)
    if bad_images == "skip":
        assert any("error" in a for r in responses for a in r.json()["predictions"])
    else:
        assert sum(r.status_code == 422 for r in responses) == 4 and sum(r.status_code == 200 for r in responses) == 12


def test_image_paths_are_not_read_from_the_server_and_uploads_work(tmp_path, image_csv):
    import pandas as pd

    run = _image_run(tmp_path, image_csv, "skip")
    with _client([run]) as c:
        path = pd.read_csv(image_csv)["image"][0]
        r = c.post("/v1/predict", json=[{"image": path, "ink": 1.0, "pen": 0}])
        assert r.status_code == 422 and "file paths are not read by the server" in r.text
    data = {"path": str(image_csv), "target": "label", "image": {"size": [8, 8], "channels": 1},
            "types": {"ink": "ignore", "pen": "ignore"}}
    image_only = train(load_config(tiny_config(tmp_path, data, name="img", model={"type": "cnn", "channels": [8],
                                                                                  "hidden": [16]}))).path
    with _client([image_only]) as c:
        files = [("files", (f"{i}.png", open(p, "rb").read(), "image/png")) for i, p in
                 enumerate(pd.read_csv(image_csv)["image"][:3])] + [("files", ("x.png", b"junk", "image/png"))]
        r = c.post("/v1/predict/upload", files=files)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert len(got) == 4 and "label" in got[0] and "error" in got[3]


def test_generate_endpoint_for_a_causal_lm_run_plain_and_streamed(tmp_path, tiny_gpt2):
    from modelfoundry.predictor import Predictor

    from ..models.test_causal_lm import _cfg, _frames

    frame, test = _frames()
    run = train(_cfg(tmp_path, tiny_gpt2, epochs=2), frame=frame, test_frame=test).path
    local = Predictor.load(run).generate("capital of japan", max_new_tokens=8)[0]
    with _client([run], api_keys={KEY}) as c:
        assert c.post("/v1/generate", json={"prompt": "capital of japan"}).status_code == 401  # the same auth
        h = {"X-API-Key": KEY}
        r = c.post("/v1/generate", json={"prompt": "capital of japan", "max_new_tokens": 8}, headers=h)
        assert r.status_code == 200 and r.json()["text"] == local
        with c.stream("POST", "/v1/generate", json={"prompt": "capital of japan", "max_new_tokens": 8, "stream": True},
                      headers=h) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1]["done"] and events[-1]["text"] == local
        assert "".join(e["text"] for e in events[:-1]) == local
        assert c.post("/v1/generate", json={"prompt": "x", "max_new_tokens": 10_000}, headers=h).status_code == 422
        assert c.post("/v1/generate", json={"prompt": "x " * 200}, headers=h).status_code == 422  # too long
        assert c.post("/v1/predict", json=["x"], headers=h).status_code == 404
        assert 'route="/v1/generate",status="200"' in c.get("/metrics", headers=h).text


@pytest.mark.slow
def test_generate_guard_blocks_prompts_and_redacts_personal_data(tmp_path, tiny_gpt2, capsys):
    """serve.block_prompts refuses a prompt (400, counted); serve.redact_pii redacts what the model says, streamed or
    not (counted by kind); `foundry generate --block/--redact-pii` does the same on the command line."""
    from modelfoundry.cli import main
    from modelfoundry.data.pii import OutputGuard
    from modelfoundry.predictor import Predictor

    from ..models.test_causal_lm import _cfg, _frames

    frame, test = _frames()
    frame = frame.assign(response="call 13812345678 or mail a@b.io")  # a model that learned to repeat personal data
    run = train(_cfg(tmp_path, tiny_gpt2, epochs=12), frame=frame, test_frame=test).path
    raw = Predictor.load(run).generate("capital of japan", max_new_tokens=16)[0]
    want, kinds = OutputGuard(redact_pii=True).clean(raw)
    assert kinds and ("[PHONE]" in want or "[EMAIL]" in want), raw  # the guard below has something to do
    with _client([run], redact_pii=True, block_prompts=["password", r"身份证"]) as c:
        r = c.post("/v1/generate", json={"prompt": "tell me the admin PASSWORD"})
        assert r.status_code == 400 and "block list" in r.json()["detail"]
        assert c.post("/v1/generate", json={"prompt": "查一下身份证"}).status_code == 400
        r = c.post("/v1/generate", json={"prompt": "capital of japan", "max_new_tokens": 16})
        assert r.status_code == 200 and r.json()["text"] == want
        with c.stream("POST", "/v1/generate", json={"prompt": "capital of japan", "max_new_tokens": 16,
                                                    "stream": True}) as s:
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        assert events[0]["text"] == want and events[-1] == {"done": True, "text": want}
        text = c.get("/metrics").text
        assert "foundry_generate_blocked_total 2.0" in text
        assert f'foundry_generate_redactions_total{{kind="{kinds[0]}"}} 2.0' in text
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "capital of japan", "--max-new-tokens", "16", "--redact-pii"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == want.strip() and "guard: redacted_" in out.err
    assert main(["generate", str(run), "--prompt", "my password", "--block", "pass(word)?", "--json"]) == 3
    assert json.loads(capsys.readouterr().out) == {"prompt": "my password", "response": None, "blocked": True}
    assert main(["generate", str(run), "--prompt", "x", "--block", "(unclosed"]) == 2
    assert "--block: '(unclosed' is not a regular expression" in capsys.readouterr().err


def test_serve_settings_come_from_the_runs_serve_section_and_flags_override_them(table_run, tmp_path, capsys):
    """`serve:` in the run's config sets `foundry serve`'s defaults (one set of defaults: the CLI's flags are made from
    the section); a flag given on the command line wins, and a bad value is refused naming the flag."""
    import shutil

    import yaml

    from modelfoundry.cli import main

    run = tmp_path / "run"
    shutil.copytree(table_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["serve"] = {**cfg["serve"], "host": "0.0.0.0"}  # reachable from other machines: needs a key
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["serve", str(run)]) == 2
    assert "--host 0.0.0.0 is reachable from other machines" in capsys.readouterr().err
    assert main(["serve", str(run), "--max-batch", "0"]) == 2  # validated by the section, before anything starts
    assert "--max-batch: Input should be greater than 0, got 0" in capsys.readouterr().err
    with pytest.raises(Exception, match="serve.max_batch: must be > 0"):
        load_config({**cfg, "serve": {"max_batch": 0}})


def test_a_pretrained_clm_run_is_served_for_generation_and_an_mlm_run_is_refused(tmp_path):
    from modelfoundry.predictor import Predictor

    from ..train.test_pretrain import TINY_BERT, TINY_GPT, cfg_for, corpus

    path = corpus(tmp_path)
    clm = train(cfg_for(tmp_path, {"path": path}, TINY_GPT, epochs=2)).path
    options = {"max_new_tokens": 10, "temperature": 0.8, "top_k": 5, "repetition_penalty": 1.3, "seed": 1}
    local = Predictor.load(clm).generate("anna", **options)[0]
    with _client([clm]) as c:
        r = c.post("/v1/generate", json={"prompt": "anna", **options})
        assert r.status_code == 200 and r.json()["text"] == local
    mlm = train(cfg_for(tmp_path, {"path": path, "task": "mlm", "text": {"tokenizer": "wordpiece", "vocab_size": 60}},
                        TINY_BERT, epochs=1, out="mlm")).path
    with pytest.raises(ValueError, match="masked-LM pretraining run has nothing to serve"):
        load_models([mlm])
