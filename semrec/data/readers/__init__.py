"""Readers: one function per input format, each returning the normalised `Dataset`.

`READERS` maps the format names of `semrec data import FORMAT PATH` to these functions; every reader takes the
main path, keyword options and `on_bad_rows` ('error' or 'skip'). See docs/data.md.
"""

from semrec.data.readers.amazon import read_amazon, read_amazon2023
from semrec.data.readers.lcrec import read_lcrec
from semrec.data.readers.movielens import read_movielens
from semrec.data.readers.recbole import read_recbole
from semrec.data.readers.s3rec import read_s3rec
from semrec.data.readers.table import read_table
from semrec.data.readers.unisrec import read_unisrec

READERS = {
    "amazon": read_amazon,
    "amazon2023": read_amazon2023,
    "lcrec": read_lcrec,
    "movielens": read_movielens,
    "recbole": read_recbole,
    "s3rec": read_s3rec,
    "table": read_table,
    "unisrec": read_unisrec,
}

__all__ = ["READERS", "read_amazon", "read_amazon2023", "read_lcrec", "read_movielens", "read_recbole",
           "read_s3rec", "read_table", "read_unisrec"]
