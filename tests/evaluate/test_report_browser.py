"""The run report and the data report, opened in a real browser (Debian's chromium, headless): nothing wider than
the page, every plot loads, the headline comes first. Skipped where chromium is absent, except in CI
(FOUNDRY_REQUIRE_CHROMIUM=1, set by .ci/run, which installs it)."""

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import load_config

from ..conftest import tiny_config

PROBE = """<!doctype html><html><body><iframe id="f" src="{page}" style="width:{width}px;height:900px"></iframe>
<script>
document.getElementById('f').onload = () => {{
  const d = document.getElementById('f').contentDocument;
  const imgs = [...d.images];
  document.body.setAttribute('data-sw', d.documentElement.scrollWidth);
  document.body.setAttribute('data-cw', d.documentElement.clientWidth);
  document.body.setAttribute('data-imgs', imgs.filter(i => i.naturalWidth > 0).length + '/' + imgs.length);
  document.body.setAttribute('data-first', d.querySelector('h1 + *').className);
}};
</script></body></html>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("FOUNDRY_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (FOUNDRY_REQUIRE_CHROMIUM) but was not found")
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    return exe


def open_in_browser(page, width: int = 1000) -> dict:
    probe = page.parent / f"probe-{page.stem}.html"
    probe.write_text(PROBE.format(page=page.name, width=width), encoding="utf-8")
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-(\w+)="([^"]*)"', body))


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """30 classes with long names: the report that used to open on a table wider than the page."""
    d = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 6))
    names = [f"a rather long class name number {i}" for i in range(30)]
    y = np.array(names)[(np.abs(x[:, :3]).sum(1) * 7).astype(int) % 30]
    df = pd.DataFrame(x.round(3), columns=[f"feature_{i}" for i in range(6)]).assign(label=y)
    df["group"] = np.where(x[:, 5] > 0, "north", "south")
    df.to_csv(d / "t.csv", index=False)
    cfg = tiny_config(d, {"path": str(d / "t.csv"), "target": "label"}, train={"epochs": 2},
                      evaluate={"baselines": True, "report": True, "fairness": {"sensitive": ["group"]}})
    return train(load_config(cfg))


@pytest.mark.slow
def test_run_report_fits_the_page_and_loads_every_plot(many_classes):
    page = many_classes.path / "report.html"
    text = page.read_text(encoding="utf-8")
    assert text.index("class='headline'") < text.index("<h2>Metrics")  # the headline comes first
    assert "Most confused classes" in text and "a rather long class name number" in text
    seen = open_in_browser(page)
    assert int(seen["sw"]) <= int(seen["cw"]), seen  # no horizontal scrolling of the page itself
    loaded, total = map(int, seen["imgs"].split("/"))
    assert total >= 3 and loaded == total, seen
    assert seen["first"] == "headline"


@pytest.mark.slow
def test_data_report_fits_the_page(many_classes):
    seen = open_in_browser(many_classes.path / "data_report.html", width=1100)
    assert int(seen["sw"]) <= int(seen["cw"]), seen
    loaded, total = map(int, seen["imgs"].split("/"))
    assert loaded == total


def _compression(tmp_path, many_classes):
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    return compress(many_classes.path, CompressConfig(quantize="int8", parity_rows=20)).path / "compression_report.html"


def _pretraining(tmp_path, many_classes):
    from ..train.test_pretrain import TINY_GPT, cfg_for, corpus

    return train(cfg_for(tmp_path, {"path": corpus(tmp_path)}, TINY_GPT, epochs=2)).path / "report.html"


def _alignment(tmp_path, many_classes):
    from ..align.test_align import config

    return train(load_config(config(tmp_path, {"method": "dpo"}, train={"max_steps": 2}))).path / "report.html"


@pytest.mark.slow
@pytest.mark.parametrize("make", [_compression, _pretraining, _alignment], ids=["compression", "pretraining", "alignment"])
def test_every_other_report_fits_the_page(make, many_classes, tmp_path):
    page = make(tmp_path, many_classes)
    seen = open_in_browser(page)
    assert int(seen["sw"]) <= int(seen["cw"]), seen
    loaded, total = map(int, seen["imgs"].split("/"))
    assert loaded == total, seen


@pytest.mark.slow
def test_the_causal_lm_report_fits_the_page(tiny_gpt2, tmp_path):
    from ..models.test_causal_lm import _cfg, _frames

    frame, test = _frames(4)
    cfg = _cfg(tmp_path, tiny_gpt2, epochs=1)
    cfg.evaluate.report = True
    seen = open_in_browser(train(cfg, frame=frame, test_frame=test).path / "report.html")
    assert int(seen["sw"]) <= int(seen["cw"]), seen
