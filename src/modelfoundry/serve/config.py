"""The `serve:` section: how `foundry serve` runs a model (host, port, backend, batching and limits). The CLI's
flags are made from these fields (one set of defaults); a flag given overrides the served run's section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..core.schema import Section
from ..data.pii import check_patterns


class ServeConfig(Section):
    host: str = "127.0.0.1"
    """The address to listen on; a host other than loopback requires an API key."""
    port: int = Field(8000, gt=0, lt=65536)
    backend: Literal["auto", "torch", "onnx"] = "auto"
    """torch (the run's weights), onnx (model/model.onnx from `foundry compress`, run by ONNX Runtime), or auto
    (torch where the run has torch weights)."""
    workers: int = Field(1, ge=1)
    """Server processes sharing the port (the cores are split between them)."""
    allowed_root: str | None = None
    """Refuse run directories outside this folder."""
    max_batch: int = Field(64, gt=0)
    """Rows per model call (dynamic batching); text is cut into length-sorted sub-batches inside the call."""
    max_wait_ms: float = Field(5.0, ge=0)
    """How long a request waits for others to fill its batch; 0 disables batching."""
    max_rows: int = Field(1000, gt=0)
    """Rows per request."""
    max_explain_rows: int = Field(16, gt=0)
    """Rows per /v1/explain request: a row's explanation costs hundreds of predictions (SHAP) or gradient passes
    (Integrated Gradients)."""
    max_body_bytes: int = Field(1_000_000, gt=0)
    """The largest request body accepted (bytes, counted as they arrive)."""
    timeout_s: float = Field(30.0, gt=0)
    """Seconds a request may take."""
    max_queue_rows: int = Field(4096, gt=0)
    """Rows that may wait for one model; past it new requests get 503 with Retry-After (backpressure)."""
    public_metrics: bool = False
    """Serve /metrics without a key (a Prometheus scraper on a private network); every other path but /healthz
    needs the key when keys are set."""
    max_new_tokens: int = Field(256, gt=0)
    """The most tokens one generate request may ask for."""
    redact_pii: bool = False
    """Generation: replace personal data in responses (e-mail, phone, resident ID, bank card, IP) with its tag,
    [EMAIL] etc.; a streamed response then arrives as one piece (redaction needs the whole text). Counted in
    /metrics (foundry_generate_redactions_total by kind)."""
    block_prompts: list[str] = []
    """Generation: refuse (HTTP 400) a prompt matching any of these regular expressions (case-insensitive); counted in
    /metrics (foundry_generate_blocked_total)."""

    @field_validator("block_prompts")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return check_patterns(v, "block_prompts")
