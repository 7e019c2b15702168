"""dispatch: the daily situation report, from the editors' file to every recipient's inbox."""

__version__ = "0.1.0"
