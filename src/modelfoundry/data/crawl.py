"""`foundry data crawl START_URL -o corpus.jsonl`: a polite crawler for building text corpora.

- robots.txt is obeyed for our user agent (fetched once per host; a missing one allows everything, one that
  cannot be read because the server fails disallows everything, as Google's crawler does), and its
  Crawl-delay raises the per-host delay.
- One request per host at a time, at least `delay` seconds apart (Crawl-delay capped at `max_crawl_delay`); same
  host only unless told otherwise; pages beyond `max_depth` links from the start are not fetched.
- It stays where it should: redirects are followed by hand, and every hop is checked again (http(s) only, same
  site, robots.txt). Every host but the start URL's own is resolved first and refused when it is private,
  loopback, link-local (cloud metadata: 169.254.169.254), multicast or reserved, unless `allow_private`; the
  connection goes to the address that was checked (no second lookup to rebind). A page has a total deadline, so a
  server dripping bytes cannot stall the crawl, and a size cap.
- URLs are normalised (scheme and host lowercased, default port, fragment, tracking parameters and
  parameter order removed) before de-duplication; pages whose extracted text repeats an earlier page's are
  skipped too.
- Boilerplate (menus, footers, ads) is removed by trafilatura; the language (py3langid) and the length of
  what is left can be filtered.
- Output is JSONL with url, title, text, fetched_at, depth, language. The crawl state (frontier, seen URLs,
  text hashes, the output's committed size) is saved atomically beside the output after every page, so an
  interrupted crawl resumes where it stopped with the same command, and never leaves half a line.

Over ~400 lines on purpose: the fetch guard (SSRF checks, pinned addresses, deadlines), robots.txt and the
resumable frontier are one safety argument, read together.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.robotparser
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from ..core.progress import bar
from ..core.runs import write_json

__all__ = ["CrawlOptions", "crawl", "normalize_url"]

TRACKING = re.compile(r"^(utm_\w+|gclid|fbclid|mc_cid|mc_eid|ref|sessionid|sid)$", re.I)
DEFAULT_AGENT = "ModelFoundryBot/0.1 (+https://github.com/modelfoundry; polite text-corpus crawler)"


class CrawlError(ValueError):
    """A crawl that cannot start: a bad start URL, or a start host that cannot be reached."""


@dataclass
class CrawlOptions:
    max_pages: int = 100
    max_depth: int = 2
    delay: float = 1.0
    """Seconds between two requests to one host (robots.txt's Crawl-delay wins when larger)."""
    same_domain: bool = True
    min_chars: int = 200
    """Pages whose extracted text is shorter are not written (their links are still followed)."""
    max_chars: int = 200_000
    languages: list[str] = field(default_factory=list)
    """ISO 639-1 codes to keep (py3langid on the extracted text); empty = any language."""
    user_agent: str = DEFAULT_AGENT
    timeout: float = 15.0
    """Seconds to connect, and the most one read may wait."""
    page_deadline: float = 30.0
    """Seconds one page may take from connecting to its last byte (a dripping server is cut here)."""
    max_bytes: int = 5_000_000
    max_crawl_delay: float = 30.0
    """robots.txt's Crawl-delay is obeyed up to this many seconds."""
    max_redirects: int = 5
    allow_private: bool = False
    """Fetch hosts other than the start URL's that resolve to private, loopback or link-local addresses (an
    intranet crawl). The start URL's own host is always allowed: you chose it."""


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute, canonical form of a link, or None if it is not an http(s) page link."""
    url = urljoin(base, url.strip()) if base else url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING.match(k)))
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _same_site(a: str, b: str) -> bool:
    strip = lambda h: h[4:] if h.startswith("www.") else h  # noqa: E731
    return strip(_host(a)) == strip(_host(b))


class Refused(Exception):
    """A URL the crawler will not fetch (scheme, address, site or robots); the message is the skip reason."""


def _blocked(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_reserved
            or addr.is_unspecified)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever a second DNS lookup answers."""

    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self.ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self.ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Fetcher:
    """HTTP GETs with our user agent, a timeout, a total deadline, a size cap and a per-host minimum interval;
    redirects followed by hand, each hop checked (`check`) before anything connects to it."""

    def __init__(self, opts: CrawlOptions, start: str):
        self.opts = opts
        self.start_netloc = _host(start)
        self.last: dict[str, float] = {}
        self.delays: dict[str, float] = {}

    def wait(self, host: str) -> None:
        gap = self.delays.get(host, self.opts.delay)
        since = time.monotonic() - self.last.get(host, -1e9)
        if since < gap:
            time.sleep(gap - since)

    def address(self, url: str) -> str:
        """The IP to connect to for `url`, resolved and checked; raises Refused."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused("not_http")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise urllib.error.URLError(exc) from None
        ips = [info[4][0] for info in infos]
        if parts.netloc != self.start_netloc and not self.opts.allow_private and any(_blocked(ip) for ip in ips):
            raise Refused("private_address")
        return ips[0]

    def get(self, url: str, check=None) -> tuple[int, str, str, bytes]:
        """(status, final url, content type, body); HTTP errors come back as their status, not raised. check(url)
        is called on every redirect hop before it is fetched and raises Refused to stop there."""
        for _ in range(self.opts.max_redirects + 1):
            status, ctype, body, location = self._get_one(url)
            if status in (301, 302, 303, 307, 308) and location:
                nxt = normalize_url(location, url)
                if nxt is None:
                    raise Refused("redirected_away")
                if check is not None:
                    check(nxt)
                url = nxt
                continue
            return status, url, ctype, body
        raise Refused("too_many_redirects")

    def _get_one(self, url: str) -> tuple[int, str, bytes, str | None]:
        parts = urlsplit(url)
        ip = self.address(url)
        host = parts.netloc
        self.wait(host)
        started = time.monotonic()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn = (_PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP)(parts.hostname, port, ip, self.opts.timeout)
        try:
            conn.request("GET", urlunsplit(("", "", parts.path or "/", parts.query, "")),
                         headers={"User-Agent": self.opts.user_agent, "Accept": "text/html,*/*;q=0.1"})
            sock = conn.sock  # http.client lets go of it once the response is read to its end
            resp = conn.getresponse()
            body = bytearray()
            while len(body) <= self.opts.max_bytes:
                left = self.opts.page_deadline - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError(f"no complete page within {self.opts.page_deadline} s")
                sock.settimeout(min(self.opts.timeout, left))
                chunk = resp.read1(65536)
                if not chunk:
                    break
                body += chunk
            return resp.status, resp.headers.get("Content-Type", ""), bytes(body), resp.headers.get("Location")
        except (http.client.HTTPException, ssl.SSLError) as exc:
            raise urllib.error.URLError(exc) from None
        finally:
            conn.close()
            self.last[host] = time.monotonic()


class _Robots:
    def __init__(self, fetcher: _Fetcher, agent: str):
        self.fetcher, self.agent = fetcher, agent
        self.parsers: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.notes: dict[str, str] = {}

    def parser(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        if key not in self.parsers:
            rp = urllib.robotparser.RobotFileParser(key + "/robots.txt")
            try:
                status, _, _, body = self.fetcher.get(key + "/robots.txt")
            except Refused as exc:
                status, body = 0, b""
                self.notes[key] = f"robots.txt refused ({exc}): nothing on this host is fetched"
            except (urllib.error.URLError, OSError) as exc:
                status, body = 0, b""
                self.notes[key] = f"robots.txt unreachable ({exc}): nothing on this host is fetched"
            if status == 200:
                rp.parse(body.decode("utf-8", errors="replace").splitlines())
            elif 400 <= status < 500:
                rp.parse([])  # no robots.txt: everything is allowed
            else:
                rp.disallow_all = True
                self.notes.setdefault(key, f"robots.txt answered {status}: nothing on this host is fetched")
            delay = rp.crawl_delay(self.agent)
            if delay:
                cap = self.fetcher.opts.max_crawl_delay
                if float(delay) > cap:
                    self.notes.setdefault(key + "#delay", f"{key} asks a Crawl-delay of {delay} s; capped at {cap} s")
                self.fetcher.delays[parts.netloc] = max(min(float(delay), cap), self.fetcher.opts.delay)
            self.parsers[key] = rp
        return self.parsers[key]

    def allowed(self, url: str) -> bool:
        return self.parser(url).can_fetch(self.agent, url)


def _links(html: str, base: str) -> list[str]:
    import lxml.html

    try:
        doc = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    base = next(iter(doc.xpath("//base/@href")), base)
    out = []
    for a in doc.xpath("//a[@href]"):
        if "nofollow" in (a.get("rel") or "").lower():
            continue
        u = normalize_url(a.get("href"), base)
        if u:
            out.append(u)
    return out


def _decode(body: bytes, content_type: str) -> str:
    m = re.search(r"charset=([\w-]+)", content_type, re.I)
    if m:
        try:
            return body.decode(m.group(1), errors="replace")
        except LookupError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    return str(best) if best is not None else body.decode("utf-8", errors="replace")


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.json")


def crawl(start_url: str, out: str | Path, opts: CrawlOptions | None = None, log=None) -> dict:
    """Crawl from `start_url` into the JSONL file `out` (appending, resuming from its state file); returns a
    summary. Raises CrawlError when the start URL is not http(s) or its host cannot be reached."""
    try:
        import py3langid  # noqa: F401
        import trafilatura
    except ImportError as exc:
        raise CrawlError(f"foundry data crawl needs the crawl extra (pip install 'modelfoundry[crawl]'): {exc}") from None
    opts = opts or CrawlOptions()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = normalize_url(start_url)
    if start is None:
        raise CrawlError(f"crawl start URL {start_url!r}: expected an http:// or https:// URL")
    out = Path(out)
    state_file = _state_path(out)
    if state_file.exists():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if state["start"] != start:
            raise CrawlError(f"{state_file}: this output belongs to a crawl from {state['start']}, not {start}; "
                             f"choose another -o or delete both files")
        log(f"resuming: {state['written']} pages written, {len(state['frontier'])} links waiting")
    else:
        state = {"start": start, "frontier": [[start, 0]], "seen": [start], "hashes": [], "written": 0,
                 "fetched": 0, "out_bytes": 0, "skipped": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab"):
        pass
    if out.stat().st_size != state["out_bytes"]:  # a write the state never recorded: drop it
        with open(out, "r+b") as fh:
            fh.truncate(state["out_bytes"])
    fetcher = _Fetcher(opts, start)
    robots = _Robots(fetcher, opts.user_agent)

    def check_hop(url: str) -> None:
        """A redirect's next hop: the same site (unless any domain), allowed by robots.txt; its address is checked
        by the fetcher before it connects."""
        if opts.same_domain and not _same_site(url, start):
            raise Refused("redirected_away")
        fetcher.address(url)
        if not robots.allowed(url):
            raise Refused("robots_disallowed")
    frontier = deque(tuple(x) for x in state["frontier"])
    seen, hashes = set(state["seen"]), set(state["hashes"])
    skipped: dict[str, int] = state["skipped"]

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    def save() -> None:
        state.update(frontier=[list(x) for x in frontier], seen=sorted(seen), hashes=sorted(hashes), skipped=skipped)
        write_json(state_file, state)

    if state["fetched"] == 0:  # first contact: a refusing host or a closed door is an error, not an empty corpus
        allowed = robots.allowed(start)  # an unreachable host is noted (not raised) by the robots fetch
        key = f"{urlsplit(start).scheme}://{urlsplit(start).netloc}"
        if key in robots.notes and "unreachable" in robots.notes[key]:
            raise CrawlError(f"crawl start URL {start}: cannot reach the host ({robots.notes[key]})")
        if not allowed:
            note = robots.notes.get(key, f"robots.txt at {key}/robots.txt disallows {urlsplit(start).path} "
                                         f"for {opts.user_agent.split('/')[0]}")
            log(f"{note}: nothing crawled")
            frontier.clear()
            skipped["robots_disallowed"] = skipped.get("robots_disallowed", 0) + 1

    pb = bar(opts.max_pages, "crawl", unit="page")
    pb.update(state["written"])
    with open(out, "ab") as fh:
        while frontier and state["written"] < opts.max_pages:
            url, depth = frontier.popleft()
            if not robots.allowed(url):
                skip("robots_disallowed")
                continue
            try:
                status, final, ctype, body = fetcher.get(url, check_hop)
            except Refused as exc:
                log(f"  {url}: not fetched ({exc})")
                skip(str(exc))
                status = None
            except (urllib.error.URLError, OSError) as exc:
                if state["fetched"] == 0:
                    raise CrawlError(f"crawl start URL {url}: cannot reach the host ({exc})") from None
                log(f"  {url}: {exc}")
                skip("unreachable")
                status = None
            state["fetched"] += 1
            if status is not None:
                final = normalize_url(final) or url
                if status != 200:
                    skip(f"http_{status}")
                elif "html" not in ctype.lower() and ctype:
                    skip("not_html")
                elif len(body) > opts.max_bytes:
                    skip("too_large")
                elif final != url and (not robots.allowed(final) or (opts.same_domain and not _same_site(final, start))):
                    skip("redirected_away")
                else:
                    html = _decode(body, ctype)
                    if depth < opts.max_depth:
                        for link in _links(html, final):
                            if link not in seen and (not opts.same_domain or _same_site(link, start)):
                                seen.add(link)
                                frontier.append((link, depth + 1))
                    doc = trafilatura.bare_extraction(html, url=final, with_metadata=True, include_comments=False,
                                                      favor_precision=True)
                    text = (doc.text or "").strip() if doc is not None else ""
                    text = text[: opts.max_chars]
                    record = _keep(text, doc, final, depth, opts, hashes, skip)
                    if record is not None:
                        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
                        fh.write(line)
                        fh.flush()
                        os.fsync(fh.fileno())
                        state["out_bytes"] += len(line)
                        state["written"] += 1
                        pb.update(1)
                        log(f"[{state['written']}/{opts.max_pages}] depth {depth} {final} ({len(text)} chars)")
            save()
    pb.close()
    save()
    return {"start": start, "written": state["written"], "fetched": state["fetched"], "waiting": len(frontier),
            "skipped": skipped, "output": str(out), "state": str(state_file), "robots_notes": list(robots.notes.values())}


def _keep(text: str, doc, url: str, depth: int, opts: CrawlOptions, hashes: set, skip) -> dict | None:
    if len(text) < opts.min_chars:
        skip("too_short")
        return None
    digest = hashlib.sha1(re.sub(r"\s+", " ", text.lower()).encode("utf-8")).hexdigest()
    if digest in hashes:
        skip("duplicate_text")
        return None
    import py3langid

    lang = py3langid.classify(text[:5000])[0]
    if opts.languages and lang not in opts.languages:
        skip(f"language_{lang}")
        return None
    hashes.add(digest)
    return {"url": url, "title": (doc.title or "") if doc is not None else "", "text": text,
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"), "depth": depth, "language": lang}
