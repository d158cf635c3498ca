"""The glob dialect of `include_patterns` / `exclude_patterns`: one normalisation and one
compile, used both when the config is validated and when files are matched, so a pattern that
validates is exactly the pattern that matches."""

from __future__ import annotations

import functools
from typing import Any

from wcmatch import glob

GLOB_CHARS = "*?[{"
BRACE_LIMIT = 1000
"""Most patterns one brace expression may expand to (wcmatch's own default, made explicit)."""


def glob_flags(case_sensitive: bool) -> int:
    flags = glob.GLOBSTAR | glob.DOTMATCH | glob.BRACE
    return flags | (glob.CASE if case_sensitive else glob.IGNORECASE)


def normalize_pattern(pattern: str) -> str:
    """Rewrite a user's pattern into the anchored glob we match against the relative path.

    - no `/` (`*.mp4`, `*_temp.*`): the file name, at any depth → `**/*.mp4`
    - a trailing `/` (`drafts/`): that folder at any depth and everything below it
    - a leading `/` anchors at source_path; otherwise a leading `*/` means any folder depth
      (`*/drafts/*` matches `drafts/a.mp4` and `x/y/drafts/a.mp4`), and a trailing `/*` means
      everything below (`*/drafts/*` matches `x/drafts/sub/a.mp4`)
    """
    p = pattern.strip()
    anchored = p.startswith("/")
    p = p.lstrip("/")
    if p.endswith("/"):
        p = p.rstrip("/")
        if not anchored and p.startswith("*/"):
            p = "**/" + p[2:]
        elif not anchored and "/" not in p:
            p = "**/" + p
        return p + "/**"
    if "/" not in p:
        return p if anchored else "**/" + p
    if not anchored and p.startswith("*/"):
        p = "**/" + p[2:]
    if p.endswith("/*"):
        p = p[:-2] + "/**"
    return p


@functools.lru_cache(maxsize=256)
def compile_patterns(patterns: tuple[str, ...], case_sensitive: bool) -> Any:
    """One wcmatch matcher for the patterns (any of them matches). Raises ValueError."""
    try:
        return glob.compile(
            [normalize_pattern(p) for p in patterns],
            flags=glob_flags(case_sensitive),
            limit=BRACE_LIMIT,
        )
    except Exception as e:  # wcmatch raises its own types (PatternLimitException, ...)
        raise ValueError(str(e)) from None


def _unclosed(pattern: str) -> str | None:
    """The bracket a pattern opens and never closes. wcmatch reads such a pattern as literal
    text, which then matches (almost) nothing: a typo, not an intent."""
    i, braces = 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1  # a leading ']' is a member of the class, not its end
            close = pattern.find("]", j)
            if close == -1:
                return "["
            i = close + 1
            continue
        if c == "{":
            braces += 1
        elif c == "}" and braces:
            braces -= 1
        i += 1
    return "{" if braces else None


def pattern_problem(pattern: str, case_sensitive: bool = True) -> str | None:
    """Why a pattern cannot be used, or None. The check and `compile_patterns` are the ones
    matching uses."""
    if not pattern.strip().strip("/"):
        return f"'{pattern}' names no file or folder"
    if "\x00" in pattern:
        return "a pattern cannot contain a NUL character"
    bracket = _unclosed(pattern)
    if bracket is not None:
        return (
            f"'{pattern}' opens '{bracket}' and never closes it (write '\\{bracket}' for a "
            f"literal '{bracket}')"
        )
    try:
        compile_patterns((pattern,), case_sensitive)
    except ValueError as e:
        return f"'{pattern}' cannot be compiled: {e}"
    return None
