"""What the metadata database can store, and what every reader can give back.

Herald stores what outsiders give it (message payloads and headers, task
results and logs) on SQLite and on PostgreSQL, and then hands it to workers
(pickled over a pipe), to the API (as strict JSON) and to the UI. Some values
pass one of those steps and break a later one, for every DAG at once:

- a float that is not finite (`NaN`, `Infinity`) is not JSON: PostgreSQL
  refuses it (`Token "NaN" is invalid`), the API cannot answer with it;
- NUL (`\\x00`) cannot be in a PostgreSQL text column;
- a lone surrogate (`"\\ud800"`, from a JSON escape) cannot be encoded as UTF-8:
  every driver and every JSON answer fails on it;
- a value nested hundreds of levels deep passes `json.loads` but not pickle
  (RecursionError near 500 levels) nor the API's serialiser (near 256).

The rules, one per kind of value:

- text Herald stores as it is (logs, errors, dedupe keys, header values,
  where the message came from): `clean_text` replaces NUL and lone surrogates
  by U+FFFD, so it is always stored;
- a value that must round-trip exactly (a payload, a task's return value):
  `json_problem` says why it cannot be stored, and the caller makes it a dead
  letter or a failed try with that reason;
- what is read back for a face: `displayable` turns whatever an older Herald
  stored into something strict JSON can carry; a stored JSON value too deep
  for Python to decode at all is read as a note (`json_loads`, the engine's
  JSON decoder), so one row never breaks a query that reads many.

What would violate this: a process pass (scheduler, triggerer) that stores a
value no function here accepted, or a face that returns stored JSON without
`displayable`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: containers nested deeper than this are refused (a payload, a task's result);
#: the setting `HERALD_MAX_PAYLOAD_DEPTH` may lower or raise it up to `DEPTH_CEILING`
DEFAULT_MAX_DEPTH = 64
#: beyond about 250 levels the API's serialiser fails, near 500 pickle does
DEPTH_CEILING = 200

REPLACEMENT = "\ufffd"
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD (storable in any database)."""
    if _UNSTORABLE_CHARS.search(text) is None:
        return text  # the common case: no copy
    return _UNSTORABLE_CHARS.sub(REPLACEMENT, text)


#: the length of the `dedupe_key` columns
KEY_LENGTH = 500


def fit_key(key: str, limit: int = KEY_LENGTH) -> str:
    """A dedupe key as its column stores it: `clean_text`-ed, and a longer one shortened.

    A key over `limit` characters keeps its start and ends with a hash of the
    whole, so distinct keys stay distinct and the same key always fits the same way.
    """
    key = clean_text(key)
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{key[: limit - len(digest) - 1]}#{digest}"


