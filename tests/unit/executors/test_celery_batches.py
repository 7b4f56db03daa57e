"""How a scheduler groups queued tries into Celery messages."""

from __future__ import annotations

from herald.executors.celery_executor import batches
from herald.executors.records import TaskRequest


def request(ti_id: int, queue: str | None = None, timeout: float | None = None) -> TaskRequest:
    return TaskRequest(ti_id=ti_id, dag_id="d", task_id="t", try_number=1, run={}, queue=queue, timeout=timeout)


def ids(found: list[list[TaskRequest]]) -> list[list[int]]:
    return [[r.ti_id for r in batch] for batch in found]


def test_tries_are_spread_evenly_over_the_fewest_messages_of_at_most_the_batch_size() -> None:
    assert ids(batches([request(i) for i in range(10)], 8)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert ids(batches([request(i) for i in range(17)], 8)) == [
        [0, 1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10, 11],
        [12, 13, 14, 15, 16],
    ]
    assert ids(batches([request(i) for i in range(3)], 8)) == [[0, 1, 2]]
    assert ids(batches([request(i) for i in range(3)], 1)) == [[0], [1], [2]]
    assert batches([], 8) == []


def test_a_message_holds_the_tries_of_one_queue_and_a_try_with_a_timeout_goes_alone() -> None:
    found = batches(
        [request(1), request(2, "gpu"), request(3, timeout=5), request(4), request(5, "gpu"), request(6, "default")],
        8,
    )
    assert sorted(ids(found)) == [[1, 4, 6], [2, 5], [3]]
    assert all(len({r.queue or "default" for r in batch}) == 1 for batch in found)
