"""Secrets never reach what a run writes: redaction of configs and text."""

from cmt.secrets import REDACTED, redact_config, redact_text, secret_values


def test_secret_environment_values_are_found_and_removed_from_text(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdef")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("SHORT_TOKEN", "abc")
    monkeypatch.setenv("MAX_NEW_TOKENS", "512")
    secrets = secret_values()
    assert {"sk-test-1234567890abcdef", "hf_abcdefghijklmnop"} <= secrets
    assert "abc" not in secrets and "512" not in secrets
    text = "calling with sk-test-1234567890abcdef and hf_abcdefghijklmnop"
    assert redact_text(text, secrets) == f"calling with {REDACTED} and {REDACTED}"


def test_config_redaction_blanks_secret_keys_and_values_but_keeps_variable_names():
    config = {"teacher": {"api_key": "literal-key-value", "api_key_env": "OPENAI_API_KEY",
                          "base_url": "http://127.0.0.1:8000/v1", "headers": ["x", "sk-live-9999999999"]},
              "model": {"hparams": {"max_new_tokens": 96}}, "token": None}
    redacted = redact_config(config, secrets={"sk-live-9999999999"})
    assert redacted["teacher"]["api_key"] == REDACTED
    assert redacted["teacher"]["api_key_env"] == "OPENAI_API_KEY"
    assert redacted["teacher"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert redacted["teacher"]["headers"] == ["x", REDACTED]
    assert redacted["model"]["hparams"]["max_new_tokens"] == 96
    assert redacted["token"] is None
