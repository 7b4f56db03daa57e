"""Message sources: one module per broker, each holding its trigger and its publisher."""
