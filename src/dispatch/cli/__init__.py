"""The command line: options, exit codes and what the user reads; every command calls
``dispatch.app`` and nothing below it.

- ``base``: the command group, shared options, errors -> messages and exit codes
- ``editions``: check, preview, approve, publish
- ``sending``: send
- ``records``: status, history, export, recipients
- ``serving``: serve
"""

from dispatch.cli import editions, records, sending, serving
from dispatch.cli.base import main

__all__ = ["editions", "main", "records", "sending", "serving"]
