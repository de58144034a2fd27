"""`foundry data`: profile a data set (duplicates, leakage, label errors, drift), clean a copy, or crawl a web site into a text corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.runs import write_json
from ..data import read_frame
from ..data.audit import audit
from ..data.crawl import CrawlOptions, crawl
from ..data.pii import summary as pii_summary
from ..data.repair import clean_data
from ..data.report import write_data_report
from .common import add_raw_csv, add_set, data_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["profile", "clean", "crawl"])
    p.add_argument("source", help="a config file, or (profile) a data file with --target, or (crawl) the start URL")
    p.add_argument("--target", help="the label column (for a bare data file)")
    p.add_argument("--against", help="profile: another file to measure drift against (PSI, KS per column)")
    p.add_argument("-o", "--output-dir", help="profile: where data_profile.json and data_report.html go (default .); "
                   "clean: the folder for the cleaned copy and changes.csv; crawl: the corpus file (.jsonl)")
    p.add_argument("--no-label-issues", action="store_true", help="profile: skip the label-error search")
    add_raw_csv(p)
    g = p.add_argument_group("crawl (-o names the .jsonl corpus; its .state.json beside it makes a crawl resumable)")
    g.add_argument("--max-pages", type=int, default=100, help="pages to write (default 100)")
    g.add_argument("--max-depth", type=int, default=2, help="links to follow from the start page (default 2)")
    g.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host (default 1; "
                   "robots.txt's Crawl-delay wins when larger)")
    g.add_argument("--min-chars", type=int, default=200, help="drop pages with less text after boilerplate removal")
    g.add_argument("--language", action="append", help="keep only this language (ISO 639-1, e.g. en; repeatable)")
    g.add_argument("--any-domain", action="store_true", help="follow links to other hosts too")
    g.add_argument("--allow-private", action="store_true", help="fetch hosts other than the start URL's that resolve "
                   "to private, loopback or link-local addresses (an intranet crawl); refused by default")
    g.add_argument("--user-agent", help="the User-Agent sent and matched against robots.txt")
    add_set(p)


def cmd_crawl(args) -> int:
    if not args.output_dir or not args.output_dir.endswith((".jsonl", ".ndjson")):
        raise ValueError(f"foundry data crawl: -o must name the corpus file, ending in .jsonl (got {args.output_dir!r})")
    opts = CrawlOptions(max_pages=args.max_pages, max_depth=args.max_depth, delay=args.delay,
                        same_domain=not args.any_domain, min_chars=args.min_chars, languages=args.language or [],
                        allow_private=args.allow_private,
                        **({"user_agent": args.user_agent} if args.user_agent else {}))
    summary = crawl(args.source, args.output_dir, opts)
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    print(f"{summary['written']} pages written ({summary['fetched']} fetched, {summary['waiting']} links left "
          f"unvisited; skipped: {skipped}); state -> {summary['state']}", file=sys.stderr)
    print(summary["output"])
    return 0


def run(args) -> int:
    if args.action == "crawl":
        return cmd_crawl(args)
    cfg = data_config(args.source, args.target, args.overrides)
    if args.action == "profile":
        against = read_frame(cfg, str(Path(args.against).resolve())) if args.against else None
        report = audit(cfg, against=against, with_label_issues=False if args.no_label_issues else None)
        out = Path(args.output_dir or ".")
        write_json(out / "data_profile.json", report)
        page = write_data_report(report, out, cfg.name)
        li = report.get("label_issues", {})
        print(f"{report['rows']} rows: {report['duplicates']['count']} duplicates, {report['near_duplicates']['count']} "
              f"near duplicates, {report['leakage']['held_out_rows']} held-out rows leaked from training"
              + (f", {li['flagged']} likely label errors" if "flagged" in li else "")
              + (f", drift in {len(report['drift']['flagged'])} columns" if "drift" in report else "")
              + (f"; personal data: {pii_summary(report['pii'])}" if report["pii"] else ""), file=sys.stderr)
        print(page)
        return 0
    if not args.output_dir:
        raise ValueError("foundry data clean: give -o OUT_DIR (the original file is never overwritten)")

    out, log, _ = clean_data(cfg, args.output_dir, raw_csv=args.raw_csv)
    counts = log["action"].value_counts().to_dict() if len(log) else {}
    print(f"{len(log)} changes ({', '.join(f'{k}: {v}' for k, v in counts.items()) or 'none'}); "
          f"log -> {Path(args.output_dir) / 'changes.csv'}", file=sys.stderr)
    print(out)
    return 0
