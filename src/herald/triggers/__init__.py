"""Message sources: one module per broker, each holding the same three parts.

`XOptions` (a frozen dataclass of the broker's options, filled by
`base.parse_options` from the connection, the URL's query and keyword
arguments), `XTrigger(url, **options)` (the consumer, implementing the contract
of `herald.sdk.triggers`) and `XPublisher` (one pooled connection that sends).
No module here imports the metadata database; `local://` is read by the
triggerer itself (`herald.triggerer.local_queue`).
"""
