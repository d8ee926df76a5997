"""Look of the Tk app: one calm palette, readable fonts, the ttk "clam" styles.

Everything visual that more than one widget shares lives here, so the views
only name roles ("sidebar", "muted", "accent") and a restyle touches one file.
Sender colours come from a stable hash of the lower-cased name (CRC-32, not
``hash()``, which is salted per process), so alice has the same colour in
every window and every run.
"""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
import zlib
from dataclasses import dataclass
from tkinter import ttk
from typing import Literal

from protocol.names import name_key


@dataclass(frozen=True, slots=True)
class Palette:
    """Colours by role."""

    window: str = "#eef1f5"
    surface: str = "#ffffff"
    sidebar: str = "#1f2633"
    sidebar_text: str = "#c3cad6"
    sidebar_muted: str = "#7d8799"
    sidebar_selected: str = "#34507a"
    sidebar_hover: str = "#2a3242"
    panel: str = "#f6f7f9"
    border: str = "#dde1e7"
    text: str = "#1d2330"
    muted: str = "#6b7383"
    faint: str = "#9aa1ad"
    accent: str = "#3d6fb6"
    accent_active: str = "#335e9c"
    accent_text: str = "#ffffff"
    own_tint: str = "#eef4fc"
    unread: str = "#e07a5f"
    ok: str = "#2e9d6a"
    warn: str = "#d08a1e"
    error: str = "#c2413b"
    error_tint: str = "#fbeceb"
    selection: str = "#cfe0f7"
    scroll_thumb: str = "#d3d8df"
    warn_tint: str = "#fdf3e1"
    mention_tint: str = "#fff1c7"
    online: str = "#2e9d6a"
    offline: str = "#9aa1ad"


SENDER_COLOURS: tuple[str, ...] = (
    "#c8433a",  # red
    "#c9711c",  # orange
    "#8f7a0c",  # dark gold
    "#3d8f2f",  # green
    "#12857c",  # teal
    "#1f7fba",  # sky
    "#3f55cf",  # blue
    "#7a4bc9",  # violet
    "#b23d96",  # magenta
    "#8a5637",  # brown
)
"""Distinct hues of similar weight, all readable on white."""


def sender_colour(name: str) -> str:
    """The colour of a sender, the same for every spelling case, every run."""
    return SENDER_COLOURS[zlib.crc32(name_key(name).encode()) % len(SENDER_COLOURS)]


_PREFERRED_FAMILIES = (
    "Inter", "Cantarell", "Noto Sans", "Segoe UI", "Helvetica Neue", "Ubuntu", "DejaVu Sans",
)
_PREFERRED_MONO = ("JetBrains Mono", "Noto Sans Mono", "DejaVu Sans Mono", "Menlo", "Consolas")


@dataclass(frozen=True, slots=True)
class Fonts:
    """Named Tk fonts, created once per root window."""

    body: tkfont.Font
    bold: tkfont.Font
    small: tkfont.Font
    small_bold: tkfont.Font
    italic: tkfont.Font
    title: tkfont.Font
    heading: tkfont.Font
    section: tkfont.Font
    mono: tkfont.Font


@dataclass(frozen=True, slots=True)
class Theme:
    """What the views need to draw themselves."""

    palette: Palette
    fonts: Fonts


def _pick_family(root: tk.Misc, wanted: tuple[str, ...]) -> str:
    available = {family.lower(): family for family in tkfont.families(root)}
    for family in wanted:
        if family.lower() in available:
            return available[family.lower()]
    return str(tkfont.nametofont("TkDefaultFont", root).actual("family"))


def _make_fonts(root: tk.Misc) -> Fonts:
    family = _pick_family(root, _PREFERRED_FAMILIES)
    mono = _pick_family(root, _PREFERRED_MONO)

    def font(size: int, weight: Literal["normal", "bold"] = "normal",
             slant: Literal["roman", "italic"] = "roman", fam: str = family) -> tkfont.Font:
        return tkfont.Font(root=root, family=fam, size=size, weight=weight, slant=slant)

    return Fonts(
        body=font(11), bold=font(11, "bold"), small=font(9), small_bold=font(9, "bold"),
        italic=font(10, slant="italic"), title=font(20, "bold"), heading=font(13, "bold"),
        section=font(8, "bold"), mono=font(10, fam=mono),
    )


