"""`import herald` is for DAG files: it loads no database library, no settings, no broker client."""

from __future__ import annotations

import subprocess
import sys

import herald


def test_import_herald_loads_no_database_or_settings() -> None:
    code = (
        "import herald, sys; "
        "herald.Asset; herald.dag; herald.MessageQueueTrigger; herald.publish; "
        "print(','.join(m for m in ('sqlalchemy', 'pydantic_settings', 'herald.store', 'herald.config') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves() -> None:
    for name in herald.__all__:
        assert getattr(herald, name) is not None
    assert set(herald.__all__) == {"__version__", *herald._EXPORTS}


def test_sdk_contract_is_what_triggers_use() -> None:
    from herald.sdk import triggers as contract
    from herald.triggers import base

    assert base.BaseEventTrigger is contract.BaseEventTrigger is herald.BaseEventTrigger
    assert base.Message is contract.Message
