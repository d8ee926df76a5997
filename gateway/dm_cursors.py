"""An account's conversations at login: the catch-up read before ``welcome``.

The cursors it opens are pure (``gateway.core.conversations``); this reads the
conversations' logs for them.
"""

from __future__ import annotations

from gateway.conversations import Conversations
from gateway.core.conversations import CatchUp
from gateway.core.cursor import Batch
from protocol import codec
from protocol.frames import DmSummary, Position
from protocol.names import CONVERSATION_PREFIX, name_key


def load_catch_up(store: Conversations, name: str, since: dict[str, Position]) -> CatchUp:
    """Per conversation of ``name``: the dms after the client's ``since`` (all retained ones
    when its epoch changed), or without one, after the read mark **(ours)**."""
    reads = store.reads(name)
    wanted = {name_key(key[len(CONVERSATION_PREFIX):]): pos for key, pos in since.items()
              if key.startswith(CONVERSATION_PREFIX)}
    loaded = []
    summaries = []
    for conv in store.conversations(name):
        read = reads.get(CONVERSATION_PREFIX + conv.peer_key, 0)
        pos = wanted.get(conv.peer_key)
        batch = store.read_history(name, conv.peer_key, after=read if pos is None else pos.id)
        if pos is not None and batch.epoch != pos.epoch:
            batch = store.read_history(name, conv.peer_key, after=0)
        loaded.append((conv, batch))
        summaries.append(DmSummary(conv.peer, batch.epoch, batch.last_id, read))
    room_reads = {k: v for k, v in reads.items() if not k.startswith(CONVERSATION_PREFIX)}
    return CatchUp(tuple(summaries), room_reads, tuple(loaded))


def dm_history(peer: str, batch: Batch) -> list[bytes]:
    """The ``history`` lines of a conversation's catch-up; none when it holds nothing new."""
    if not batch.messages:
        return []
    return codec.dm_history_lines(peer, batch.epoch, batch.messages, batch.complete)


__all__ = ["dm_history", "load_catch_up"]
