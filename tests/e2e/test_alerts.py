"""Alerts end to end: `herald standalone` sends to a local HTTP receiver and a real SMTP server (aiosmtpd).

A watcher pointed at a port nobody listens on fires one alert, however many
passes see it down; a DAG whose runs fail fires one alert, resolved by its next
successful run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Herald, free_port


class Receiver:
    """A local webhook receiver: the JSON bodies POSTed to it, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, key: str, state: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["key"] == key and b["state"] == state]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server on a free port (aiosmtpd), keeping every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    m = Mailbox()
    yield m
    m.close()


ALERT_DAGS = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("dead_redis", MessageQueueTrigger({url!r}))])

@dag(schedule=[jobs])
def consumes_jobs():
    @task
    def handle():
        return 1
    handle()

@dag()
def flaky():
    @task
    def work(dag_run):
        if not dag_run.conf.get("ok"):
            raise RuntimeError("the job failed on purpose")
        return "ok"
    work()

consumes_jobs()
flaky()
"""


def test_watcher_down_and_failing_dag_alert_once_and_resolve(
    herald: Herald, receiver: Receiver, mailbox: Mailbox
) -> None:
    # Given a watcher on a broker port nobody listens on, and a DAG that fails unless asked not to
    dead = f"redis://127.0.0.1:{free_port()}/0?stream=alerts&group=herald"
    herald.write_dag("alerting", ALERT_DAGS.format(url=dead))
    herald.start(
        {
            "HERALD_ALERT_WEBHOOK_URL": receiver.url,
            "HERALD_ALERT_SMTP_HOST": "127.0.0.1",
            "HERALD_ALERT_SMTP_PORT": str(mailbox.port),
            "HERALD_ALERT_SMTP_TO": "ops@example.com, oncall@example.com",
            "HERALD_ALERT_INTERVAL": "0.3",
            "HERALD_ALERT_WATCHER_AFTER": "1",
        }
    )

    # Then the watcher's alert fires, by webhook and by e-mail
    watcher = herald.wait_for(
        lambda: [b for b in receiver.bodies if b["kind"] == "watcher_down"], 60, "the watcher's alert"
    )[0]
    assert watcher["state"] == "firing" and watcher["detail"]["watcher"] == "dead_redis"
    assert watcher["detail"]["state"] in ("reconnecting", "failed", "starting")
    herald.wait_for(lambda: any("dead_redis" in s for s in mailbox.subjects()), 30, "the watcher's e-mail")

    # When runs of the DAG fail twice
    failing = "dag:flaky:failing"
    herald.cli("dags", "trigger", "flaky")
    herald.wait_for(lambda: receiver.of(failing, "firing"), 60, "the failing DAG's alert")
    herald.cli("dags", "trigger", "flaky")
    herald.wait_runs(2, "flaky")
    # and then one succeeds
    herald.cli("dags", "trigger", "flaky", "--conf", '{"ok": true}')
    resolved = herald.wait_for(lambda: receiver.of(failing, "resolved"), 60, "the failing DAG's resolution")

    # Then the DAG fired once (not once per failed run nor per pass), and resolved once
    (fired,) = receiver.of(failing, "firing")
    assert "work: RuntimeError: the job failed on purpose" in fired["summary"]
    assert fired["detail"]["failed_tasks"] == ["work"]
    assert len(resolved) == 1 and resolved[0]["episode"] == fired["episode"]
    # the watcher, still down through every pass since, fired once
    assert len(receiver.of(watcher["key"], "firing")) == 1
    assert receiver.of(watcher["key"], "resolved") == []
    # and each went by e-mail too, to both recipients
    herald.wait_for(lambda: any("RESOLVED" in s and "flaky" in s for s in mailbox.subjects()), 30, "e-mails")
    flaky_alerts = [m for m in mailbox.messages if "[Herald ALERT]" in m["Subject"] and "flaky" in m["Subject"]]
    assert len(flaky_alerts) == 1
    assert flaky_alerts[0]["To"] == "ops@example.com, oncall@example.com"
    assert fired["detail"]["run_id"] in flaky_alerts[0].get_payload()
    # and `herald alerts list` shows both episodes
    listed = {(a["key"], a["state"]) for a in herald.cli_json("alerts", "list")}
    assert {(failing, "resolved"), (watcher["key"], "firing")} <= listed
    code, out = herald.cli("alerts", "list", "--state", "nope")
    assert code == 2 and "unknown state" in out
