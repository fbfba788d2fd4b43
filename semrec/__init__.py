"""semrec: language- and semantic-ID-based recommendation."""

__version__ = "0.1.0"