def apply_theme(root: tk.Tk) -> Theme:
    """Configure ttk "clam" with our palette and fonts; return them for the views."""
    palette = Palette()
    fonts = _make_fonts(root)
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont"):
        tkfont.nametofont(name, root).configure(
            family=fonts.body.actual("family"), size=fonts.body.actual("size"))
    root.configure(background=palette.window)
    root.option_add("*selectBackground", palette.selection)
    root.option_add("*selectForeground", palette.text)

    style = ttk.Style(root)
    style.theme_use("clam")
    p = palette
    style.configure(".", background=p.surface, foreground=p.text, font=fonts.body,
                    bordercolor=p.border, lightcolor=p.surface, darkcolor=p.surface,
                    troughcolor=p.panel, focuscolor=p.accent, selectbackground=p.selection,
                    selectforeground=p.text, insertcolor=p.text)
    style.configure("TFrame", background=p.surface)
    style.configure("Window.TFrame", background=p.window)
    style.configure("Card.TFrame", background=p.surface, relief="solid", borderwidth=1)
    style.configure("Panel.TFrame", background=p.panel)
    style.configure("Sidebar.TFrame", background=p.sidebar)
    style.configure("Status.TFrame", background=p.panel)

    style.configure("TLabel", background=p.surface, foreground=p.text)
    style.configure("Muted.TLabel", foreground=p.muted)
    style.configure("Hint.TLabel", foreground=p.faint, font=fonts.small)
    style.configure("Title.TLabel", font=fonts.title, foreground=p.text)
    style.configure("Heading.TLabel", font=fonts.heading)
    style.configure("Field.TLabel", font=fonts.small_bold, foreground=p.muted)
    style.configure("TCheckbutton", background=p.surface, foreground=p.text, font=fonts.small)
    style.map("TCheckbutton", background=[("active", p.surface)])
    style.configure("Error.TLabel", foreground=p.error, background=p.surface, wraplength=320)
    style.configure("Panel.TLabel", background=p.panel, foreground=p.muted, font=fonts.section)
    style.configure("Status.TLabel", background=p.panel, foreground=p.muted, font=fonts.small)
    style.configure("Typing.TLabel", foreground=p.muted, font=fonts.italic)
    style.configure("Sidebar.TLabel", background=p.sidebar, foreground=p.sidebar_muted,
                    font=fonts.section)
    style.configure("Brand.TLabel", background=p.sidebar, foreground="#ffffff",
                    font=fonts.heading)

    style.configure("TEntry", fieldbackground=p.surface, bordercolor=p.border,
                    lightcolor=p.surface, darkcolor=p.surface, padding=(8, 6))
    style.map("TEntry", bordercolor=[("focus", p.accent)], lightcolor=[("focus", p.accent)])
    style.configure("Composer.TEntry", padding=(12, 9))
    style.configure("Counter.TLabel", foreground=p.muted, font=fonts.small)
    style.configure("CounterOver.TLabel", foreground=p.error, font=fonts.small_bold)
    style.configure("Sidebar.TEntry", fieldbackground=p.sidebar_hover, foreground="#ffffff",
                    bordercolor=p.sidebar_hover, lightcolor=p.sidebar_hover,
                    darkcolor=p.sidebar_hover, insertcolor="#ffffff", padding=(6, 4))
    style.map("Sidebar.TEntry", bordercolor=[("focus", p.accent)])

    style.configure("TButton", padding=(12, 6), background=p.panel, bordercolor=p.border,
                    lightcolor=p.panel, darkcolor=p.panel, relief="flat")
    style.map("TButton", background=[("active", p.border)])
    style.configure("Accent.TButton", background=p.accent, foreground=p.accent_text,
                    bordercolor=p.accent, lightcolor=p.accent, darkcolor=p.accent,
                    font=fonts.bold)
    style.map("Accent.TButton",
              background=[("disabled", p.faint), ("active", p.accent_active)],
              bordercolor=[("disabled", p.faint), ("active", p.accent_active)],
              lightcolor=[("disabled", p.faint), ("active", p.accent_active)],
              darkcolor=[("disabled", p.faint), ("active", p.accent_active)],
              foreground=[("disabled", p.surface)])
    style.configure("Flat.TButton", background=p.surface, bordercolor=p.surface,
                    lightcolor=p.surface, darkcolor=p.surface, foreground=p.muted,
                    padding=(8, 4))
    style.map("Flat.TButton", background=[("active", p.panel)],
              foreground=[("active", p.text)])
    style.configure("Small.Flat.TButton", font=fonts.small, padding=(8, 3))
    style.configure("Jump.TButton", background=p.accent, foreground=p.accent_text,
                    bordercolor=p.accent, lightcolor=p.accent, darkcolor=p.accent,
                    font=fonts.small_bold, padding=(10, 4))
    style.map("Jump.TButton", background=[("active", p.accent_active)])

    # thin scrollbars without arrows, a rounded-looking thumb on a quiet trough
    style.layout("Vertical.TScrollbar", [
        ("Vertical.Scrollbar.trough", {"sticky": "ns", "children": [
            ("Vertical.Scrollbar.thumb", {"sticky": "nswe"}),
        ]}),
    ])
    style.configure("Vertical.TScrollbar", background=p.scroll_thumb, troughcolor=p.surface,
                    bordercolor=p.surface, lightcolor=p.scroll_thumb,
                    darkcolor=p.scroll_thumb, gripcount=0, arrowsize=10, width=10)
    style.map("Vertical.TScrollbar", background=[("active", p.faint)],
              lightcolor=[("active", p.faint)], darkcolor=[("active", p.faint)])
    style.configure("TSeparator", background=p.border)
    style.configure("TPanedwindow", background=p.border)
    style.configure("Sash", sashthickness=1, gripcount=0, background=p.border)

    style.configure("Horizontal.TProgressbar", background=p.accent, troughcolor=p.panel,
                    bordercolor=p.panel, lightcolor=p.accent, darkcolor=p.accent)

    # Side lists: tree rows without the expand arrow, calm selection.
    style.layout("Sidebar.Treeview.Item", [
        ("Treeitem.padding", {"sticky": "nswe", "children": [
            ("Treeitem.image", {"side": "left", "sticky": ""}),
            ("Treeitem.text", {"side": "left", "sticky": ""}),
        ]}),
    ])
    style.layout("Sidebar.Treeview", [("Treeview.treearea", {"sticky": "nswe"})])
    style.configure("Sidebar.Treeview", background=p.sidebar, fieldbackground=p.sidebar,
                    foreground=p.sidebar_text, borderwidth=0, rowheight=28, font=fonts.body,
                    indent=0)
    style.map("Sidebar.Treeview", background=[("selected", p.sidebar_selected)],
              foreground=[("selected", "#ffffff")])
    style.layout("Members.Treeview.Item", style.layout("Sidebar.Treeview.Item"))
    style.layout("Members.Treeview", [("Treeview.treearea", {"sticky": "nswe"})])
    style.configure("Members.Treeview", background=p.panel, fieldbackground=p.panel,
                    foreground=p.text, borderwidth=0, rowheight=26, font=fonts.body,
                    indent=0)
    style.map("Members.Treeview", background=[("selected", p.selection)],
              foreground=[("selected", p.text)])
    return Theme(palette=palette, fonts=fonts)


