"""The Tk desktop app (``chat-client``): log-in screen, then the chat window.

Layout of the package, one job per module:

- ``app``: the root window, the queue pump, switching from log-in to chat;
- ``login_view`` / ``chat_view``: views that own their widgets and expose
  small methods; ``chat_controller``: client events in, client calls out;
- ``message_view``, ``sidebar``, ``widgets``: the pieces of the chat view;
- ``model``: per-conversation state, pure; ``wording``: every sentence shown;
- ``theme``: palette, fonts, ttk styles, sender colours; ``ports``: the part
  of ``ChatClient`` the app relies on.

Threading: only the Tk main thread touches widgets. ``ChatClient`` calls
``on_event`` on its reader thread, which just puts the event on a
``queue.Queue``; ``root.after`` drains it on the main thread.
"""
