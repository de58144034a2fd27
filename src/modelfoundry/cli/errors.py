"""Exit codes, and the extra that installs a missing optional module (so an error can say what to install)."""

EXIT_BAD_INPUT = 2

EXTRAS = {"onnx": "compress", "onnxruntime": "compress", "onnxscript": "compress", "trafilatura": "crawl",
          "py3langid": "crawl", "lxml": "crawl", "lxml_html_clean": "crawl", "fastapi": "serve", "uvicorn": "serve",
          "prometheus_client": "serve", "multipart": "serve", "python_multipart": "serve", "mlflow": "mlflow",
          "psycopg": "postgres", "sqlalchemy": "postgres"}


def missing_extra(module: str) -> str | None:
    """The extra (pyproject's optional-dependencies) that installs `module`, or None if it is not an optional one."""
    return EXTRAS.get(module.split(".")[0])
