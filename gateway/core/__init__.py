"""The gateway's pure core: where a session stands in its rooms and conversations.

Nothing here locks, does I/O or imports ``socket``, ``threading`` or ``redis``:
the session (``gateway.front.session``) holds the state under its lock, calls these
functions, and writes what they return (h11's ``_connection.py`` and
websockets' ``protocol.py`` are the models: a thin threaded shell over a pure
core). Tested without sockets or Redis (tests/gateway/test_cursor.py).
"""
