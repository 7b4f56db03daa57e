"""The CLI as a user types it: wrong arguments get a clear message and exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import HERALD, Herald
from tests.e2e.standalone_per_db import drop_database, fresh_database

MANUAL_DAG = """
from herald import dag, task

@dag(schedule=None)
def by_hand():
    @task
    def only():
        return 1
    only()

by_hand()
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def one_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    """One Herald home (not started) per database for the refused commands: none of them writes."""
    home = tmp_path_factory.mktemp(f"cli-{request.param}")
    url, name = fresh_database(request.param, home)
    try:
        yield Herald(home / "home", url)
    finally:
        drop_database(name)


def _sync_dags(herald: Herald) -> None:
    """Load the DAGs folder into the database as a DAG processor would, without starting Herald."""
    from herald.config import normalise_database_url
    from herald.loader import load_folder
    from herald.store.db import make_engine
    from herald.store.migrate import upgrade
    from herald.store.sync import sync_bag

    engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
    upgrade(engine)
    sync_bag(engine, load_folder(herald.dags))
    engine.dispose()


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
        (["runs", "retry", "missing-run"], "no run 'missing-run'"),
        (["events", "replay", "7"], "no event 7"),
        (["dead-letters", "replay"], "name one dead letter, or --watcher ID"),
        (["dead-letters", "replay", "--watcher", "5"], "no watcher 5"),
        (["tokens", "create", "--scope", "root"], "unknown scope 'root'"),
        (["tokens", "revoke", "ghost"], "no token named 'ghost'"),
        (["variables", "set", "config", "{bad", "--json"], "not valid JSON"),
        (["variables", "delete", "ghost"], "no variable 'ghost'"),
        # a filter that names nothing is an error, not an empty listing
        (["runs", "list", "--dag", "nope"], "no DAG 'nope'"),
        (["events", "list", "--asset", "nope"], "no asset 'nope'"),
        (["dead-letters", "list", "--watcher", "5"], "no watcher 5"),
        (["events", "show", "7"], "no event 7"),
        (["dead-letters", "show", "7"], "no dead letter 7"),
        (["tasks", "retry", "missing-run", "t"], "no run 'missing-run'"),
        (["watchers", "pause", "5"], "no watcher 5"),
        (["watchers", "resume", "5"], "no watcher 5"),
        # what the user typed is printed as typed, never read as Rich markup
        (["runs", "show", "[red]ghost[/red]"], "no run '[red]ghost[/red]'"),
        # a queue URL as boto3 prints it: the hint says how Herald spells it
        (["publish", "http://127.0.0.1:5055/000000000000/q", "hi"], "sqs+http://127.0.0.1:5055/000000000000/q"),
    ],
)
def test_wrong_arguments_exit_2_with_a_message(one_home: Herald, args: list[str], message: str) -> None:
    result = one_home.run_cli_process(*args)
    assert result.returncode == 2, result
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_a_taken_api_port_is_said_and_the_process_exits_1(one_home: Herald) -> None:
    commands = ["standalone"]
    if one_home.env["HERALD_DATABASE_URL"].startswith("postgresql"):
        commands.append("api")  # beside other processes: PostgreSQL only
    for command in commands:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [HERALD, command, "--port", str(port)], env=one_home.env, capture_output=True, text=True, timeout=60
            )
        out = result.stdout + result.stderr
        assert result.returncode == 1, (command, out)
        assert f"the API cannot listen on 127.0.0.1:{port}" in out and "--port or HERALD_API_PORT" in out
        assert "Traceback" not in out


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
    assert "no active watcher" not in result.stdout + result.stderr
    # A queue nobody watches takes the message, and the publisher is told it will wait.
    unread = herald.run_cli_process("publish", "local://inbx", "typo")
    assert unread.returncode == 0, unread.stderr
    assert "no active watcher consumes local://inbx" in unread.stdout + unread.stderr
    result = herald.run_cli_process("events", "emit", "manual", "--extra", '{"note": "by hand"}')
    assert result.returncode == 0, result.stderr
    runs = herald.wait_runs(2, "files")
    results = sorted(str(herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"]) for r in runs)
    assert results == ["[{'from': 'file'}]", "[{'note': 'by hand'}]"]
    sources = {e["source"] for e in herald.cli_json("events", "list")}
    assert sources == {"cli", f"watcher:{herald.cli_json('watchers', 'list')[0]['id']}"}


def test_variables_set_list_get_delete_with_secrets_masked(herald: Herald) -> None:
    for args in (
        ["variables", "set", "db_password", "hunter2", "--description", "the warehouse"],
        ["variables", "set", "bucket", '{"name": "landing"}', "--json"],
    ):
        result = herald.run_cli_process(*args)
        assert result.returncode == 0, result.stderr
    table = herald.run_cli_process("variables", "list")
    assert table.returncode == 0 and "***" in table.stdout and "hunter2" not in table.stdout
    assert "landing" in table.stdout and "the warehouse" in table.stdout
    listed = {v["key"]: v["value"] for v in herald.cli_json("variables", "list")}
    assert listed == {"bucket": '{"name": "landing"}', "db_password": "***"}
    got = herald.run_cli_process("variables", "get", "db_password")
    assert (got.returncode, got.stdout) == (0, "hunter2\n")
    assert [v["key"] for v in herald.cli_json("variables", "list", "--limit", "1")] == ["bucket"]
    assert herald.run_cli_process("variables", "delete", "bucket").returncode == 0
    missing = herald.run_cli_process("variables", "get", "bucket")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "no variable 'bucket'" in missing.stderr and "hint:" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_command_refused_by_the_state_of_things_exits_1(herald: Herald) -> None:
    herald.write_dag("by_hand", MANUAL_DAG)
    _sync_dags(herald)
    assert herald.run_cli_process("dags", "pause", "by_hand").returncode == 0
    assert herald.cli_json("dags", "list")[0]["is_paused"] is True
    assert herald.run_cli_process("dags", "unpause", "by_hand").returncode == 0
    run = herald.cli_json("dags", "trigger", "by_hand", "--conf", '{"x": 1}')
    assert run["state"] == "queued" and run["conf"] == {"x": 1}
    result = herald.run_cli_process("runs", "retry", run["run_id"])
    assert result.returncode == 1, result
    assert f"run {run['run_id']} is queued; only a failed run can be retried" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


FAILING_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

inbox = Asset("inbox", watchers=[AssetWatcher("w", MessageQueueTrigger("local://cli_inbox"))])

@dag(schedule=inbox)
def a_dag_with_a_rather_long_name_for_a_narrow_table():
    @task
    def read(triggering_asset_events):
        print("[bold]as printed[/bold] [red]")
        return [e.extra for evs in triggering_asset_events.values() for e in evs]

    @task
    def check(rows):
        raise ValueError("bad row")

    check(read())

a_dag_with_a_rather_long_name_for_a_narrow_table()
"""


def _lines_fit(text: str, width: int) -> bool:
    return all(len(line.rstrip()) <= width for line in text.splitlines())


def test_tables_fit_100_columns_with_short_run_ids_and_views_for_one_object(herald: Herald) -> None:
    import json
    import re
    import subprocess

    from tests.e2e.conftest import HERALD

    herald.write_dag("failing", FAILING_DAG)
    herald.start()
    herald.publish("cli_inbox", {"n": 1}, {"n": 2})
    runs = herald.wait_runs(2)
    assert {r["state"] for r in runs} == {"failed"}
    first, second = sorted(r["run_id"] for r in runs)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**herald.env, "COLUMNS": "100"}
        return subprocess.run([HERALD, *args], env=env, capture_output=True, text=True, timeout=60)

    # Listings: one line a row within 100 columns; a run by its short id, with its duration
    listing = cli("runs", "list")
    assert listing.returncode == 0, listing.stderr
    assert _lines_fit(listing.stdout, 100), listing.stdout
    short = {r["run_id"]: r["run_id"][-8:] for r in runs}
    for run_id, tag in short.items():
        [row] = [line for line in listing.stdout.splitlines() if tag in line]
        assert run_id not in row and "failed" in row
        assert re.search(r"\b\d+(\.\d+)?s\b|\b\d+m \d\ds\b", row), row  # how long it ran
    for listing_args in (["events", "list"], ["watchers", "list"], ["dags", "list"]):
        shown = cli(*listing_args)
        assert shown.returncode == 0 and _lines_fit(shown.stdout, 100), shown.stdout
    assert "local://cli_inbox" in cli("watchers", "list").stdout

    # A short id or a unique prefix names a run wherever a run id is asked for
    assert herald.cli_json("runs", "show", short[first])["run_id"] == first
    assert herald.cli_json("runs", "show", second[:-3])["run_id"] == second
    shown = cli("runs", "show", short[first])
    assert shown.returncode == 0, shown.stderr
    assert first in shown.stdout and "ValueError: bad row" in shown.stdout
    assert not shown.stdout.lstrip().startswith("{")  # a view for a person, not JSON
    ambiguous = cli("runs", "show", "asset_triggered__")
    assert ambiguous.returncode == 2 and "names 2 runs" in ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr and "Traceback" not in ambiguous.stderr

    # A task's log: printed as the task printed it, a heading without markup
    logs = cli("tasks", "logs", short[first], "read")
    assert logs.returncode == 0, logs.stderr
    assert "[bold]as printed[/bold] [red]" in logs.stdout
    assert logs.stdout.splitlines()[0].startswith("read (success, try 1) of run ")
    assert herald.cli_json("tasks", "logs", short[first], "read")["log"].startswith("[bold]as printed")

    # dags show and events show: readable views, JSON with -o json
    dag_view = cli("dags", "show", "a_dag_with_a_rather_long_name_for_a_narrow_table")
    assert dag_view.returncode == 0 and "check" in dag_view.stdout and "read" in dag_view.stdout
    assert not dag_view.stdout.lstrip().startswith("{")
    event_id = herald.cli_json("events", "list")[0]["id"]
    event_view = cli("events", "show", str(event_id))
    assert event_view.returncode == 0, event_view.stderr
    assert not event_view.stdout.lstrip().startswith("{") and '"n"' in event_view.stdout
    as_json = cli("events", "show", str(event_id), "--output", "json")
    assert json.loads(as_json.stdout)["id"] == event_id

    # Retrying a task by the run's short id, as the API's POST /runs/{id}/tasks/{task}/retry
    retried = cli("tasks", "retry", short[first], "check")
    assert retried.returncode == 0, retried.stderr
    assert f"Run {first} is running; retrying check." in retried.stdout
    herald.wait_for(
        lambda: (
            herald.cli_json("runs", "show", first)["tasks"][1]["try_number"] == 2
            and herald.cli_json("runs", "show", first)["state"] == "failed"
        ),
        what="the retried task to fail again",
    )


def test_a_watcher_paused_from_the_cli_keeps_its_messages_until_resumed(herald: Herald) -> None:
    herald.write_dag("failing", FAILING_DAG)
    herald.start()
    [watcher] = herald.wait_for(
        lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="the watcher"
    )
    code, out = herald.cli("watchers", "pause", str(watcher["id"]))
    assert code == 0 and "paused" in out, out
    assert herald.cli_json("watchers", "list")[0]["state"] == "paused"
    code, out = herald.cli("watchers", "pause", str(watcher["id"]))
    assert code == 1 and "is paused already" in out  # the state refuses it: exit 1
    herald.publish("cli_inbox", {"n": 1})
    code, out = herald.cli("watchers", "resume", str(watcher["id"]))
    assert code == 0 and "resumed" in out, out
    # what was published while paused waited in the queue, and runs now
    assert len(herald.wait_runs(1)) == 1
    herald.wait_for(lambda: herald.cli_json("watchers", "list")[0]["state"] == "running", what="running again")
