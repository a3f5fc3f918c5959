"""Log redaction: secrets in key=value pairs, quoted and JSON values, URLs, authorization
headers and tokens are masked, in messages, arguments and tracebacks; ids and figures are not."""

import io
import json
import logging

import pytest

from app.logging_config import REDACTED, JsonFormatter, RedactSecrets, redact_text, redact_value

# (text, the secret that must disappear, what must stay)
MASKED = [
    ('password="hunter2"', "hunter2", 'password="***"'),
    ("password='hunter2'", "hunter2", "password='***'"),
    ("password=hunter2 next=1", "hunter2", "next=1"),
    ("password: hunter2", "hunter2", "password: ***"),
    ("secret_key = 'two words'", "two words", "secret_key = '***'"),
    ("{'token': 'orch_abc'}", "orch_abc", "{'token': '***'}"),
    ('{"Authorization": "Bearer x"}', "Bearer x", '{"Authorization": "***"}'),
    ("Authorization: Bearer x", " x", "Authorization: Bearer ***"),
    ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "authorization=Basic ***"),
    ("Proxy-Authorization: Digest abc123", "abc123", "Proxy-Authorization: Digest ***"),
    ('{"api_key": "k-123", "n": 1}', "k-123", '"n": 1'),
    ('{"api_key":"k-123","n":1}', "k-123", '"n":1'),
    ('{"apiKey": "k-456"}', "k-456", '"apiKey"'),
    ('{"password": "with \\"escaped\\" quotes"}', "escaped", '{"password": "***"}'),
    ('{\\"password\\": \\"hunter2\\", \\"user\\": \\"bob\\"}', "hunter2", '\\"user\\": \\"bob\\"'),
    ('{"credentials": {"user": "a", "password": "b-secret"}}', "b-secret", '"credentials"'),
    ('"api_keys": ["key-one", "key-two"]', "key-one", '"api_keys"'),
    (
        "headers={'Authorization': 'Basic YWRtaW46cGFzcw==', 'Accept': 'json'}",
        "YWRtaW46",
        "'Accept': 'json'",
    ),
    ('[("Authorization", "Bearer abc"), ("Accept", "json")]', "abc", '("Accept", "json")'),
    ("Cookie: session=abc123; csrftoken=def456", "def456", "Cookie: ***"),
    ("Set-Cookie: sid=abc123; Path=/", "abc123", "Set-Cookie: ***"),
    ("x-auth-token: abc123", "abc123", "x-auth-token: ***"),
    ("FLOWER_BASIC_AUTH=admin:flowerpw", "flowerpw", "FLOWER_BASIC_AUTH=***"),
    ("celery flower --basic-auth=admin:flowerpw", "flowerpw", "celery flower"),
    ("opencode --password hunter2 --verbose", "hunter2", "--verbose"),
    ("PGPASSWORD=pgpw psql", "pgpw", "psql"),
    ("AWS_SECRET_ACCESS_KEY=cloudpw", "cloudpw", "AWS_SECRET_ACCESS_KEY=***"),
    ("client_secret=xyz&grant_type=code", "xyz", "grant_type=code"),
    ("GET /cb?access_token=tok123&state=ok", "tok123", "state=ok"),
    ('detail="password=hunter2"', "hunter2", "detail="),
    ('password="a line cut in the midd', "a line", 'password="***'),
    ("postgresql://user:pass@host/db", "pass@", "postgresql://user:***@host/db"),
    ("postgresql+psycopg2://orch:topsecret@db:5432/orch", "topsecret", "@db:5432/orch"),
    ("redis://:s3cret@127.0.0.1:6379/0", "s3cret", "redis://:***@127.0.0.1:6379/0"),
    ("postgresql://u:p@ss@host/db", "ss@", "postgresql://u:***@host/db"),
    ("git clone https://ghp_abc123def@github.com/o/r.git", "ghp_abc123def", "@github.com/o/r.git"),
    ("https://x-access-token:ghs_123@github.com", "ghs_123", "https://x-access-token:***@"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJzdWIi", "sent Bearer"),
    ("jwt in a url ?t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJzdWIi", "?t="),
    ("token orch_Ab12Cd34Ef56Gh78 was used", "Ab12Cd34", "orch_***"),
    (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----\ntail",
        "MIIEabc",
        "tail",
    ),
]

# Lines that must come out unchanged: ids, counts, fencing tokens, prose.
KEPT = [
    "task_id=abc token_id=42 total_tokens=100 fence_token=7 max_tokens=5",
    "tokens=1234 author=Jane",
    "agent_id=a1 session_id=s1 task_id=t1 status=ok",
    "uses basic settings; token counting is on",
    "auth forbidden token_id=5 scope=admin path=/api/v1/tokens",
    "the passing tests: 12",
]


@pytest.mark.parametrize(("text", "secret", "kept"), MASKED)
def test_secrets_are_masked(text, secret, kept):
    redacted = redact_text(text)
    assert secret not in redacted, redacted
    assert kept in redacted, redacted
    assert REDACTED in redacted
    assert redact_text(redacted) == redacted  # masking twice changes nothing


@pytest.mark.parametrize("text", KEPT)
def test_ids_figures_and_prose_are_kept(text):
    assert redact_text(text) == text


def test_values_under_secret_keys_of_logged_structures_are_masked():
    config = {"username": "admin", "password": "pw", "basic_auth": "a:b", "env": {"API_TOKEN": "t"},
              "nested": [{"api_key": "k"}], "tokens": 5, "url": "redis://:pw2@h:1/0"}  # fmt: skip
    assert redact_value(config) == {
        "username": "admin", "password": REDACTED, "basic_auth": REDACTED,
        "env": {"API_TOKEN": REDACTED}, "nested": [{"api_key": REDACTED}], "tokens": 5,
        "url": f"redis://:{REDACTED}@h:1/0",
    }  # fmt: skip


def log_through_filter(logger_name: str, emit, formatter=None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(formatter or logging.Formatter("%(message)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_the_filter_masks_messages_arguments_and_tracebacks():
    def emit(logger):
        logger.warning('agent config=%s header="%s"', {"password": "pw-1"}, "Bearer tok-2 ")
        logger.warning("connect to %s", "postgresql://u:pw-3@h/db")
        try:
            raise RuntimeError('{"api_key": "pw-4"}')
        except RuntimeError:
            logger.exception("failed")

    text = log_through_filter("test.redaction.plain", emit)
    for secret in ("pw-1", "tok-2", "pw-3", "pw-4"):
        assert secret not in text, text
    assert "failed" in text and "RuntimeError" in text


def test_json_lines_are_masked_too():
    def emit(logger):
        logger.warning("login password='pw-5' session_id=s1")

    entry = json.loads(log_through_filter("test.redaction.json", emit, JsonFormatter()))
    assert "pw-5" not in entry["message"] and entry["session_id"] == "s1"
