"""The CLI as a user types it: wrong arguments get a clear message and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Herald


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "list", "--state", "exploded"], "unknown state 'exploded'"),
        (["runs", "list", "--limit", "0"], "--limit"),
        (["dags", "trigger", "nope"], "no DAG 'nope'"),
        (["dags", "trigger", "nope", "--conf", "{bad"], "--conf is not valid JSON"),
        (["events", "emit", "ghost"], "no asset 'ghost'"),
        (["publish", "carrier-pigeon://x", "hi"], "no trigger for scheme 'carrier-pigeon'"),
        (["publish", "local://q", "@/no/such/file"], "no file"),
        (["runs", "show", "missing-run"], "no run 'missing-run'"),
        (["tasks", "logs", "missing-run", "t"], "no run 'missing-run'"),
        (["frobnicate"], "No such command"),
    ],
)
def test_wrong_arguments_exit_2_with_a_message(herald: Herald, args: list[str], message: str) -> None:
    result = herald.run_cli_process(*args)
    assert result.returncode == 2, result
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_listings_print_one_json_array(herald: Herald) -> None:
    for listing in (
        ["dags", "list"],
        ["runs", "list"],
        ["assets", "list"],
        ["events", "list"],
        ["watchers", "list"],
        ["dead-letters", "list"],
        ["dags", "errors"],
    ):
        result = herald.run_cli_process(*listing, "--output", "json")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"


def test_publish_from_a_file_and_emit_an_event(herald: Herald) -> None:
    herald.write_dag(
        "files",
        """
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        inbox = Asset("inbox", watchers=[AssetWatcher("w", MessageQueueTrigger("local://inbox"))])
        manual = Asset("manual")

        @dag(schedule=inbox | manual)
        def files():
            @task
            def read(triggering_asset_events):
                return [e.extra.get("payload", e.extra) for evs in triggering_asset_events.values() for e in evs]
            read()

        files()
        """,
    )
    herald.start()
    body = herald.home / "body.json"
    body.write_text('{"from": "file"}')
    result = herald.run_cli_process("publish", "local://inbox", f"@{body}")
    assert result.returncode == 0, result.stderr
    result = herald.run_cli_process("events", "emit", "manual", "--extra", '{"note": "by hand"}')
    assert result.returncode == 0, result.stderr
    runs = herald.wait_runs(2, "files")
    results = sorted(str(herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"]) for r in runs)
    assert results == ["[{'from': 'file'}]", "[{'note': 'by hand'}]"]
    sources = {e["source"] for e in herald.cli_json("events", "list")}
    assert sources == {"cli", f"watcher:{herald.cli_json('watchers', 'list')[0]['id']}"}
