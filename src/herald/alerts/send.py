"""Delivering alert messages: a JSON POST to a webhook, an e-mail over SMTP.

Both are blocking calls with a time limit, made on a thread of their own
(`AlertSender.pool`), never on an event loop. A receiver that fails is logged;
the message is not retried (the next state change sends again).
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

log = logging.getLogger("herald.alerts")


@dataclass(frozen=True)
class Notice:
    """One message: an episode that fired or resolved."""

    key: str
    kind: str
    state: str  # "firing" or "resolved"
    summary: str
    detail: dict[str, Any]
    since: str
    at: str
    episode: int

    def to_json(self) -> dict[str, Any]:
        """The webhook's body."""
        return {
            "source": "herald",
            "key": self.key,
            "kind": self.kind,
            "state": self.state,
            "summary": self.summary,
            "detail": self.detail,
            "since": self.since,
            "at": self.at,
            "episode": self.episode,
        }

    @property
    def subject(self) -> str:
        """The e-mail's subject."""
        tag = "RESOLVED" if self.state == "resolved" else "ALERT"
        return f"[Herald {tag}] {self.summary}"[:250]


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how alert e-mails go."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    starttls: bool = False


class AlertSender:
    """Sends notices to the webhook and by e-mail; each failure is logged, never raised."""

    def __init__(self, webhook_url: str | None, smtp: SmtpTarget | None, timeout: float = 10.0) -> None:
        self.webhook_url = webhook_url
        self.smtp = smtp
        self.timeout = timeout
        #: its own threads: a receiver that hangs until its time limit holds no database thread
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="herald-alerts")

    def send(self, notice: Notice) -> None:
        """Deliver one notice to every target (blocking, with time limits)."""
        if self.webhook_url:
            try:
                self._post(notice)
            except Exception as exc:
                log.warning("alert webhook %s failed for %s: %s", self.webhook_url, notice.key, exc)
        if self.smtp is not None and self.smtp.recipients:
            try:
                self._mail(notice)
            except Exception as exc:
                where = f"{self.smtp.host}:{self.smtp.port}"
                log.warning("alert e-mail through %s failed for %s: %s", where, notice.key, exc)

    def _post(self, notice: Notice) -> None:
        assert self.webhook_url is not None
        body = json.dumps(notice.to_json()).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    def _mail(self, notice: Notice) -> None:
        smtp = self.smtp
        assert smtp is not None
        message = EmailMessage()
        message["Subject"] = notice.subject
        message["From"] = smtp.sender
        message["To"] = ", ".join(smtp.recipients)
        message.set_content(
            f"{notice.summary}\n\nstate: {notice.state}\nsince: {notice.since}\nat: {notice.at}\n"
            f"key: {notice.key} (episode {notice.episode})\n\n{json.dumps(notice.detail, indent=2, default=str)}\n"
        )
        with smtplib.SMTP(smtp.host, smtp.port, timeout=self.timeout) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)

    def close(self) -> None:
        """Let the messages being sent finish (each within its time limit)."""
        self.pool.shutdown(wait=True)
