"""Shared by every stage and importing none of them (the bottom layer of ARCHITECTURE.md). It holds the one HTML page
template (`html.page`) so far; run-directory I/O, the input spec and batching move here next (issue 20)."""

from .html import page

__all__ = ["page"]