def dot_image(master: tk.Misc, colour: str, background: str, size: int = 10,
              pad: int = 6, ring: bool = False) -> tk.PhotoImage:
    """A small filled circle, for presence dots in the side lists.

    Edge pixels are blended with ``background`` (the list's colour); pixels
    outside the circle are transparent, so a selected row shows through.
    ``ring``: only a 2-pixel outline (someone offline).
    """
    width, height = size + pad * 2, size + 4
    image = tk.PhotoImage(master=master, width=width, height=height)
    fg, bg = _rgb(colour), _rgb(background)
    radius = size / 2
    centre_x, centre_y = pad + radius, 2 + radius
    samples = 4
    rows: list[str] = []
    outside: list[tuple[int, int]] = []
    for y in range(height):
        row = []
        for x in range(width):
            inside = sum(
                1
                for sy in range(samples) for sx in range(samples)
                if (ring_inner := (x + (sx + 0.5) / samples - centre_x) ** 2
                    + (y + (sy + 0.5) / samples - centre_y) ** 2) <= radius * radius
                and not (ring and ring_inner < (radius - 2) ** 2)
            )
            if not inside:
                outside.append((x, y))
            alpha = inside / (samples * samples)
            mixed = tuple(round(f * alpha + b * (1 - alpha)) for f, b in zip(fg, bg, strict=True))
            row.append("#{:02x}{:02x}{:02x}".format(*mixed))
        rows.append("{" + " ".join(row) + "}")
    image.put(" ".join(rows))
    for x, y in outside:
        image.transparency_set(x, y, True)
    return image


def _rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
