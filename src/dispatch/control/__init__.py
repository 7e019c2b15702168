"""Change control: content identity and the approval rule (pure)."""
