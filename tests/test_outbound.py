"""The outbound boundary: what it masks, what it names on screen, and what it lets through."""

from __future__ import annotations

import os

import pytest

from acytoo_magic.core.outbound import (
    Outbound,
    Secret,
    environment_secrets,
    looks_secret,
    namespace_secrets,
    url_secrets,
)

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
OPENAI = "sk-proj-" + "abcDEF0123456789xyzA" + "T3BlbkFJ" + "QRSTUV0123456789wxyz"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nQ0Zf9x2\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "name", ["api_key", "OPENAI_API_KEY", "MY_SERVICE_TOKEN", "service_token", "password", "dbPassword",
             "AWS_SECRET_ACCESS_KEY", "GITHUB_AUTH", "client_secret", "SessionCookie", "PGPASSWORD",
             "DB_PASS", "mytoken", "apitoken", "hftoken", "dbpassword", "Authorization", "openai_key",
             "hfapikey"],
)  # fmt: skip
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["key", "keys", "df", "author", "monkey", "primary_keys", "tokenizer", "passenger", "sort_key",
             "primary_key", "tokenizer_name", "compass"],
)  # fmt: skip
def test_names_that_are_data(name: str) -> None:
    assert not looks_secret(name)


def test_known_values_are_masked_by_name_and_said_once_each() -> None:
    secrets = [Secret("api_key", "sk-local-abcdef123456"), Secret("service_token", "tok-987654321")]
    boundary = Outbound(secrets)
    text = "key sk-local-abcdef123456, token tok-987654321 and again tok-987654321"
    token = "[secret: service_token]"
    assert boundary.mask(text) == f"key [secret: api_key], token {token} and again {token}"
    assert boundary.line().startswith("masked 2 secrets before sending: api_key, service_token")
    assert boundary.mask(boundary.mask(text)) == boundary.mask(text)  # masking what was masked: nothing new


@pytest.mark.parametrize(
    ("value", "kind"),
    [(GITHUB, "GitHub Token"), (OPENAI, "OpenAI Token"), (AWS, "AWS Access Key"), (SLACK, "Slack Token"),
     (JWT, "JSON Web Token")],
)  # fmt: skip
def test_known_token_formats_are_masked_without_being_configured(value: str, kind: str) -> None:
    boundary = Outbound()
    masked = boundary.mask(f"here: {value} (pasted)")
    assert value not in masked and f"[secret: {kind}]" in masked


def test_a_private_key_block_is_masked_whole() -> None:
    masked = Outbound().mask(f"the key:\n{PEM}\nend")
    assert "MIIEow" not in masked and "Q0Zf9x2" not in masked and "[secret: Private Key]" in masked


def test_secret_keywords_in_code_are_masked() -> None:
    source = 'cfg = {"user": "ana", "password": "hunter2-correct"}\ndb_password = "s3cr3t-horse"'
    masked = Outbound().mask(source)
    assert "hunter2-correct" not in masked and "s3cr3t-horse" not in masked and '"ana"' in masked


def test_namespace_and_environment_secrets() -> None:
    namespace = {
        "service_token": GITHUB,
        "cfg": {"user": "ana", "password": "hunter2-correct"},
        "keys": ["a", "b"],
        "df_name": "sales",
        "_private_token": "not-the-users-123456",
    }
    found = {s.name: s.value for s in namespace_secrets(namespace)}
    assert found == {"service_token": GITHUB, "cfg['password']": "hunter2-correct"}
    env = {"MY_SERVICE_TOKEN": "tok-abcdef123", "HOME": "/home/ana", "PATH": "/usr/bin", "PWD": "/home/ana"}
    assert [s.name for s in environment_secrets(env)] == ["MY_SERVICE_TOKEN"]  # PWD: a directory
    proxy = "http://alice:pa55word-x@proxy:3128/?key=AIzaQueryKey-0123&page=2"
    assert [s.value for s in url_secrets("proxy", proxy)] == ["pa55word-x", "AIzaQueryKey-0123"]  # not alice


def test_allowed_names_go_as_they_are_even_in_a_known_format() -> None:
    secrets = [Secret("service_token", GITHUB), Secret("api_key", "sk-local-abcdef123456")]
    boundary = Outbound(secrets, {"service_token"})
    masked = boundary.mask(f"{GITHUB} sk-local-abcdef123456")
    assert masked == f"{GITHUB} [secret: api_key]"


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    boundary = Outbound([Secret("AUTH_ENABLED", "true"), Secret("token", "abc")])
    text = "the groupby returned NaN for true values; abc"
    assert boundary.mask(text) == text and boundary.line() == ""


