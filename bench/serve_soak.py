"""Soak of `foundry serve`: 64 clients for 120 s mixing valid, invalid, oversized and unauthenticated requests.

    .venv/bin/python bench/serve_soak.py --run RUNS/quickstart-intents-int8/<id>            # the int8 variant
    .venv/bin/python bench/serve_soak.py --run ... --duration 30 --clients 32              # shorter

Not a speed comparison but a robustness one, so there is no anchor: a real `foundry serve` process (with an API key,
on a free 127.0.0.1 port) gets, from each of `--clients` closed-loop clients on their own keep-alive connections:

- valid (70%): 1-3 distinct BANKING77 test queries with the key; each answer is compared with offline
  `Predictor.predict` of that query alone. The pool holds only queries whose offline answers lie at least
  `SEPARATION` apart (L1 over the probabilities), far more than dynamic int8's batch effect (a row's
  probabilities move with its batch-mates), so cross-talk is unambiguous: an answer nearer another query's
  offline answer than its own. How far answers moved from their own (the batch effect) is reported too;
- invalid (10%): rows of the wrong shape or type, with the key (expected 422);
- oversized (10%): a body over --max-body-bytes, half with Content-Length, half chunked (expected 413);
- unauthenticated (10%): no key, or a wrong one (expected 401).

Goals (issue 19): zero 5xx, zero cross-talk; the p99 of valid requests is reported. Writes bench/results/
serve_soak.json with the CPU it ran on. Run it alone: the load generator shares the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from serve_load import Connection, free_port  # noqa: E402

KEY = "soak-bench-key-0123456789abcdef"
LIMIT = 200_000
SEPARATION = 1.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def soak(port: int, texts: list[str], expected: np.ndarray, classes: list[str], clients: int,
               duration: float) -> dict:
    counts: dict[str, dict[str, int]] = {}
    latencies: list[float] = []
    crosstalk, label_changes, answers, moved = [], 0, 0, []
    stop = time.perf_counter() + duration
    invalid_bodies = [b'[{"text": 5}]', b'[{"wrong": "x"}]', b'"not a list"', b'[]', b'[{"text": "a"', b"{}"]

    def count(kind: str, status: int | str) -> None:
        counts.setdefault(kind, {})
        counts[kind][str(status)] = counts[kind].get(str(status), 0) + 1

    async def one(i: int) -> None:
        nonlocal label_changes, answers
        rng = random.Random(i)
        conn = Connection(port)
        while time.perf_counter() < stop:
            r = rng.random()
            try:
                if r < 0.7:
                    idx = rng.sample(range(len(texts)), rng.randint(1, 3))
                    t = time.perf_counter()
                    status, data = await conn.request("POST", "/v1/predict", json.dumps([texts[j] for j in idx]).encode(),
                                                      {"X-API-Key": KEY})
                    count("valid", status)
                    if status != 200:
                        continue
                    latencies.append(time.perf_counter() - t)
                    got = json.loads(data)["predictions"]
                    if len(got) != len(idx):
                        crosstalk.append({"sent": len(idx), "answers": len(got)})
                        continue
                    for j, a in zip(idx, got):
                        answers += 1
                        p = np.array([a["probabilities"][c] for c in classes])
                        dist = np.abs(expected - p).sum(1)
                        moved.append(float(dist[j]))
                        label_changes += a["label"] != classes[int(expected[j].argmax())]
                        if int(dist.argmin()) != j:
                            crosstalk.append({"query": j, "own_l1": round(float(dist[j]), 3),
                                              "nearest": int(dist.argmin())})
                elif r < 0.8:
                    status, _ = await conn.request("POST", "/v1/predict", rng.choice(invalid_bodies), {"X-API-Key": KEY})
                    count("invalid", status)
                elif r < 0.9:
                    big = Connection(port)  # its own connection: the server closes it after a 413
                    chunked = rng.random() < 0.5
                    body = json.dumps([texts[0]] * (LIMIT // len(texts[0]) + 10)).encode()
                    try:
                        status, _ = await big.request("POST", "/v1/predict", body, {"X-API-Key": KEY}, chunked=chunked)
                    finally:
                        big.close()
                    count("oversized_chunked" if chunked else "oversized", status)
                else:
                    headers = {} if rng.random() < 0.5 else {"X-API-Key": "wrong-key-wrong-key-wrong"}
                    status, _ = await conn.request("POST", "/v1/predict", json.dumps([texts[0]]).encode(), headers)
                    count("unauthenticated", status)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                count("client_error", type(exc).__name__)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    five = sum(n for kinds in counts.values() for s, n in kinds.items() if s.isdigit() and int(s) >= 500)
    return {"wall_s": round(wall, 1), "by_kind": counts, "server_5xx": five, "crosstalk": len(crosstalk),
            "crosstalk_examples": crosstalk[:10], "valid_answers": answers, "label_changes_vs_alone": label_changes,
            "batch_effect_l1": {"median": round(float(np.median(moved)), 4) if moved else None,
                                "max": round(float(np.max(moved)), 4) if moved else None},
            "valid_req_per_s": round(len(lat) / wall, 1),
            "valid_p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "valid_p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the run to serve (the issue asks for the int8 variant)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--queries", type=int, default=60, help="distinct BANKING77 test queries in the pool (at most; "
                    "only queries whose answers lie SEPARATION apart are kept)")
    ap.add_argument("--out", default=str(HERE / "results" / "serve_soak.json"))
    args = ap.parse_args()

    import pandas as pd

    from modelfoundry.predictor import Predictor

    test = pd.read_csv(REPO / "datasets" / "banking77" / "test.csv")
    candidates = test["text"].drop_duplicates().sample(frac=1.0, random_state=0).tolist()[: args.queries * 5]
    pred = Predictor.load(args.run)
    classes = [str(c) for c in pred.classes]
    alone = [pred.predict_raw([t])[1][0] for t in candidates]  # each query alone
    del pred
    texts, chosen = [], []
    for t, p in zip(candidates, alone):  # a pool whose answers are far apart: attribution is unambiguous
        if len(texts) < args.queries and all(np.abs(p - q).sum() >= SEPARATION for q in chosen):
            texts.append(t)
            chosen.append(p)
    expected = np.stack(chosen)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FOUNDRY_API_KEYS": KEY}
    server = subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "serve", args.run, "--port", str(port),
                               "--max-body-bytes", str(LIMIT)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.time() + 120
        while True:
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start: {server.stderr.read()[-2000:] if server.stderr else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"X-API-Key": KEY}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        result = asyncio.run(soak(port, texts, expected, classes, args.clients, args.duration))
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"X-API-Key": KEY}, timeout=10).text
        rss = [ln for ln in metrics.splitlines() if ln.startswith("process_resident_memory_bytes")]
    finally:
        server.terminate()
        server.wait(timeout=60)
    out = {"run": args.run, "clients": args.clients, "duration_s": args.duration, "queries": len(texts),
           "separation_l1": SEPARATION,
           "cpu": cpu_name(), "cores": os.cpu_count(), "server_rss_mb": round(float(rss[0].split()[1]) / 2**20, 1)
           if rss else None, **result,
           "goals": {"zero_5xx": result["server_5xx"] == 0, "zero_crosstalk": result["crosstalk"] == 0}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0 if all(out["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
