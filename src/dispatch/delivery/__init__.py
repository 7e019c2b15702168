"""Delivery: the pipeline, sender, SMTP transport, replies, Maildir, VERP, OAuth, leases and group commit."""
