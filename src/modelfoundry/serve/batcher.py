"""Dynamic batching for one model: requests wait in a bounded queue up to max_wait_ms so that up to max_batch rows
run through the model at once, on one inference thread. Every request gets exactly its own rows' answers: a row that
cannot be predicted gets its own error, a batch that fails is retried request by request, a full queue refuses new
work (503) and requests that gave up waiting are dropped before the model sees them."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from ..predictor import Predictor


class QueueFull(RuntimeError):
    """More rows are waiting than the queue holds: the caller answers 503 with Retry-After."""


def records_frame(pred: Predictor, records: list[dict]) -> pd.DataFrame:
    """Records as a frame whose columns keep each value as given (object dtype): pandas would infer one dtype per
    column across the whole batch, so a row's 1 read as 1.0 beside a neighbour's 2.5."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in columns},
                        index=range(len(records)))


def answers(pred: Predictor, out: pd.DataFrame) -> list[dict]:
    """One answer per row, built from whole columns (a row-wise DataFrame walk cost more than a batch-1 model call);
    a row that could not be predicted answers {"error": ...}."""
    id_col = pred.preprocessor.data.id_column
    ids = out[id_col].tolist() if id_col and id_col in out.columns else None
    if pred.task == "classification":
        names = [str(c) for c in pred.classes]
        probs = out[[f"prob_{c}" for c in pred.classes]].to_numpy(dtype=float).tolist()
        result = [{"label": label, "probabilities": dict(zip(names, p))}
                  for label, p in zip(out["prediction"].tolist(), probs)]
        if "model_prediction" in out.columns:  # a fairness rule decided `label`; the model's own answer beside it
            result = [{**a, "model_label": m, "fair_positive_probability": f} for a, m, f in
                      zip(result, out["model_prediction"].tolist(), out["fair_positive_probability"].tolist())]
    elif pred.task == "anomaly":  # flagged above the run's alert threshold, and the score that decided it
        result = [{"anomaly": flag, "score": s} for flag, s in
                  zip(out["prediction"].tolist(), out["anomaly_score"].to_numpy(dtype=float).tolist())]
    else:
        result = [{"value": v} for v in out["prediction"].to_numpy(dtype=float).tolist()]
    if "error" in out.columns:
        result = [{"error": e} if isinstance(e, str) else a for a, e in zip(result, out["error"].tolist())]
    if ids is not None:
        result = [{id_col: i, **a} for i, a in zip(ids, result)]
    return result


class Batcher:
    """One model's queue: requests are gathered into batches of up to max_batch rows, waiting at most max_wait_ms
    for company, and predicted on a dedicated thread."""

    def __init__(self, pred: Predictor, settings, metrics, name: str):
        self.pred, self.settings, self.metrics, self.name = pred, settings, metrics, name
        self.queue: asyncio.Queue = asyncio.Queue()
        self.queued_rows = 0
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
        if self.queued_rows + len(records) > self.settings.max_queue_rows:
            raise QueueFull(f"{self.queued_rows} rows are waiting for {self.name}; the queue holds "
                            f"{self.settings.max_queue_rows}")
        fut = asyncio.get_running_loop().create_future()
        self.queued_rows += len(records)
        await self.queue.put((records, fut))
        return await fut

    def _predict(self, records: list[dict]) -> list[dict]:
        """On the inference thread: the batch's frame, the model call and the answers. The event loop keeps only
        HTTP and validation, so requests keep arriving while the model runs."""
        return answers(self.pred, self.pred.predict(records_frame(self.pred, records)))

    async def _run(self, items: list) -> None:
        loop = asyncio.get_running_loop()
        items = [(records, fut) for records, fut in items if not fut.done()]  # gave up waiting (timeout, disconnect)
        if not items:
            return
        rows = sum(len(records) for records, _ in items)
        self.metrics.batch_rows.labels(self.name).observe(rows)
        try:
            out = await loop.run_in_executor(self.pool, self._predict, [r for records, _ in items for r in records])
        except Exception as exc:
            if len(items) == 1:
                _settle(items[0][1], exc=exc)
                return
            # one request's bad row failed the batch: each request alone, so every error names its own rows only
            for records, fut in items:
                if fut.done():
                    continue
                try:
                    _settle(fut, await loop.run_in_executor(self.pool, self._predict, records))
                except Exception as own_exc:
                    _settle(fut, exc=own_exc)
            return
        start = 0
        for records, fut in items:
            _settle(fut, out[start: start + len(records)])
            start += len(records)

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
            self.queued_rows -= rows
            try:
                await self._run(items)
            except Exception as exc:  # never let the loop die: every waiting request gets the error
                for _, fut in items:
                    _settle(fut, exc=exc)
            if stop:
                return


def _settle(fut: asyncio.Future, result=None, exc: BaseException | None = None) -> None:
    """Answer a request's future unless it already gave up (timed out or disconnected)."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
