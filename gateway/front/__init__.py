"""The front: what faces the clients.

The accept side (``listener``: the accept loop and a thread per connection;
``accept``: running out of descriptors; ``ratelimit``: connection and frame
rates), one session per connection (``session``: its state, output and rooms;
``reader``: its thread; ``login``: hello, takeover, undo, release, restore;
``rooms``: join, leave, history, typing; ``outbound``: its bounded output,
``linequeue``: the bytes queued in it;
``flusher``: the one thread that resumes blocked sockets;
``account_requests``: register, passwd, read, a conversation's history), the
``registry`` of local sessions and rooms, and the ``health`` endpoint.
"""
