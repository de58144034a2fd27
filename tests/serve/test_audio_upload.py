"""An audio model served: recordings arrive as base64 file bytes, or as uploaded files."""

from __future__ import annotations

import base64

import pandas as pd
from fastapi.testclient import TestClient

from modelfoundry.api import train
from modelfoundry.serve import ServeSettings, create_app, load_models

from ..data.test_audio import audio_config, write_recordings


def test_base64_audio_is_what_serve_sends(tmp_path):
    rows = write_recordings(tmp_path / "rec", n=24, bad=False)
    pd.DataFrame(rows).to_csv(tmp_path / "rec.csv", index=False)
    run = train(audio_config(tmp_path, tmp_path / "rec.csv"))
    body = [{"audio": base64.b64encode((tmp_path / "rec" / "low" / "0.wav").read_bytes()).decode()}]
    files = [("files", ("1.wav", (tmp_path / "rec" / "high" / "1.wav").read_bytes(), "audio/wav"))]
    with TestClient(create_app(load_models([run.path]), ServeSettings())) as client:
        res = client.post("/v1/predict", json=body)
        assert res.status_code == 200 and res.json()["predictions"][0]["label"] == "low"
        res = client.post("/v1/predict/upload", files=files)
        assert res.status_code == 200 and res.json()["predictions"][0]["label"] == "high"
        res = client.post("/v1/predict", json=[{"audio": "/etc/passwd"}])
        assert res.status_code == 422 and "audio file's bytes as base64" in res.text
