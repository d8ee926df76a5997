"""ChatService wire protocol v1.1, sans-IO.

This package contains no networking, threading or Redis code: bytes in,
frames out (``LineReader``, ``decode_client``, ``decode_server``) and frames
in, bytes out (``encode``). Gateways, clients and the benchmark all speak
through it, so PROTOCOL.md is implemented exactly once.
"""

from protocol.codec import (
    LineReader,
    decode_client,
    decode_server,
    dm_history_line,
    dm_history_lines,
    encode,
    encode_error,
    history_line,
    history_lines,
    message_parts,
)
from protocol.errors import ChatError, ConnectionLost, ErrorCode, FrameTooLarge, ProtocolError
from protocol.frames import *  # noqa: F403
from protocol.limits import MAX_SERVER_LINE, Limits
from protocol.names import (
    LOBBY,
    check_name,
    check_password,
    check_room,
    check_text,
    name_key,
)

__all__ = [
    "LOBBY",
    "MAX_SERVER_LINE",
    "ChatError",
    "ConnectionLost",
    "ErrorCode",
    "FrameTooLarge",
    "Limits",
    "LineReader",
    "ProtocolError",
    "check_name",
    "check_password",
    "check_room",
    "check_text",
    "decode_client",
    "decode_server",
    "dm_history_line",
    "dm_history_lines",
    "encode",
    "encode_error",
    "history_line",
    "history_lines",
    "message_parts",
    "name_key",
]
