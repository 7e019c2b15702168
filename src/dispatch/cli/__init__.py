"""The command line: options, exit codes and what the user reads; every command calls
``dispatch.app`` and nothing below it.

- ``base``: the command group, shared options, errors -> messages and exit codes
- ``editions``: check, preview, approve, publish
- ``sending``: send
- ``records``: status, history, export
- ``lists``: recipients (and for directory lists: recipients sync, diff, accept)
- ``serving``: serve
- ``console``: web (the editor console), users (its accounts)
- ``bounces``: bounces (read the bounce mailbox, report who keeps bouncing)
"""

from dispatch.cli import bounces, console, editions, lists, records, sending, serving
from dispatch.cli.base import main

__all__ = ["bounces", "console", "editions", "lists", "main", "records", "sending", "serving"]
