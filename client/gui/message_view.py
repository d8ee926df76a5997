"""The scrolling list of messages of one conversation.

A read-only ``tk.Text``: consecutive messages from one sender within a few
minutes share one header (name in the sender's colour, time), the user's own
messages sit on a tinted band, and sends not yet echoed by the server are
shown greyed until the echo replaces them. Prepending older history keeps
the lines the reader was looking at in place. Main thread only.
"""

from __future__ import annotations

import tkinter as tk
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from tkinter import ttk

from client.commands import ME_PREFIX
from client.gui import notify, wording
from client.gui.theme import Theme, sender_colour
from protocol.names import name_key

GROUP_SECONDS = 300.0
"""Messages from one sender closer than this share a header."""



@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message as the view shows it."""

    sender: str
    text: str
    ts: float
    own: bool
    id: int | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    """The sender and time of the last message at the bottom, for grouping."""

    sender: str
    ts: float


Segments = list[tuple[str, tuple[str, ...]]]


class MessageView:
    """One conversation's messages; the chat view stacks one per conversation."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_scroll_top: Callable[[], None] | None = None, me: str = "",
                 on_retry: Callable[[str], None] | None = None) -> None:
        p, f = theme.palette, theme.fonts
        self._theme = theme
        self._on_scroll_top = on_scroll_top
        self._on_retry = on_retry
        self._me = me
        self._urls: dict[str, str] = {}
        self._last: _Group | None = None
        self._last_day: str | None = None
        self._stuck = True
        """Follow new messages: true until the reader scrolls up, again at the bottom."""
        self._sender_tags: set[str] = set()
        self.frame = ttk.Frame(master)
        self.frame.columnconfigure(0, weight=1)
        self.frame.rowconfigure(0, weight=1)
        self.text = tk.Text(
            self.frame, wrap="word", state="disabled", cursor="arrow", relief="flat",
            borderwidth=0, highlightthickness=0, background=p.surface, foreground=p.text,
            font=f.body, padx=0, pady=10, width=1, height=1, spacing1=1, spacing3=1, takefocus=0,
            selectbackground=p.selection, inactiveselectbackground=p.selection,
        )
        self.scrollbar = ttk.Scrollbar(self.frame, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=self._on_yscroll)
        self.text.bind("<Configure>", self._on_resize)
        self.text.grid(row=0, column=0, sticky="nsew")
        self.scrollbar.grid(row=0, column=1, sticky="ns")

        margin = 20
        t = self.text
        t.tag_configure("header", font=f.bold, spacing1=10, lmargin1=margin)
        t.tag_configure("time", font=f.small, foreground=p.faint)
        t.tag_configure("you", font=f.small_bold, foreground=p.accent)
        t.tag_configure("body", lmargin1=margin, lmargin2=margin, rmargin=margin)
        t.tag_configure("action", font=f.italic, lmargin1=margin, lmargin2=margin + 12,
                        spacing1=6, rmargin=margin)
        t.tag_configure("own", background=p.own_tint)
        t.tag_configure("pending", foreground=p.faint)
        t.tag_configure("failed", foreground=p.error, background=p.error_tint)
        t.tag_configure("system", font=f.small, foreground=p.muted, lmargin1=margin,
                        lmargin2=margin, spacing1=6, spacing3=2)
        t.tag_configure("error", font=f.small, foreground=p.error, lmargin1=margin,
                        lmargin2=margin, spacing1=6, spacing3=2)
        t.tag_configure("day", font=f.small_bold, foreground=p.faint, justify="center",
                        spacing1=14, spacing3=4)
        t.tag_configure("start", font=f.small, foreground=p.faint, justify="center",
                        spacing1=4, spacing3=8)
        t.tag_configure("mention", font=f.bold, foreground=p.accent, background=p.mention_tint)
        t.tag_configure("link", foreground=p.accent, underline=True)
        t.tag_bind("link", "<Enter>", lambda _e: t.configure(cursor="hand2"))
        t.tag_bind("link", "<Leave>", lambda _e: t.configure(cursor="arrow"))
        t.tag_bind("link", "<Button-1>", self._clicked_link)
        t.tag_configure("retry", foreground=p.accent, underline=True, font=f.small_bold)
        t.tag_bind("retry", "<Enter>", lambda _e: t.configure(cursor="hand2"))
        t.tag_bind("retry", "<Leave>", lambda _e: t.configure(cursor="arrow"))
        t.tag_bind("retry", "<Button-1>", self._clicked_retry)
        t.tag_configure("mono", font=f.mono, foreground=p.muted, lmargin1=margin,
                        lmargin2=margin)
        t.tag_configure("new", font=f.small_bold, foreground=p.error, justify="center",
                        spacing1=8, spacing3=4)
        t.tag_raise("sel")
        self.jump = ttk.Button(self.frame, text="↓ Jump to latest", style="Jump.TButton",
                               command=self.scroll_to_bottom, takefocus=0)

    # -- what the controller calls -----------------------------------------

    def append(self, line: ChatLine) -> None:
        """Add a message at the bottom; follow it when the reader was at the bottom."""
        segments, self._last, self._last_day = self._render([line], self._last, self._last_day)
        self._insert("end", segments)
        if line.own or self._stuck:
            self.scroll_to_bottom()
        else:
            self._show_jump()

    def prepend(self, lines: Sequence[ChatLine]) -> None:
        """Add older messages above, keeping what the reader sees where it is."""
        if not lines:
            return
        was_empty = self.is_empty()
        segments, last, last_day = self._render(lines, None, None)
        self._drop_leading_day(last_day)
        top = self.text.index("@0,0")
        before = self._line_count()
        self._insert("1.0", segments)
        if was_empty:
            self._last, self._last_day = last, last_day
            self.scroll_to_bottom()
            return
        added = self._line_count() - before
        row, col = (int(part) for part in top.split("."))
        self.text.yview(f"{row + added}.{col}")

    def append_pending(self, ref: str, sender: str, text: str, ts: float) -> None:
        """Show a send the server has not echoed yet, greyed, at the bottom."""
        line = ChatLine(sender=sender, text=text, ts=ts, own=True)
        segments, _, self._last_day = self._render(
            [line], None, self._last_day, extra=("pending", _ref_tag(ref)))
        chars, tags = segments[-1]
        segments[-1] = (chars.rstrip("\n"), tags)
        segments.append(("  sending…\n", ("time", "own", "pending", _ref_tag(ref))))
        self._insert("end", segments)
        self._last = None
        self.scroll_to_bottom()

    def resolve_pending(self, ref: str) -> None:
        """Remove a pending send: its echo is (or will be) shown as a normal message."""
        ranges = self.text.tag_ranges(_ref_tag(ref))
        if ranges:
            self._edit(lambda: self.text.delete(ranges[0], ranges[-1]))
        self._last = None

    def fail_pending(self, ref: str, reason: str) -> None:
        """Mark a pending send as not delivered, saying why."""
        tag = _ref_tag(ref)
        ranges = self.text.tag_ranges(tag)
        if not ranges:
            self.append_error(f"Not sent: {reason}")
            return

        def mark() -> None:
            first, last = ranges[0], ranges[-1]
            for name in ("pending", "own"):
                self.text.tag_remove(name, first, last)
            self.text.tag_add("failed", first, last)
            found = self.text.search("  sending…", first, last)
            if found:
                self.text.delete(found, f"{found}+{len('  sending…')}c")
            end = self.text.index(f"{tag}.last-1c")
            self.text.insert(end, f"  — not sent: {reason}  ", ("failed", "time", tag))
            if self._on_retry is not None:
                end = self.text.index(f"{tag}.last-1c")
                self.text.insert(end, "Retry", ("failed", "retry", tag))

        self._edit(mark)

    def remove_failed(self, ref: str) -> None:
        """Take away a failed send (it is being retried and shows as pending again)."""
        ranges = self.text.tag_ranges(_ref_tag(ref))
        if ranges:
            self._edit(lambda: self.text.delete(ranges[0], ranges[-1]))
        self._last = None

    def mark_new(self) -> None:
        """The "new messages" line, before what comes next (once until ``clear_new``)."""
        if not self.text.tag_ranges("new"):
            self._insert("end", [("New messages\n", ("new",))])
            self._last = None

    def clear_new(self) -> None:
        ranges = self.text.tag_ranges("new")
        if ranges:
            self._edit(lambda: self.text.delete(ranges[0], ranges[-1]))
            self._last = None

    def has_new_line(self) -> bool:
        return bool(self.text.tag_ranges("new"))

    def see_new(self) -> None:
        """Show the "new messages" line near the top, if there is one."""
        ranges = self.text.tag_ranges("new")
        if ranges:
            self.text.yview(f"{ranges[0]} -1 lines")
            self._stuck = float(self.text.yview()[1]) >= 0.999
            if not self._stuck:
                self._show_jump()

    def append_system(self, text: str, mono: bool = False) -> None:
        self._insert("end", [(text + "\n", ("mono",) if mono else ("system",))])
        self._last = None
        if self._stuck:
            self.scroll_to_bottom()

    def append_error(self, text: str) -> None:
        self._insert("end", [(text + "\n", ("error",))])
        self._last = None
        self.scroll_to_bottom()

    def mark_start(self, text: str) -> None:
        """Say at the very top that there is nothing older to fetch (replacing an old note)."""
        ranges = self.text.tag_ranges("start")
        if ranges:
            if self.text.get(ranges[0], ranges[-1]) == text + "\n":
                return
            self._edit(lambda: self.text.delete(ranges[0], ranges[-1]))
        self._insert("1.0", [(text + "\n", ("start",))])

    def clear(self) -> None:
        self._edit(lambda: self.text.delete("1.0", "end"))
        self._last = None
        self._last_day = None

    # -- reading and scrolling --------------------------------------------

    def contents(self) -> str:
        """The visible text, for tests and copy-paste."""
        return str(self.text.get("1.0", "end-1c"))

    def is_empty(self) -> bool:
        return not self.text.compare("end-1c", "!=", "1.0")

    def laid_out(self) -> bool:
        """Shown on screen with its real size: only then do scroll positions mean anything."""
        return bool(self.text.winfo_ismapped()) and self.text.winfo_height() > 1

    def at_top(self) -> bool:
        """The reader sees the first line (also when everything fits)."""
        return self.laid_out() and float(self.text.yview()[0]) <= 0.0

    def at_bottom(self) -> bool:
        """The reader sees the last line (also when everything fits)."""
        return self.laid_out() and float(self.text.yview()[1]) >= 0.999

    def scroll_to_bottom(self) -> None:
        self._stuck = True
        self.text.yview_moveto(1.0)
        self.jump.place_forget()

    @property
    def jump_shown(self) -> bool:
        return bool(self.jump.winfo_manager())

    def _show_jump(self) -> None:
        if not self.jump.winfo_manager():
            self.jump.place(relx=1.0, rely=1.0, x=-28, y=-10, anchor="se")

    def scroll_to_top(self) -> None:
        self._stuck = False
        self.text.yview_moveto(0.0)

    # -- internals -----------------------------------------------------------

    def _on_yscroll(self, first: float | str, last: float | str) -> None:
        self.scrollbar.set(first, last)
        if float(first) <= 0.0 and float(last) >= 1.0:
            self.scrollbar.grid_remove()  # everything fits: no scrollbar
        else:
            self.scrollbar.grid()
        if not self.laid_out():
            return
        self._stuck = float(last) >= 0.999
        if self._stuck:
            self.jump.place_forget()
        if self._on_scroll_top is not None and float(first) <= 0.0:
            self.text.after_idle(self._on_scroll_top)

    def _on_resize(self, _event: object) -> None:
        if self._stuck:
            self.text.yview_moveto(1.0)

    def _drop_leading_day(self, day: str | None) -> None:
        """Before prepending a batch that ends on ``day``, drop the same day line at the top
        (under the "new messages" line, when that comes first)."""
        line = "2.0" if "new" in self.text.tag_names("1.0") else "1.0"
        if day is not None and "day" in self.text.tag_names(line) \
                and self.text.get(line, f"{line} lineend") == day:
            self._edit(lambda: self.text.delete(line, f"{line} +1 lines"))

    def _line_count(self) -> int:
        return int(self.text.index("end-1c").split(".")[0])

    def _edit(self, change: Callable[[], object]) -> None:
        self.text.configure(state="normal")
        try:
            change()
        finally:
            self.text.configure(state="disabled")

    def _insert(self, index: str, segments: Segments) -> None:
        args: list[str | tuple[str, ...]] = []
        for chars, tags in segments:
            args.extend((chars, tags))
        if args:
            # one Tcl call for the whole batch: "insert index chars tags chars tags ..."
            self._edit(lambda: self.text.tk.call(str(self.text), "insert", index, *args))

    def _sender_tag(self, sender: str) -> str:
        tag = "sender:" + name_key(sender)
        if tag not in self._sender_tags:
            self.text.tag_configure(tag, foreground=sender_colour(sender))
            self.text.tag_raise(tag)
            self._sender_tags.add(tag)
        return tag

    def _body(self, text: str, tags: tuple[str, ...]) -> Segments:
        """A message's text with mentions of the reader highlighted and links clickable."""
        out: Segments = []
        for span in notify.spans(text, self._me) if self._me else [notify.Span(text, "text")]:
            if span.kind == "link":
                tag = f"url:{len(self._urls)}"
                self._urls[tag] = span.text
                out.append((span.text, (*tags, "link", tag)))
            elif span.kind == "mention":
                out.append((span.text, (*tags, "mention")))
            else:
                out.append((span.text, tags))
        out.append(("\n", tags))
        return out

    def _clicked_link(self, event: tk.Event[tk.Misc]) -> str:
        for tag in self.text.tag_names(f"@{event.x},{event.y}"):
            url = self._urls.get(str(tag))
            if url is not None:
                self.open_link(url)
                break
        return "break"

    def open_link(self, url: str) -> None:
        """Open a link of a message in the browser (what a click on it does)."""
        webbrowser.open(url, new=2)

    def links(self) -> list[str]:
        return [self._urls[str(tag)] for tag in self.text.tag_names()
                if str(tag) in self._urls and self.text.tag_ranges(tag)]

    def _clicked_retry(self, event: tk.Event[tk.Misc]) -> str:
        for tag in self.text.tag_names(f"@{event.x},{event.y}"):
            if str(tag).startswith("ref:") and self._on_retry is not None:
                self._on_retry(str(tag)[4:])
                break
        return "break"

    def _render(self, lines: Sequence[ChatLine], previous: _Group | None, day_before: str | None,
                extra: tuple[str, ...] = ()) -> tuple[Segments, _Group | None, str | None]:
        """Segments for ``lines`` grouped against ``previous``; a day line where the
        day changes from ``day_before``. Returns the last group and day too."""
        segments: Segments = []
        last = previous
        for line in lines:
            day = wording.day(line.ts)
            band = ("own",) if line.own else ()
            if day != day_before:
                segments.append((f"{day}\n", ("day",)))
                day_before = day
                last = None
            colour = self._sender_tag(line.sender)
            action = _action(line.text)
            if action:
                segments.append((f"* {line.sender} ", ("action", colour, *band, *extra)))
                segments.append((f"{action}  ", ("action", *band, *extra)))
                segments.append((f"{wording.clock(line.ts)}\n", ("time", *band, *extra)))
                last = None
                continue
            if (last is None or name_key(last.sender) != name_key(line.sender)
                    or line.ts - last.ts > GROUP_SECONDS):
                segments.append((line.sender, ("header", colour, *band, *extra)))
                if line.own:
                    segments.append(("  you", ("header", "you", *band, *extra)))
                segments.append((f"  {wording.clock(line.ts)}\n",
                                 ("header", "time", *band, *extra)))
            segments.extend(self._body(line.text.rstrip("\n"), ("body", *band, *extra)))
            last = _Group(line.sender, line.ts)
        return segments, last, day_before


def _action(text: str) -> str:
    """The action of a ``/me`` message (shown as "* alice waves"), else ''."""
    return text[len(ME_PREFIX):].strip() if text.startswith(ME_PREFIX) else ""


def _ref_tag(ref: str) -> str:
    return "ref:" + ref