def test_messages_and_tool_call_arguments_are_masked() -> None:
    boundary = Outbound([Secret("service_token", "tok-987654321")])
    call = {"id": "1", "type": "function", "function": {"name": "x", "arguments": '{"t": "tok-987654321"}'}}
    messages = [
        {"role": "user", "content": "use tok-987654321"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "1", "content": "got tok-987654321"},
    ]
    sent = boundary.mask_messages(messages)
    assert "tok-987654321" not in repr(sent) and "tok-987654321" in repr(messages)  # copies, not edits


def test_the_environment_the_process_has() -> None:
    os.environ["ACYTOO_TEST_SECRET_TOKEN"] = "tok-from-env-123456"
    try:
        assert Secret("ACYTOO_TEST_SECRET_TOKEN", "tok-from-env-123456", named=True) in environment_secrets()
    finally:
        del os.environ["ACYTOO_TEST_SECRET_TOKEN"]


@pytest.mark.parametrize("name", ["OPENAI_KEY", "GEMINI_KEY", "SORT_KEY"])
def test_any_environment_key_is_secret(name: str) -> None:
    assert looks_secret(name, environment=True)


@pytest.mark.parametrize(
    ("value", "kind"),
    [("hf_" + "a1B2" * 9, "Hugging Face Token"), ("sk-ant-api03-" + "Zx9_" * 10, "Anthropic Key"),
     ("AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "Google API Key"), ("gsk_" + "q1W2" * 8, "Groq Key")],
)  # fmt: skip
def test_the_formats_of_the_providers_this_extension_calls(value: str, kind: str) -> None:
    masked = Outbound().mask(f"pasted: {value} (from the settings page)")
    assert value not in masked and f"[secret: {kind}]" in masked


def test_a_bearer_token_and_a_secret_named_assignment_are_masked_without_a_namespace() -> None:
    boundary = Outbound()
    text = (
        'headers = {"Authorization": "Bearer opaqueTOKENvalue-0123456789"}\n'
        'service_token = "opaque-token-4821-x"\nos.environ["MY_SERVICE_TOKEN"] = "env-token-77812-q"'
    )
    masked = boundary.mask(text)
    assert "opaqueTOKENvalue" not in masked and "opaque-token-4821-x" not in masked
    assert "env-token-77812-q" not in masked and "[secret: service_token]" in masked
    assert "MY_SERVICE_TOKEN" in boundary.line()


def test_a_plain_word_found_by_its_name_is_not_masked_everywhere() -> None:
    boundary = Outbound(namespace_secrets({"token": "pandas", "password": "hunter2-zebra"}))
    text = "How do I merge in pandas and geopandas? hunter2-zebra"
    assert boundary.mask(text) == "How do I merge in pandas and geopandas? [secret: password]"


def test_credentials_in_a_tuple_and_a_number_count() -> None:
    namespace = {"auth": ("ana", "Hunter2-Zebra"), "api_key": 83920174}
    found = {s.name: s.value for s in namespace_secrets(namespace)}
    assert found == {"auth[0]": "ana", "auth[1]": "Hunter2-Zebra", "api_key": "83920174"}
    boundary = Outbound(namespace_secrets({"auth": ("ana", "Hunter2-Zebra")}))
    assert boundary.mask("user ana, Hunter2-Zebra") == "user ana, [secret: auth[1]]"


def test_a_format_name_can_be_sent_anyway() -> None:
    assert GITHUB in Outbound(allow={"GitHub Token"}).mask(f"token {GITHUB}")


def test_refresh_reads_secrets_made_since() -> None:
    namespace: dict[str, object] = {}
    boundary = Outbound(lambda: namespace_secrets(namespace))
    assert boundary.mask("pw Sw0rdfish-Zebra") == "pw Sw0rdfish-Zebra"
    namespace["settings"] = {"password": "Sw0rdfish-Zebra"}  # approved code made it
    boundary.refresh()
    assert boundary.mask("pw Sw0rdfish-Zebra") == "pw [secret: settings['password']]"


def test_marks_made_upstream_are_counted_as_masked() -> None:
    boundary = Outbound()
    boundary.mask("cfg: {'password': '[secret: cfg['password']]'}")
    assert "cfg['password']" in boundary.line()
