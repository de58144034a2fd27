"""Load on `foundry serve`: 64 concurrent clients on loopback for a bounded time, batching on vs off, torch vs
ONNX int8.

    .venv/bin/python bench/serve_load.py --run RUNS/intent-lora/<id> --onnx-run RUNS/intent-lora-int8/<id>
    .venv/bin/python bench/serve_load.py --run ... --duration 20 --clients 32      # shorter

Each configuration starts a real `foundry serve` process on a free 127.0.0.1 port, waits for /readyz, then
`--clients` asyncio clients each POST one BANKING77 test query at a time (a closed loop: the next request
after the answer) for `--duration` seconds, and the server is stopped. Requests, throughput, latency
p50/p99 and errors by kind are recorded; the server's own rows-per-call histogram comes from /metrics.
The load generator shares this machine's cores with the server, as it would on a laptop.
Writes bench/results/serve_load.json. Run it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(run: str, port: int, extra: list[str]) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "serve", run, "--port", str(port), *extra],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"server exited: {p.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.3)
    p.kill()
    raise SystemExit("server did not become ready in 120 s")


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams. httpx's client cost ~10 ms of CPU per request at
    64 connections, so the load generator took the cores the server was being measured on; this costs ~0.1 ms."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      chunked: bool = False) -> tuple[int, bytes]:
        """(status, body). headers: extra request headers; chunked: send the body with Transfer-Encoding: chunked."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if chunked:
            step = 65_536
            body = b"".join(f"{len(body[i:i + step]):x}\r\n".encode() + body[i:i + step] + b"\r\n"
                            for i in range(0, len(body), step)) + b"0\r\n\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n"
        else:
            head += f"Content-Length: {len(body)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + body)
            header = await self.reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = dict(ln.split(":", 1) for ln in lines[1:] if ":" in ln)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            if "content-length" not in fields:
                raise ConnectionError(f"response without content-length: {fields}")
            data = await self.reader.readexactly(int(fields["content-length"]))
            if fields.get("connection", "").lower() == "close":
                self.close()
            return status, data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(port: int, texts: list[str], clients: int, duration: float) -> dict:
    """`clients` closed-loop clients, each on its own connection, POSTing one text per request."""
    latencies, errors = [], {}
    bodies = [json.dumps([t]).encode() for t in texts]
    stop = time.perf_counter() + duration

    async def one(i: int) -> None:
        conn, k = Connection(port), i
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                status, data = await conn.request("POST", "/v1/predict", bodies[k % len(bodies)])
                if status == 200 and b'"predictions"' in data:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            k += clients
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    conn = Connection(port)
    metrics = (await conn.request("GET", "/metrics"))[1].decode()
    conn.close()
    lat = np.array(latencies) * 1000
    rows = [ln for ln in metrics.splitlines() if ln.startswith("foundry_batch_rows_")]
    calls = sum(float(ln.split()[-1]) for ln in rows if ln.startswith("foundry_batch_rows_count"))
    total = sum(float(ln.split()[-1]) for ln in rows if ln.startswith("foundry_batch_rows_sum"))
    return {"requests": int(len(lat)), "wall_s": round(wall, 1), "req_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "errors": errors, "model_calls": int(calls), "rows_per_call": round(total / calls, 2) if calls else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the torch run (e.g. the intent_lora recipe's)")
    ap.add_argument("--onnx-run", required=True, help="its int8 variant (foundry compress RUN --quantize int8)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="batching on: the server's --max-wait-ms")
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args()
    import pandas as pd

    texts = pd.read_csv(REPO / "datasets" / "banking77" / "test.csv")["text"].tolist()
    configs = [("torch", args.run, "torch"), ("onnx int8", args.onnx_run, "onnx")]
    results = []
    for label, run, backend in configs:
        for batching in (True, False):
            port = free_port()
            extra = ["--backend", backend, "--max-wait-ms", str(args.max_wait_ms if batching else 0),
                     "--max-rows", "64", "--timeout", "60"]
            server = start(run, port, extra)
            try:
                r = asyncio.run(load(port, texts, args.clients, args.duration))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            r.update(model=label, batching=batching)
            results.append(r)
            print(f"{label:<10} batching {'on ' if batching else 'off'}: {r['req_per_s']:>7} req/s  p50 {r['p50_ms']} ms  "
                  f"p99 {r['p99_ms']} ms  errors {r['errors']}  rows/call {r['rows_per_call']}", flush=True)
    by = {(r["model"], r["batching"]): r for r in results}
    ratios = {m: round(by[(m, True)]["req_per_s"] / by[(m, False)]["req_per_s"], 2) for m in ("torch", "onnx int8")}
    goals = {"batching_speedup": ratios, "goal_3x_met": {m: v >= 3 for m, v in ratios.items()},
             "errors_total": sum(sum(r["errors"].values()) for r in results),
             "int8_p99_ms_batching_on": by[("onnx int8", True)]["p99_ms"],
             "goal_int8_p99_under_250ms": (by[("onnx int8", True)]["p99_ms"] or 1e9) < 250}
    out = {"clients": args.clients, "duration_s": args.duration, "max_wait_ms": args.max_wait_ms, "cores": os.cpu_count(),
           "run": args.run, "onnx_run": args.onnx_run, "results": results, "goals": goals}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(goals, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
