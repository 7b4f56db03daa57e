"""What users write: assets, watchers, DAGs and tasks. No I/O happens here."""
