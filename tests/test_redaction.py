"""The redaction choke point on its own: what `redact()` masks, and the places that call it
without being asked (an exception mixsync raises, its cause, a log record, CLI output)."""

from __future__ import annotations

import io
import json
import logging
import sys
from urllib.parse import quote, quote_plus

import pytest

from mixsync_dagster.errors import ConfigProblem, ProviderError
from mixsync_dagster.redaction import (
    get_logger,
    guard_streams,
    redact,
    redact_value,
    register,
    scrub_exception,
)

SECRET = "Redaction-Test-Secret/Value with space+plus"
VAR = "MIXSYNC_REDACTION_TEST"
MULTILINE = '{\n  "type": "service_account",\n  "private_key": "Redaction-Test-PEM-body"\n}'


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register(SECRET, VAR)
    register(MULTILINE, "MIXSYNC_REDACTION_JSON")


CASES = [
    ("as_is", f"at {SECRET} now", f"at ${{{VAR}}} now"),
    ("lower_cased", f"at {SECRET.lower()} now", f"at ${{{VAR}}} now"),
    ("upper_cased", f"at {SECRET.upper()} now", f"at ${{{VAR}}} now"),
    ("url_quoted", f"GET /x/{quote(SECRET, safe='')}/y", f"GET /x/${{{VAR}}}/y"),
    ("path_quoted", f"file:///{quote(SECRET)}/a", f"file:///${{{VAR}}}/a"),
    ("form_quoted", f"q={quote_plus(SECRET)}", f"q=${{{VAR}}}"),
    ("json_escaped", json.dumps({"k": SECRET}), '{"k": "${' + VAR + '}"}'),
    ("userinfo", "see http://user:pass@host:9/x", "see http://***@host:9/x"),
    ("userinfo_at_in_password", "postgresql://u:p@ss@db/x", "postgresql://***@db/x"),
    ("user_only", "https://token@api.example.com/v1", "https://***@api.example.com/v1"),
    ("no_userinfo", "https://api.example.com/v1?a=b@c", "https://api.example.com/v1?a=b@c"),
    ("email_is_not_a_url", "write to ops@example.com", "write to ops@example.com"),
    ("multiline_line", '  "private_key": "Redaction-Test-PEM-body"', "  ${MIXSYNC_REDACTION_JSON}"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_short_and_empty_values_are_not_registered() -> None:
    register("abc", "MIXSYNC_REDACTION_SHORT")
    register("", "MIXSYNC_REDACTION_EMPTY")
    assert redact("abc abcd") == "abc abcd"


def test_redact_value_walks_json() -> None:
    got = redact_value({"a": [SECRET, 1, {"b": f"x{SECRET}"}], "c": None})
    assert got == {"a": [f"${{{VAR}}}", 1, {"b": f"x${{{VAR}}}"}], "c": None}


def test_a_mixsync_error_and_its_cause_are_redacted() -> None:
    """`raise ProviderError(...) from err`: Dagster shows both messages."""
    try:
        try:
            raise OSError(2, "No such file", f"/data/{SECRET}/a.txt")
        except OSError as err:
            raise ProviderError(f"cannot read {SECRET}") from err
    except ProviderError as e:
        assert str(e) == f"cannot read ${{{VAR}}}"
        cause = e.__cause__
        assert isinstance(cause, OSError)
        assert SECRET not in str(cause) and f"${{{VAR}}}" in str(cause)


def test_scrub_exception_walks_the_chain() -> None:
    inner = ValueError(f"inner {SECRET}")
    outer = RuntimeError(f"outer http://u:pw@h/{SECRET}")
    outer.__context__ = inner
    scrub_exception(outer)
    assert str(outer) == f"outer http://***@h/${{{VAR}}}"
    assert str(inner) == f"inner ${{{VAR}}}"


def test_config_problem_is_redacted_and_one_line() -> None:
    p = ConfigProblem(sync="s", field="a\nb", message=f"bad {SECRET}\nreally", fix="fix\tit")
    assert "\n" not in str(p) and "\t" not in str(p)
    assert SECRET not in str(p) and f"${{{VAR}}}" in str(p)


def test_log_records_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = get_logger("mixsync.test_redaction")
    log.addHandler(handler)
    try:
        log.warning("endpoint %s refused: %s", f"http://k:v@h/{SECRET}", "x")
        try:
            raise ValueError(f"boom {SECRET}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text and "k:v@" not in text
    assert f"http://***@h/${{{VAR}}} refused: x" in text
    assert f"boom ${{{VAR}}}" in text


def test_guarded_streams_redact_whole_lines_even_when_split(
    capsys: pytest.CaptureFixture[str],
) -> None:
    half = len(SECRET) // 2
    with guard_streams():
        sys.stdout.write("a " + SECRET[:half])
        sys.stdout.write(SECRET[half:] + " b\n")
        print(f"err {SECRET}", file=sys.stderr)
        sys.stdout.write(f"tail {SECRET}")  # no newline: written when the block ends
    out, err = capsys.readouterr()
    assert out == f"a ${{{VAR}}} b\ntail ${{{VAR}}}"
    assert err == f"err ${{{VAR}}}\n"
