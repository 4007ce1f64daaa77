"""Logging of the server process, set up once by ``cli serve``: format, level, and one line
per client mistake.

aiohttp answers a request whose request line or headers it cannot parse (a NUL byte in a
header, say) with a 400 of its own, before any handler or middleware runs, and logs it at
ERROR with a traceback; so it does when the unread rest of a body it drains after answering
turns out malformed (a bad ``Content-Encoding``). That is the client's mistake, not ours:
``ClientErrorsAsOneLine`` turns such a record into one WARNING line. (A malformed body that
a handler reads is the error middleware's: a JSON 400 and one INFO line.)
"""

from __future__ import annotations

import logging
import sys

from voice_inference import errors

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ClientErrorsAsOneLine(logging.Filter):
    """A record carrying an aiohttp parse error becomes one WARNING line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, errors.UNPARSEABLE):
            reason = errors.unparseable_reason(exc)
            record.msg, record.args = f"malformed request: {reason} ({record.getMessage()})", None
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info, record.exc_text = None, None
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, stream=sys.stderr)
    logging.getLogger("aiohttp.server").addFilter(ClientErrorsAsOneLine())
