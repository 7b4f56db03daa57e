"""Turns queued events into runs, and runs into task tries in dependency order."""
