"""Readers: one function per input format, each returning a `Dataset`."""

from semrec.data.readers.s3rec import read_s3rec

READERS = {
    "s3rec": read_s3rec,
}

__all__ = ["READERS", "read_s3rec"]