def clean_json(value: Any) -> Any:
    """A copy of a JSON value whose strings (keys included) are `clean_text`-ed.

    For values Herald builds itself (headers, where a message came from), which
    are stored sanitised rather than refused.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


_SURROGATES = re.compile("[\ud800-\udfff]")


def _char_problem(char: str, what: str) -> str:
    if char == "\x00":
        return f"{what} holds NUL (\\x00)"
    return f"{what} holds a lone surrogate ({char!r}), which is not valid Unicode"


def json_problem(
    value: Any, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "the value", *, nul: bool = False
) -> str | None:
    """Why `value` cannot be stored as JSON and read back unchanged, or None when it can.

    Checks, without recursion (so depth itself cannot break the check): nesting
    no deeper than `max_depth` containers, only finite floats, strings (keys
    included) without lone surrogates, and without NUL when `nul` is set (NUL is
    valid JSON, stored escaped; text columns refuse it), object keys that are
    strings, and only JSON types. It runs on every message and result, so
    scalars are checked in line and only containers go on the stack.
    """
    if type(value) is dict and max_depth >= 1 and _plain_flat(value, nul):
        return None  # the common case (headers, where a message came from, most payloads), in one pass
    chars = _UNSTORABLE_CHARS if nul else _SURROGATES
    stack: list[tuple[Any, int]] = [([value], -1)]  # a wrapper, so the value itself is checked as a child
    while stack:
        container, depth = stack.pop()
        if depth + 1 > max_depth:
            return f"{what} is nested more than {max_depth} levels deep (HERALD_MAX_PAYLOAD_DEPTH)"
        if type(container) is dict or isinstance(container, Mapping):
            for key in container:
                if type(key) is not str and not isinstance(key, str):
                    return f"{what} has a key {key!r} that is not a string"
                found = None if key.isascii() and not (nul and "\x00" in key) else chars.search(key)
                if found is not None:
                    return _char_problem(found.group(), f"a key of {what}")
            children: Any = container.values()
        else:
            children = container
        for child in children:
            kind = type(child)
            if kind is str:
                # ASCII text holds no surrogate: the regular expression only runs for the rest (or for NUL)
                found = None if child.isascii() and not (nul and "\x00" in child) else chars.search(child)
                if found is not None:
                    return _char_problem(found.group(), what)
            elif kind is int or kind is bool or child is None:
                continue
            elif kind is float:
                if not math.isfinite(child):
                    return f"{what} holds {child!r}, which is not JSON (only finite numbers are)"
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            else:
                problem = _other_problem(child, depth + 1, stack, chars, what)
                if problem is not None:
                    return problem
    return None


def _plain_flat(value: dict[Any, Any], nul: bool) -> bool:
    """True for a dict of ASCII text keys whose values are ASCII text, finite numbers, booleans or
    None (without NUL when `nul` is set): storable as it is. False says nothing: `json_problem` looks closer."""
    for key, child in value.items():
        if type(key) is not str or not key.isascii() or (nul and "\x00" in key):
            return False
        kind = type(child)
        if kind is str:
            if not child.isascii() or (nul and "\x00" in child):
                return False
        elif kind is float:
            if not math.isfinite(child):
                return False
        elif not (kind is int or kind is bool or child is None):
            return False
    return True


def _other_problem(
    child: Any, depth: int, stack: list[tuple[Any, int]], chars: re.Pattern[str], what: str
) -> str | None:
    """`json_problem` for a value not exactly of a JSON type: a subclass (a str Enum...), a tuple, or not JSON."""
    if isinstance(child, str):
        found = chars.search(child)
        return None if found is None else _char_problem(found.group(), what)
    if isinstance(child, bool | int):
        return None
    if isinstance(child, float):
        return None if math.isfinite(child) else f"{what} holds {child!r}, which is not JSON (only finite numbers are)"
    if isinstance(child, Mapping | list | tuple):
        stack.append((child, depth))
        return None
    return f"{what} holds a {type(child).__name__}, which is not a JSON type"


def displayable(value: Any, max_depth: int = DEPTH_CEILING) -> Any:
    """A stored JSON value made safe for strict JSON answers, whatever was stored before.

    Non-finite floats become their name as text (`"NaN"`), strings are
    `clean_text`-ed, and containers deeper than `max_depth` are replaced by a
    note. Values that need no change are returned as they are.
    """
    if json_problem(value, max_depth) is None:
        return value
    return _display(value, 0, max_depth)


def _display(value: Any, depth: int, max_depth: int) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping | list | tuple):
        if depth + 1 > max_depth:
            return f"(nested more than {max_depth} levels deep: not shown)"
        if isinstance(value, Mapping):
            return {clean_text(str(k)): _display(v, depth + 1, max_depth) for k, v in value.items()}
        return [_display(v, depth + 1, max_depth) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(repr(value))


def json_loads(data: str | bytes) -> Any:
    """The engines' JSON decoder: `json.loads`, except that a value too deep to decode reads as a note.

    Only a row written around Herald (by hand, or before it checked depth) can be
    that deep; reading it must not fail the scheduler's pass or a listing.
    """
    try:
        return json.loads(data)
    except RecursionError:
        return f"(stored JSON nested too deep to read: {len(data)} characters)"


def displayable_object(value: Any) -> dict[str, Any]:
    """`displayable` for a column the faces show as an object (an event's extra, headers).

    A stored value that is not an object (only a row too deep to decode, read as a
    note) is shown under `"unreadable"`.
    """
    shown = displayable(value)
    if isinstance(shown, dict):
        return shown
    return {"unreadable": shown}


# -- sizes ------------------------------------------------------------------------------------
#
# What one message or one task hands Herald is kept only up to a size, so that one
# of them never fills the database, a listing or a process's memory: a dead
# letter keeps the head of its body, a task's log its tail, a task's return value
# must fit, and the faces list previews (the item's own endpoint has the rest).

KIB = 1024
MIB = 1024 * KIB
#: the head of a dead letter's body that is stored (`HERALD_MAX_DEAD_LETTER_BODY_BYTES`)
DEFAULT_MAX_DEAD_LETTER_BODY = 256 * KIB
#: the tail of a task's log that is kept (`HERALD_MAX_LOG_BYTES`)
DEFAULT_MAX_LOG = MIB
#: the largest return value (or pushed XCom) a task may hand downstream (`HERALD_MAX_RESULT_BYTES`)
DEFAULT_MAX_RESULT = MIB
#: the largest HTTP request body the API reads (`HERALD_MAX_REQUEST_BYTES`)
DEFAULT_MAX_REQUEST = MIB
#: a message body larger than this becomes a dead letter, unless its trigger says otherwise
DEFAULT_MAX_PAYLOAD = MIB
#: how much of a large field a listing shows (payloads, bodies, results)
PREVIEW_CHARS = 2000


@dataclass(frozen=True)
class SizeLimits:
    """The size caps in force (`Settings.limits`); each process enforces the ones it meets.

    Attributes:
        dead_letter_body: bytes of a dead letter's body that are stored.
        log: bytes of a task's log that are kept (its tail).
        result: bytes (as JSON) a task's return value or pushed XCom may take.
        request: bytes of an HTTP request body the API reads.
        payload: bytes of a message body a trigger takes when it sets no `max_payload_bytes`.
    """

    dead_letter_body: int = DEFAULT_MAX_DEAD_LETTER_BODY
    log: int = DEFAULT_MAX_LOG
    result: int = DEFAULT_MAX_RESULT
    request: int = DEFAULT_MAX_REQUEST
    payload: int = DEFAULT_MAX_PAYLOAD


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _char_start(data: bytes, index: int) -> int:
    """The first index at or after `index` that starts a UTF-8 character (a cut never splits one)."""
    index = max(index, 0)
    while index < len(data) and (data[index] & 0xC0) == 0x80:
        index += 1
    return index


#: room kept in a capped log for the line saying what was dropped
_NOTE_ROOM = 200


def log_tail(text: str, limit: int = DEFAULT_MAX_LOG, dropped: int = 0) -> str:
    """A log within `limit` bytes (UTF-8): a line saying how much was dropped, then the log's end.

    `dropped` counts bytes already dropped before `text` (by a `TailBuffer`). A log
    within the limit is returned as it is, so capping twice changes nothing.
    """
    size = _utf8_size(text)
    if size <= limit and not dropped:
        return text
    keep = max(limit - _NOTE_ROOM, limit // 2)
    if size > keep:
        data = text.encode("utf-8", "surrogatepass")
        cut = _char_start(data, len(data) - keep)
        dropped += cut
        text = data[cut:].decode("utf-8", "surrogatepass")
    return f"[... {dropped} bytes of log dropped: only the last {limit} are kept (HERALD_MAX_LOG_BYTES) ...]\n{text}"


class TailBuffer(io.StringIO):
    """A text stream keeping only the last `limit` bytes written to it (a task's log).

    What a task prints is written here as it comes; memory stays near twice
    `limit` however much it prints. `getvalue()` is the kept tail, after a line
    saying how much was dropped (`log_tail`).
    """

    def __init__(self, limit: int = DEFAULT_MAX_LOG) -> None:
        super().__init__()
        self.limit = limit
        self._chunks: list[str] = []
        self._held = 0  # bytes in _chunks
        self.dropped = 0  # bytes dropped so far

    def write(self, s: str) -> int:
        """Keep `s`; drop the oldest text once more than twice `limit` is held."""
        if not s:
            return 0
        self._chunks.append(s)
        self._held += _utf8_size(s)
        if self._held > 2 * self.limit:
            self._compact()
        return len(s)

    def _compact(self) -> None:
        data = "".join(self._chunks).encode("utf-8", "surrogatepass")
        cut = _char_start(data, len(data) - self.limit)
        self.dropped += cut
        self._chunks = [data[cut:].decode("utf-8", "surrogatepass")]
        self._held = len(data) - cut

    def getvalue(self) -> str:
        """The kept tail of what was written, after a note on what was dropped."""
        return log_tail("".join(self._chunks), self.limit, self.dropped)

    def writable(self) -> bool:
        return True


def json_size(value: Any) -> int:
    """How many bytes `value` takes as JSON (UTF-8), as the database and the API store it."""
    return _utf8_size(json.dumps(value, ensure_ascii=False, allow_nan=True, separators=(",", ":")))


def size_problem(value: Any, limit: int = DEFAULT_MAX_RESULT, what: str = "the return value") -> str | None:
    """Why `value` is too large to keep (more than `limit` bytes as JSON), or None when it fits.

    For a task's return value and pushed XComs: they are stored, sent to every
    downstream task and shown by the API, so a large one belongs in a file or
    object store, with its path as the result.
    """
    size = json_size(value)
    if size <= limit:
        return None
    return (
        f"{what} is {size} bytes as JSON, more than the {limit} allowed (HERALD_MAX_RESULT_BYTES); "
        f"store large data elsewhere (a file, an object store) and return its location"
    )


def body_head(body: bytes, limit: int = DEFAULT_MAX_DEAD_LETTER_BODY) -> tuple[bytes, int, bool]:
    """`(kept, original size, truncated)`: the first `limit` bytes of a message body."""
    size = len(body)
    if size <= limit:
        return body, size, False
    return bytes(body[:limit]), size, True


def preview(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """`(shown, truncated)`: the start of `text`, at most `limit` characters."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True
