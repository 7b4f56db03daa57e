"""The alert settings read from the environment."""

from __future__ import annotations

import pytest

from herald.config import Settings


def test_alerts_are_off_until_they_have_somewhere_to_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERALD_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("HERALD_ALERT_SMTP_HOST", raising=False)
    assert not Settings().alerts_enabled
    monkeypatch.setenv("HERALD_ALERT_SMTP_HOST", "mail.example.com")
    assert not Settings().alerts_enabled  # a server without recipients sends nothing
    monkeypatch.setenv("HERALD_ALERT_SMTP_TO", " ops@example.com, ,oncall@example.com ")
    settings = Settings()
    assert settings.alerts_enabled and settings.alert_recipients == ["ops@example.com", "oncall@example.com"]


def test_a_threshold_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_ALERT_WATCHER_LAG", "off")
    monkeypatch.setenv("HERALD_ALERT_LATENCY_SECONDS", "2.5")
    settings = Settings()
    assert settings.alert_watcher_lag is None and settings.alert_latency_seconds == 2.5
    monkeypatch.setenv("HERALD_ALERT_WATCHER_LAG", "-1")
    with pytest.raises(ValueError, match="alert_watcher_lag"):
        Settings()
