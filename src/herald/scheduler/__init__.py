"""Turns queued events into runs, and runs into task tries in dependency order.

- `scheduler`: the loop, one transaction per pass, and the executor's hand-over.
- `runs`: run creation (asset policy, cron) and starting queued runs.
- `tries`: the try state machine (results, retries, trigger rules, run ends).
- `requests`: the one builder of what a worker needs to run a try.
- `policy`: when queued events make a run (asset conditions, batches).

Every SQL write goes through `herald.store.runs` and `herald.store.tries`.
"""
