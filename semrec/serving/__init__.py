"""Serving: the HTTP API with live catalogue updates and the explorer page, and batch recommendations to a file."""

from semrec.serving.batch import recommend_file
from semrec.serving.catalogue import Catalogue
from semrec.serving.engine import Engine, Query, Result
from semrec.serving.newitems import NewItems
from semrec.serving.store import CatalogueStore

__all__ = ["Catalogue", "CatalogueStore", "Engine", "NewItems", "Query", "Result", "create_app", "recommend_file"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - imports FastAPI only when serving over HTTP
    """See `semrec.serving.app.create_app`."""
    from semrec.serving.app import create_app as _create

    return _create(*args, **kwargs)
