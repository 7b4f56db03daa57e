"""A bash task's output is relayed in bounded pieces: one endless line never fills the worker's memory."""

from __future__ import annotations

import io

from herald.airflow.runtime import _relay_output


def test_lines_are_relayed_and_the_last_one_returned(capsys: object) -> None:
    last = _relay_output(io.BytesIO(b"one\ntwo\nthree\n"), "utf-8")
    assert last == "three"


def test_a_last_line_without_newline_and_a_split_character() -> None:
    data = "a\n" + "é" * 40_000  # 80 000 bytes in one line: read in pieces, a piece may end inside "é"
    last = _relay_output(io.BytesIO(data.encode()), "utf-8")
    assert set(last) == {"é"}
    assert 0 < len(last.encode()) <= 80_000


def test_a_huge_line_is_read_in_pieces() -> None:
    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size: int | None = -1) -> bytes:
            piece = super().readline(size)
            Counting.largest = max(Counting.largest, len(piece))
            return piece

    stream = Counting(b"a" * 5_000_000 + b"\nend\n")
    assert _relay_output(stream, "utf-8") == "end"
    assert Counting.largest <= 64 * 1024
