"""API keys: read from --api-key, --api-keys-file and FOUNDRY_API_KEYS, each checked (16+ characters, never empty)."""

from __future__ import annotations

import os
from pathlib import Path

MIN_KEY_CHARS = 16
KEYS_ENV = "FOUNDRY_API_KEYS"
"""Keys, comma- or newline-separated, from the environment (argv shows in `ps`; the environment does not)."""


def read_keys_file(path: str | Path) -> set[str]:
    """One key per line; blank lines and # comments skipped."""
    return {line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")}


def check_keys(keys: list[str], source: str) -> set[str]:
    """Refuse an empty key (an unset shell variable: `--api-key "$KEY"`) and short ones: an empty key compares equal
    to a missing header, which turned authentication off."""
    for i, k in enumerate(keys, 1):
        if len(k.strip()) < MIN_KEY_CHARS:
            what = "empty" if not k.strip() else f"{len(k.strip())} characters"
            raise ValueError(f"{source}: API key {i} of {len(keys)} is {what}; keys need {MIN_KEY_CHARS}+ characters "
                             "(make one: python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return {k.strip() for k in keys}


def gather_keys(argv_keys: list[str] | None = None, keys_file: str | None = None,
                environ: dict | None = None) -> set[str]:
    """The keys from --api-key, --api-keys-file and FOUNDRY_API_KEYS together, each checked."""
    environ = os.environ if environ is None else environ
    keys = check_keys(list(argv_keys or []), "--api-key")
    if keys_file:
        file_keys = read_keys_file(keys_file)
        if not file_keys:
            raise ValueError(f"--api-keys-file {keys_file}: holds no key")
        keys |= check_keys(sorted(file_keys), f"--api-keys-file {keys_file}")
    if KEYS_ENV in environ:
        env_keys = [k for k in environ[KEYS_ENV].replace("\n", ",").split(",") if k.strip()]
        keys |= check_keys(env_keys or [""], KEYS_ENV)  # set but empty: an unset variable's expansion
    return keys
