"""The intranet copy, the accessibility statement, the records export, atomic files."""
