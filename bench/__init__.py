"""chat-bench: a one-process load generator that speaks PROTOCOL.md to any gateways.

It measures what the issues' targets name (fan-out throughput and loss,
end-to-end latency, memory per idle connection, login storms, resume after a
gateway dies, the rate many small rooms sustain, CPU per message) and is
built so that it is not the bottleneck: asyncio (uvloop when importable),
large reads, and counting newlines instead of decoding every frame. Only
the frames a scenario needs (acks, markers, latency stamps) are looked at. Layout:

- ``options``: command line -> frozen option objects.
- ``stats``: percentiles and latency summaries (pure).
- ``tap``: cuts a byte stream into counted lines, picking out marked ones (pure).
- ``wire``: the frames and texts the bench sends, and the stamps it reads back.
- ``connection``: one asyncio client connection (login, then cheap counting).
- ``cluster``: a local Redis and gateways started for a run.
- ``procstat``: CPU, memory and machine facts from /proc.
- ``cost``: gateway (/proc) and Redis (INFO cpu) CPU per message.
- ``population``, ``schedule``, ``ledger``: the many-rooms scenario's pure
  parts (who is in which room, Poisson sends and the rate search, exact
  accounting).
- ``scenarios``: fanout, idle, storm, resume, rooms.
- ``results``, ``report``, ``plots``: JSON lines, terminal table, PNG plots.
"""
