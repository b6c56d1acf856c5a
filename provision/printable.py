"""Text that came from elsewhere, made safe for the operator's terminal.

Hosts write their own boot records and health verdicts, Kubernetes objects carry whatever their writers put in them,
and SSH servers and AWS errors quote what they were sent. Any of it can hold terminal escape sequences (which can
retitle the window, rewrite what is on screen, or on some terminals answer back as if typed) or control characters
and bidirectional overrides that make a line read as something it is not. Nothing reaches the terminal without
passing one of the two functions here, each applied where text is printed, so no caller can forget:

- ``printable`` (``provision.ui.UI``: reports, tables, events) removes them, keeping the text around them;
- ``escaped`` (the CLI's error line) shows each as its escape (``\x1b``, ``\n``), so the user sees exactly what is
  in the value an error names, on one line.

Kept light on purpose: the CLI's error edge imports it, and ``cluster --help`` must stay fast.
"""

from __future__ import annotations

import re
import unicodedata

# ECMA-48 sequences, 7-bit (ESC ...) and 8-bit (C1) forms: CSI (colours, cursor moves, erasing), OSC (window title,
# hyperlinks, clipboard), DCS/SOS/PM/APC strings, and the short ESC sequences. An unterminated string runs to the end.
_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?           # CSI: parameters, intermediates, final
    | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|$)  # OSC, DCS, SOS, PM, APC ... BEL or ST
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                                    # other ESC sequences, and a lone ESC
    """,
    re.VERBOSE | re.DOTALL,
)
# Line breaks other than "\n": a "\r" alone sends the cursor back to overwrite what was written before it.
_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# Every other C0 and C1 control, DEL, and the bidirectional marks, embeddings, overrides and isolates that reorder how
# a line is shown ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\x00-\x08\x0e-\x1f\x7f-\x9f{_BIDI}]")
_BIDI_CHARACTER = re.compile(f"[{_BIDI}]")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` without terminal escape sequences and control characters. Tabs stay. With ``lines`` a line break
    stays a line break ("\\n"); without, every line break becomes a space, so the text is one line."""
    text = _SEQUENCES.sub("", text)
    text = _BREAKS.sub("\n", text)
    text = _CONTROLS.sub("", text)
    return text if lines else text.replace("\n", " ")


def escaped(text: str) -> str:
    """``text`` on one line, each control character (line breaks and ESC included) and bidirectional control shown
    as its Python escape, never acted on by the terminal."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char) == "Cc" or _BIDI_CHARACTER.match(char) else char for char in text
    )
