"""Recipient lists -> folded recipients."""
