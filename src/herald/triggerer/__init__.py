"""Runs every watcher's trigger on one asyncio loop and applies the delivery contract."""
