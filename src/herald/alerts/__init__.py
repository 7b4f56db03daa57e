"""Alerts for what the brokers leave silent: watchers that stop, fail or fall behind, failing DAGs, latency.

`conditions` reads what holds now, `monitor` opens, fires and resolves the
episodes (one scheduler of several sends each message) and `send` delivers
them to a webhook and by e-mail, off the event loop and with time limits.
"""
