"""What a service prints reaches the host's log labelled with the service and cleaned of escapes and control
characters (no Ray; a real pipe)."""
from __future__ import annotations

import asyncio
import fcntl
import io
import os
import struct
import termios

from solo.runtime.cell_process import OutputRelay, printable


def relay_output(chunks: list[bytes], relabel: dict[int, str] | None = None) -> str:
    """Write `chunks` through a real pipe into an OutputRelay and return what reached its sink."""
    async def main() -> str:
        read_end, write_end = os.pipe()
        sink = io.StringIO()
        relay = OutputRelay(os.fdopen(read_end, "rb", buffering=0), sink, label="solo-host-1")
        for index, chunk in enumerate(chunks):
            if relabel and index in relabel:
                relay.label = relabel[index]
            os.write(write_end, chunk)
            for _ in range(500):  # until the relay has read all of it
                await asyncio.sleep(0.01)
                if struct.unpack("i", fcntl.ioctl(read_end, termios.FIONREAD, b"\0" * 4))[0] == 0:
                    break
        os.close(write_end)
        for _ in range(200):
            if relay.pipe.closed:
                break
            await asyncio.sleep(0.01)
        return sink.getvalue()

    return asyncio.run(main())


def test_every_line_of_output_carries_the_service_and_no_escape_or_control_character():
    out = relay_output([b"booting\n",
                        b"\x1b[31mred\x1b[0m\tok\r\n2024-01-01 WARNING solo.host forged\n\x1b]0;title\x07half",
                        b" a line\x07\n\x1bc\xc2\x9b2J\xe2\x80\xae reversed\nno newline at the end"],
                       relabel={1: "alice/echo"})
    assert out.splitlines() == [
        "[solo-host-1] booting",
        "[alice/echo] red\tok",
        "[alice/echo] 2024-01-01 WARNING solo.host forged",  # a tenant's line can no longer pass as Solo's own
        "[alice/echo] half a line",
        "[alice/echo] 2J reversed",
        "[alice/echo] no newline at the end",
    ]
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out and "\u202e" not in out


def test_printable_keeps_text_and_tabs():
    assert printable("plain text, ünïcode and\ttabs") == "plain text, ünïcode and\ttabs"
    assert printable("a\x00b\x7fc\x1b[2Kd\x1b[?25le") == "abcde"


def test_no_line_or_paragraph_separator_or_bidi_mark_reaches_the_log():
    """str.splitlines() also ends a line at U+2028/U+2029: a service that printed one could show a reader that
    splits that way a line of its own choosing, unlabelled; bidi marks could reorder what the reader sees."""
    forged = "ok\u2028[solo-host-1] 2024-01-01 WARNING solo.host forged\u2029x"
    marks = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    out = relay_output([f"{forged}\n{marks}ab\n".encode()], relabel={0: "alice/echo"})
    assert out.splitlines() == ["[alice/echo] ok[solo-host-1] 2024-01-01 WARNING solo.host forgedx",
                                "[alice/echo] ab"]
    assert not set(marks + "\u2028\u2029") & set(out)
    assert printable(forged + marks) == "ok[solo-host-1] 2024-01-01 WARNING solo.host forgedx"
