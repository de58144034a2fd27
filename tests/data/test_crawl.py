"""The crawler against a small site served on 127.0.0.1 by the test itself (no other network)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelfoundry.cli import main
from modelfoundry.data.crawl import CrawlError, CrawlOptions, crawl, normalize_url

PARA = ("Card payments and money transfers are the most common reasons customers contact a bank. "
        "This page explains how to check the status of a transfer and what to do when a card is declined. ")
ZH = "银行卡转账是客户联系银行最常见的原因之一。本页说明如何查询转账状态，以及银行卡被拒绝时应该怎么做。" * 4


def page(title: str, body: str, links: list[str]) -> bytes:
    nav = "".join(f'<li><a href="{u}">{u}</a></li>' for u in links)
    return (f"<html><head><title>{title}</title></head><body><nav><ul>{nav}</ul></nav>"
            f"<article><h1>{title}</h1><p>{body}</p></article>"
            f"<footer>Copyright 2026 Example Bank. All rights reserved.</footer></body></html>").encode()


def site(robots: str | None = "User-agent: *\nDisallow: /private/\n") -> dict:
    pages = {
        "/": page("Home", PARA * 2, ["/a", "/b?utm_source=x#top", "/private/secret", "/dup", "/short", "/file.pdf",
                                     "/zh", "http://elsewhere.invalid/page", "/missing"]),
        "/a": page("Page A", PARA * 3 + " Alpha.", ["/", "/b", "/deep1"]),
        "/b": page("Page B", PARA * 3 + " Bravo.", ["/a"]),
        "/dup": page("Page A", PARA * 3 + " Alpha.", []),  # the same page as /a under another URL
        "/short": page("Short", "Too short.", []),
        "/deep1": page("Deep 1", PARA * 3 + " Deep one.", ["/deep2"]),
        "/deep2": page("Deep 2", PARA * 3 + " Deep two.", []),
        "/private/secret": page("Secret", PARA * 3 + " Secret.", []),
        "/zh": page("中文", ZH, []),
    }
    if robots is not None:
        pages["/robots.txt"] = robots.encode()
    return pages


class Site:
    def __init__(self, pages: dict):
        self.pages, self.hits, self.fail = pages, [], set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits.append((time.monotonic(), self.path, self.headers.get("User-Agent")))
                path = self.path.split("?")[0]
                if path in outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = outer.pages.get(path)
                if callable(body):  # a page that behaves: a redirect, a dripping server
                    return body(self)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                ctype = ("text/plain" if path == "/robots.txt" else "application/pdf" if path.endswith(".pdf")
                         else "text/html; charset=utf-8")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        pages["/file.pdf"] = b"%PDF-1.4 not html"

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.hits]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served():
    sites = []

    def make(pages):
        s = Site(pages)
        sites.append(s)
        return s

    yield make
    for s in sites:
        s.close()


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_normalize_url():
    assert normalize_url("HTTP://Example.COM:80/a?b=2&a=1&utm_source=x#frag") == "http://example.com/a?a=1&b=2"
    assert normalize_url("../c", "https://h.org/x/y/z") == "https://h.org/x/c"
    assert normalize_url("https://h.org") == "https://h.org/"
    for bad in ("mailto:a@b.c", "javascript:void(0)", "ftp://h.org/f"):
        assert normalize_url(bad) is None


def test_a_polite_crawl_of_a_small_site(tmp_path, served):
    s = served(site())
    out = tmp_path / "corpus.jsonl"
    summary = crawl(s.url, out, CrawlOptions(max_depth=2, delay=0.05, min_chars=150), log=lambda m: None)
    recs = _records(out)
    urls = {r["url"].removeprefix(s.url.rstrip("/")) for r in recs}
    assert urls == {"/", "/a", "/b", "/deep1", "/zh"}  # depth 2 stops before /deep2
    assert "/private/secret" not in s.paths()  # robots.txt obeyed
    assert s.paths().count("/a") == 1 and s.paths().count("/b") == 1  # one fetch per normalised URL
    assert summary["skipped"]["duplicate_text"] == 1 and summary["skipped"]["too_short"] == 1
    assert summary["skipped"]["not_html"] == 1 and summary["skipped"]["http_404"] == 1
    a = next(r for r in recs if r["url"].endswith("/a"))
    assert a["title"] == "Page A" and "Copyright" not in a["text"] and "Card payments" in a["text"]
    assert {"url", "title", "text", "fetched_at", "depth", "language"} <= set(a) and a["depth"] == 1
    assert next(r for r in recs if r["url"].endswith("/zh"))["language"] == "zh"
    assert all("ModelFoundryBot" in (ua or "") for _, _, ua in s.hits)


def test_language_filter_and_rate_limit(tmp_path, served):
    s = served(site())
    out = tmp_path / "en.jsonl"
    summary = crawl(s.url, out, CrawlOptions(max_depth=1, delay=0.2, languages=["en"], min_chars=100), log=lambda m: None)
    assert {r["language"] for r in _records(out)} == {"en"} and summary["skipped"]["language_zh"] == 1
    times = [t for t, _, _ in s.hits]
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.19  # never two requests to the host within the delay


def test_crawl_delay_from_robots_raises_the_delay(tmp_path, served):
    s = served(site("User-agent: *\nCrawl-delay: 1\n"))  # whole seconds: Python's robotparser reads integers
    crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(max_depth=0, delay=0.01), log=lambda m: None)
    (t0, p0, _), (t1, p1, _) = s.hits
    assert (p0, p1) == ("/robots.txt", "/") and t1 - t0 >= 0.99


def test_an_interrupted_crawl_resumes_without_repeating_a_page(tmp_path, served):
    s = served(site())
    out = tmp_path / "corpus.jsonl"
    first = crawl(s.url, out, CrawlOptions(max_pages=2, delay=0.01, min_chars=150), log=lambda m: None)
    assert first["written"] == 2 and first["waiting"] > 0
    with open(out, "ab") as fh:  # a crash in the middle of writing a line the state never recorded
        fh.write(b'{"url": "http://half')
    fetched_before = len(s.hits)
    second = crawl(s.url, out, CrawlOptions(max_pages=10, delay=0.01, min_chars=150), log=lambda m: None)
    recs = _records(out)  # every line parses: the half line is gone
    assert len(recs) == second["written"] == 5 and len({r["url"] for r in recs}) == 5
    again = [p for _, p, _ in s.hits[fetched_before:]]
    assert "/" not in again and "/robots.txt" in again  # the start page is not fetched twice
    with pytest.raises(CrawlError, match="belongs to a crawl from"):
        crawl("http://127.0.0.1:1/other", out, log=lambda m: None)


def test_robots_disallowing_everything_crawls_nothing_and_says_so(tmp_path, served):
    s = served(site("User-agent: *\nDisallow: /\n"))
    notes = []
    summary = crawl(s.url, tmp_path / "c.jsonl", log=notes.append)
    assert summary["written"] == 0 and s.paths() == ["/robots.txt"]
    assert any("disallows" in n and "nothing crawled" in n for n in notes)


def test_a_server_error_on_robots_txt_means_do_not_crawl_and_a_missing_one_allows_all(tmp_path, served):
    s = served(site(None))
    s.fail.add("/robots.txt")
    notes = []
    summary = crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(delay=0.01), log=notes.append)
    assert summary["written"] == 0 and s.paths() == ["/robots.txt"] and any("answered 503" in n for n in notes)
    s.fail.clear()
    summary = crawl(s.url, tmp_path / "d.jsonl", CrawlOptions(delay=0.01, max_depth=1), log=lambda m: None)
    assert summary["written"] >= 3 and "/private/secret" in s.paths()  # no robots.txt (404): everything allowed


def test_bad_start_urls_and_refusing_hosts(tmp_path, capsys):
    for bad in ("ftp://127.0.0.1/x", "file:///etc/passwd", "not a url"):
        with pytest.raises(CrawlError, match="expected an http:// or https:// URL"):
            crawl(bad, tmp_path / "c.jsonl")
    with socket.socket() as sock:  # a port nobody listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CrawlError, match=f"127.0.0.1:{port}/: cannot reach the host"):
        crawl(f"http://127.0.0.1:{port}/", tmp_path / "c.jsonl", CrawlOptions(timeout=2))
    assert main(["data", "crawl", "gopher://x", "-o", str(tmp_path / "c.jsonl")]) == 2
    assert "expected an http:// or https:// URL" in capsys.readouterr().err
    assert main(["data", "crawl", "http://127.0.0.1/", "-o", str(tmp_path / "c.txt")]) == 2
    assert "ending in .jsonl" in capsys.readouterr().err


def test_the_cli_crawls(tmp_path, served, capsys):
    s = served(site())
    out = tmp_path / "corpus.jsonl"
    assert main(["data", "crawl", s.url, "-o", str(out), "--max-depth", "1", "--delay", "0.01", "--language", "en",
                 "--min-chars", "150"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "pages written" in captured.err
    assert {r["url"].removeprefix(s.url.rstrip("/")) for r in _records(out)} == {"/", "/a", "/b"}


def redirect(location: str):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.fixture
def no_outside_connections(monkeypatch):
    """Connections to anything but 127.0.0.0/8 fail the test instead of leaving this machine."""
    real = socket.create_connection
    tried = []

    def guarded(address, *a, **kw):
        if not str(address[0]).startswith("127."):
            tried.append(address)
            raise AssertionError(f"the crawler tried to connect to {address}")
        return real(address, *a, **kw)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return tried


@pytest.mark.parametrize("any_domain", [False, True])
def test_redirects_to_other_local_ports_and_metadata_addresses_are_refused(tmp_path, served, no_outside_connections,
                                                                         any_domain):
    other = served({"/": page("Other", PARA * 3 + " Internal admin page.", [])})
    pages = site()
    port = other.url.split(":")[-1].rstrip("/")
    pages["/a"] = redirect(f"http://127.0.0.1:{port}/")  # another service on this machine
    pages["/b"] = redirect("http://169.254.169.254/latest/meta-data/")  # the cloud metadata address
    pages["/dup"] = redirect(f"http://localhost:{port}/")  # a name that resolves to loopback
    pages["/short"] = redirect("ftp://127.0.0.1/x")
    s = served(pages)
    summary = crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(delay=0, min_chars=50, same_domain=not any_domain),
                    log=lambda m: None)
    assert other.hits == [] and no_outside_connections == []  # decided before any connection was opened
    reasons = summary["skipped"]
    if any_domain:
        assert reasons.get("private_address", 0) >= 3, reasons
    else:
        assert reasons.get("redirected_away", 0) >= 3, reasons
    assert "Internal admin page" not in (tmp_path / "c.jsonl").read_text()


def test_allow_private_follows_a_redirect_to_another_local_port(tmp_path, served):
    other = served({"/": page("Other", PARA * 3 + " Internal admin page.", [])})
    pages = site()
    pages["/a"] = redirect(other.url)
    s = served(pages)
    crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(delay=0, min_chars=50, same_domain=False, allow_private=True,
                                                    max_depth=1), log=lambda m: None)
    assert "/" in other.paths() and "Internal admin page" in (tmp_path / "c.jsonl").read_text()


def test_a_dripping_server_is_cut_at_the_page_deadline(tmp_path, served):
    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.end_headers()
        try:
            for _ in range(40):  # 1 byte every 0.2 s: 8 s in all, each read well inside the read timeout
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    pages = site()
    pages["/b"] = drip
    s = served(pages)
    started = time.monotonic()
    summary = crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(delay=0, min_chars=50, page_deadline=1.0, timeout=5),
                    log=lambda m: None)
    assert time.monotonic() - started < 6
    assert summary["skipped"].get("unreachable") == 1 and summary["written"] >= 3


def test_a_huge_crawl_delay_is_capped(tmp_path, served):
    s = served(site("User-agent: *\nCrawl-delay: 3600\n"))
    summary = crawl(s.url, tmp_path / "c.jsonl", CrawlOptions(delay=0, min_chars=50, max_pages=2, max_crawl_delay=0.2),
                    log=lambda m: None)
    assert summary["written"] == 2 and any("capped at 0.2 s" in n for n in summary["robots_notes"])


def test_a_crawl_shows_progress_when_asked(tmp_path, served, capsys, monkeypatch):
    import re

    monkeypatch.setenv("FOUNDRY_PROGRESS", "1")
    crawl(served(site()).url, tmp_path / "c.jsonl", CrawlOptions(delay=0, min_chars=50, max_pages=3), log=lambda m: None)
    assert re.search(r"crawl: +\d+%\|", capsys.readouterr().err)
