"""Delivery: the pipeline and its sender, the ports they need (ledger, transport), SMTP transport, replies, Maildir,
VERP, OAuth, leases and group commit."""
