"""Exceptions of the client library, rooted in the project's one tree::

    ChatError (protocol.errors)
    ├── ProtocolError                 a refusal with a docs/protocol.md error code
    │   ├── LoginRefused              the gateway refused our hello (also a ClientError)
    │   └── SendAborted               a send ended unacknowledged (also a ClientError)
    └── ClientError                   root of what the client library raises
        ├── LoginRefused
        ├── SendAborted
        ├── NoGatewayAvailable        no address answered ``connect()``
        ├── ClientClosed              the client was closed, or never connected
        └── CommandError              a slash command that cannot be parsed
"""

from __future__ import annotations

from protocol.errors import ChatError, ErrorCode, ProtocolError


class ClientError(ChatError):
    """Root of every exception raised by the client library."""


class LoginRefused(ClientError, ProtocolError):
    """The gateway answered ``hello`` with an error (``name_taken``, ``bad_name`` ...).

    A ``ProtocolError``, so ``.code`` and ``.message`` name the reason.
    """

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        ProtocolError.__init__(self, code, message, ref)


class SendAborted(ClientError, ProtocolError):
    """A send or dm that the client gave up on before the gateway acknowledged it.

    Carried by ``SendFailed`` when the client closes with the send still
    pending; the message may or may not have been delivered.
    """

    def __init__(self, code: ErrorCode = ErrorCode.UNAVAILABLE,
                 message: str = "the client closed before the gateway acknowledged the message",
                 ref: str | None = None) -> None:
        ProtocolError.__init__(self, code, message, ref)


class NoGatewayAvailable(ClientError):
    """No configured gateway accepted a connection and login."""


class ClientClosed(ClientError):
    """The operation needs a running client: it was closed or never connected."""


class CommandError(ClientError):
    """A slash command with a wrong name or wrong arguments; the text is the usage."""
