"""ChatService client library, terminal client and (in ``__main__``) the Tk app.

The library is split so that every decision is testable without sockets:

- ``state``: pure per-session state (resume points, de-duplication and
  ordering, unacknowledged sends); frames in, events and frames out.
- ``transport``: addresses and one TCP/TLS byte stream.
- ``link``: one logged-in gateway connection (framing, write lock, pings).
- ``connection``: ``ChatClient``, the threads, reconnect and resume.
- ``backoff``: the retry delay policy; ``events`` and ``errors``: what callers see.
- ``commands``: slash-command parsing shared by ``term`` and the Tk app.
"""
