"""moto's server, with Kinesis resharding as AWS documents it.

Run as `python tests/integration/moto_kinesis.py -H 127.0.0.1 -p PORT` (the
arguments of `moto_server`). moto 5 departs from AWS after `SplitShard` in three
ways that would hide what the Kinesis trigger must handle, so they are put right here:

- AWS routes `PutRecord` to the open shard owning the partition key's hash;
  moto also looks in closed shards (the parent first), so children never get a record.
- AWS keeps a closed parent's records until they expire; moto moves them
  (`SplitShard`) or copies them into the child (`MergeShards`).
- AWS ends a closed shard: `GetRecords` at its end gives no `NextShardIterator`;
  moto always gives one, so a reader could never tell the parent is done.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from moto.kinesis import models
from moto.kinesis.utils import decompose_shard_iterator
from moto.server import main

_split_shard = models.Stream.split_shard
_merge_shards = models.Stream.merge_shards
_get_records = models.KinesisBackend.get_records


def _open_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


def _split_keeping_records(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
    shard = self.shards[shard_to_split]
    kept = shard.records
    shard.records = OrderedDict()  # nothing for moto to move into the children
    try:
        _split_shard(self, shard_to_split, new_starting_hash_key)
    finally:
        shard.records = kept


def _merge_keeping_records(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
    parents = [self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]]
    kept = [shard.records for shard in parents]
    for shard in parents:
        shard.records = OrderedDict()  # nothing for moto to copy into the child
    try:
        _merge_shards(self, shard_to_merge, adjacent_shard_to_merge)
    finally:
        for shard, records in zip(parents, kept, strict=True):
            shard.records = records


def _get_records_ending_closed_shards(self: Any, stream_arn: Any, shard_iterator: str, limit: Any) -> Any:
    next_iterator, records, millis = _get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last = decompose_shard_iterator(shard_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and not records and int(last) >= shard.get_max_sequence_number():
        next_iterator = None
    return next_iterator, records, millis


models.Stream.get_shard_for_key = _open_shard_for_key
models.Stream.split_shard = _split_keeping_records
models.Stream.merge_shards = _merge_keeping_records
models.KinesisBackend.get_records = _get_records_ending_closed_shards

if __name__ == "__main__":
    main()
