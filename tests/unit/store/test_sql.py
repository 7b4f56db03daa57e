"""The array parameters of a batch statement (PostgreSQL): every value has its column, or it is an error."""

from __future__ import annotations

import pytest

from herald.store import tables as t
from herald.store.sql import arrays


def test_rows_become_one_list_per_column_json_as_text_and_missing_values_none() -> None:
    rows = [{"asset_id": 1, "extra": {"a": [1]}}, {"asset_id": 2, "extra": None, "source": "api"}]
    assert arrays(t.asset_event, rows, ("asset_id", "source", "extra")) == {
        "each_asset_id": [1, 2],
        "each_source": [None, "api"],
        "each_extra": ['{"a": [1]}', "null"],
    }


def test_a_value_without_its_column_is_refused_rather_than_lost() -> None:
    rows = [{"asset_id": 1, "source_dag_id": "clean"}]
    with pytest.raises(ValueError, match=r"asset_event: no array for \['source_dag_id'\]"):
        arrays(t.asset_event, rows, ("asset_id", "source"))
