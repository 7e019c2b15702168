"""The tests' SMTP server: aiosmtpd, reading a message's DATA in large reads instead of line by line.

Stock aiosmtpd reads DATA one line at a time (an await per line, about 4 ms of CPU for a 32 KB
message on the 2-core test machine); the suite's servers take some 40,000 messages, and that
reading was a tenth of the whole suite's CPU. This server reads up to each ".\\r\\n" and keeps
aiosmtpd's rules: the same checks before 354, a line over 1001 octets (CRLF included) refused
with 500 after the data ends, more than ``data_size_limit`` octets refused with 552,
dot-stuffing undone, and the handler's ``handle_DATA`` called with the same envelope.
tests/test_smtpserver.py holds it to those rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP

# RFC 5321 4.5.3.1.6: 1000 octets with the CRLF; aiosmtpd refuses from 1002 (its limit is 1001).
DATA_LINE_LIMIT = 1001
END_OF_DATA = b"\r\n.\r\n"


class WholeDataSMTP(SMTP):
    # aiosmtpd sizes its stream reader by this limit; the reads below need room for a whole
    # message. Command lines keep their own limit (command_size_limit, checked per command).
    line_length_limit = 1 << 25

    async def smtp_DATA(self, arg: str) -> None:
        if self._decode_data:  # the tests' servers keep bytes; the stock path decodes
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = bytearray()
        try:
            while True:
                received += await self._reader.readuntil(b".\r\n")
                if received == b".\r\n" or received.endswith(END_OF_DATA):
                    break
        except asyncio.CancelledError:
            self._writer.close()
            raise
        raw = bytes(received[:-3])  # the text, each line with its CRLF, without the closing dot
        limit = self.data_size_limit
        if raw and max(map(len, raw.split(b"\r\n"))) + 2 > DATA_LINE_LIMIT:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's own, unannotated
            return
        if limit and len(raw) > limit:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's own, unannotated
            return
        content = raw.replace(b"\r\n.", b"\r\n")  # RFC 5321 4.5.2: undo dot-stuffing
        if content.startswith(b"."):
            content = content[1:]
        self.envelope.content = content
        self.envelope.original_content = content
        status: Any = MISSING
        if "DATA" in self._handle_hooks:
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's own, unannotated
        await self.push("250 OK" if status is MISSING else status)


class WholeDataController(Controller):
    def factory(self) -> SMTP:
        return WholeDataSMTP(self.handler, **self.SMTP_kwargs)
