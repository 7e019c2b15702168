"""The email: edition, editorial checks, markup, what's new, render, message, headers, pre-flight (pure)."""
