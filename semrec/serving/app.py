"""The HTTP API (FastAPI) over one `Engine`: recommendations, live catalogue changes, item pages, metrics and the
explorer page at `/`. Every bad request gets a 4xx with the reason; no request can name a file to read.

`create_app(engine)` builds the app; `app_from_env()` is the factory `semrec serve --workers N` gives uvicorn
(each worker process loads the run named by SEMREC_SERVE_* variables and follows the shared state file).
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import os
from importlib import resources
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi import Query as Q
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import ValidationError

from semrec.errors import SemrecError
from semrec.serving import schemas as S
from semrec.serving.apidocs import add_api_docs
from semrec.serving.asgi import (
    BodyLimit,
    FastJSON,
    FastPath,
    Observe,
    validation_detail,
)
from semrec.serving.batcher import MicroBatcher
from semrec.serving.engine import Engine, Query
from semrec.serving.metrics import Metrics


def _explorer_html() -> str:
    return resources.files("semrec.serving").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(engine: Engine, api_key: str | None = None, max_batch: int = 64,
               max_body: int = S.MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app serving `engine`. With `api_key`, POST/DELETE /items need header `X-API-Key`."""
    metrics = Metrics()
    batcher = MicroBatcher(engine.recommend, max_batch=max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="semrec", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, description=(
        "Recommendations for item histories, live catalogue updates and item lookups for one trained semrec run. "
        "Item ids are the dataset's external ids."), **_no_telemetry())
    cat = engine.catalogue
    model_name = engine.model.name
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics
    html = _explorer_html()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    @app.exception_handler(SemrecError)
    async def semrec_error(request: Request, exc: SemrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def need_key(x_api_key: str | None = Header(None, description="Required for writes when the server has a key.")
                 ) -> None:
        if api_key and not (x_api_key and hmac.compare_digest(x_api_key.encode(), api_key.encode())):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def summary(i: int, score: float | None = None) -> S.ItemSummary:
        return S.ItemSummary(item_id=cat.ids[i], title=cat.titles[i], score=score)

    def index_of(item_id: str) -> int:
        i = cat.index.get(item_id, -1)
        if i < 0:
            raise HTTPException(404, f"unknown item id {item_id!r}")
        return i

    def to_query(req: S.RecommendRequest) -> tuple[Query, list[str], list[str]]:
        idx, unknown = cat.lookup(req.history)
        readable = engine.readable(idx)
        ignored = [cat.ids[i] for i in idx[~readable]]
        allowed, key = None, None
        if req.filter or (req.query and req.query.strip()):
            allowed = cat.filter_mask({k: (v.model_dump() if isinstance(v, S.Range) else v)
                                       for k, v in (req.filter or {}).items()})
            if req.query and req.query.strip():
                allowed = allowed & cat.text_mask(req.query.lower().split()[:12])
            key = json.dumps([req.filter and {k: str(v) for k, v in req.filter.items()}, req.query], sort_keys=True)
        return Query(idx, req.k, req.exclude_seen, allowed, key), unknown, ignored

    def respond(res: Any, unknown: list[str], ignored: list[str]) -> dict:
        """A RecommendResponse as a plain dict (built directly: the hot path skips response-model validation)."""
        items = [{"rank": r + 1, "item_id": cat.ids[i], "title": cat.titles[i], "score": s}
                 for r, (i, s) in enumerate(zip(res.items.tolist(), res.scores.tolist()))]
        return {"items": items, "unknown": unknown, "ignored": ignored, "fallback": res.fallback, "model": model_name}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def explorer() -> str:
        return html

    @app.get("/health", response_model=S.HealthResponse, summary="Liveness and what this run can do")
    def health() -> S.HealthResponse:
        return S.HealthResponse(status="ok", model=model_name, run=engine.run_name, items=len(cat),
                                active_items=cat.n_active, added_items=cat.n_added, new_items=engine.new_items.kind,
                                new_items_reason=engine.new_items.reason or None,
                                semantic_ids=getattr(engine.model, "codes", None) is not None,
                                user_vectors=hasattr(engine.model, "embed_users"), state_version=engine.version)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format 0.0.4)")
    def prometheus() -> PlainTextResponse:
        gauges = {"semrec_catalogue_items": ("Items in the catalogue, deleted ones included.", len(cat)),
                  "semrec_catalogue_active_items": ("Recommendable items.", cat.n_active),
                  "semrec_catalogue_added_items": ("Items added while serving.", cat.n_added),
                  "semrec_batches_total": ("Model calls made by the micro-batcher.", batcher.batches),
                  "semrec_batched_requests_total": ("Queries answered by those calls.", batcher.items)}
        return PlainTextResponse(metrics.render(gauges), media_type="text/plain; version=0.0.4")

    @app.post("/recommend", response_model=S.RecommendResponse, summary="Top-k items for one history",
              responses={400: {"model": S.ErrorResponse}})
    async def recommend(req: S.RecommendRequest) -> JSONResponse:
        query, unknown, ignored = to_query(req)
        return FastJSON(respond(await batcher.submit(query), unknown, ignored))

    async def recommend_json(body: bytes) -> tuple[int, Any]:
        """POST /recommend from its raw JSON body, as the route above answers it (used by `FastPath`)."""
        try:
            req = S.RecommendRequest.model_validate_json(body)
        except ValidationError as e:
            return 422, {"detail": validation_detail(e.errors(), prefix=("body",))}
        try:
            query, unknown, ignored = to_query(req)
            return 200, respond(await batcher.submit(query), unknown, ignored)
        except SemrecError as e:
            return 400, {"detail": str(e)}

    @app.post("/recommend/batch", response_model=S.BatchResponse, summary="Top-k items for many histories",
              responses={400: {"model": S.ErrorResponse}})
    async def recommend_batch(req: S.BatchRequest) -> JSONResponse:
        import asyncio

        built = [to_query(r) for r in req.requests]
        results = await asyncio.gather(*[batcher.submit(q) for q, _, _ in built])
        return FastJSON({"results": [respond(res, u, ig) for res, (_, u, ig) in zip(results, built)]})

    @app.get("/items", response_model=S.SearchResponse, summary="Search items by id or text")
    def search(q: str = Q("", max_length=S.MAX_TEXT, description="Words that must all appear (case-insensitive)."),
               limit: int = Q(20, ge=1, le=S.MAX_K)) -> S.SearchResponse:
        return S.SearchResponse(items=[summary(int(i)) for i in cat.search(q, limit)])

    @app.post("/items", response_model=S.AddItemsResponse, dependencies=[Depends(need_key)],
              summary="Add items (recommendable at once by models that score unseen items)",
              responses={400: {"model": S.ErrorResponse}, 401: {"model": S.ErrorResponse}})
    def add_items(req: S.AddItemsRequest) -> S.AddItemsResponse:
        reserved = {k for it in req.items for k in it.attributes} & {"item_id", "item_idx"}
        if reserved:
            raise HTTPException(400, f"attribute name(s) {sorted(reserved)} are reserved: give the id as item_id")
        rows = [{"item_id": it.item_id, **it.attributes} for it in req.items]
        out = engine.add_items(rows)
        return S.AddItemsResponse(items=[S.AddedItem(**o) for o in out], catalogue_size=cat.n_active,
                                  new_items=engine.new_items.kind)

    @app.get("/items/{item_id}", response_model=S.ItemResponse, summary="One item: attributes, code, neighbours",
             responses={404: {"model": S.ErrorResponse}})
    def get_item(item_id: str = Path(max_length=128)) -> S.ItemResponse:
        i = index_of(item_id)
        prefix, neighbours = engine.prefix_neighbours(i)
        return S.ItemResponse(item_id=item_id, title=cat.titles[i], active=bool(cat.active[i]),
                              added=i >= cat.n_base, interactions=int(cat.popularity[i]), attributes=cat.record(i),
                              code=engine.code(i), prefix=prefix or None,
                              prefix_neighbours=[summary(int(j)) for j in neighbours])

    @app.delete("/items/{item_id}", response_model=S.DeleteResponse, dependencies=[Depends(need_key)],
                summary="Stop recommending an item", responses={404: {"model": S.ErrorResponse}})
    def delete_item(item_id: str = Path(max_length=128)) -> S.DeleteResponse:
        index_of(item_id)
        if not engine.delete_item(item_id):
            raise HTTPException(404, f"item {item_id!r} is already deleted")
        return S.DeleteResponse(item_id=item_id, deleted=True, catalogue_size=cat.n_active)

    @app.get("/items/{item_id}/similar", response_model=S.SimilarResponse, summary="Items similar to one item",
             responses={404: {"model": S.ErrorResponse}})
    def similar(item_id: str = Path(max_length=128), k: int = Q(10, ge=1, le=S.MAX_K)) -> S.SimilarResponse:
        i = index_of(item_id)
        items, scores, method = engine.similar(i, k)
        return S.SimilarResponse(item_id=item_id, method=method,
                                 items=[summary(int(j), float(s)) for j, s in zip(items, scores)])

    @app.post("/users/embed", response_model=S.EmbedResponse, summary="The model's user vector for a history",
              responses={400: {"model": S.ErrorResponse}})
    def embed(req: S.EmbedRequest) -> S.EmbedResponse:
        idx, unknown = cat.lookup(req.history)
        vec = engine.embed(idx)
        if vec is None:
            raise HTTPException(400, f"{model_name} has no user vectors (models with embed_users() do)")
        vec = np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)
        return S.EmbedResponse(vector=vec.tolist(), dim=len(vec), unknown=unknown, model=model_name)

    add_api_docs(app)  # /docs and /redoc with their scripts served from here, not a CDN (last: routes match in order)
    route = next(r for r in app.routes if getattr(r, "path", None) == "/recommend")
    app.add_middleware(FastPath, path="/recommend", handler=recommend_json, route=route)
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(Observe, engine=engine, metrics=metrics)  # outermost: 413s are counted too
    return app


def _no_telemetry() -> dict[str, Any]:
    """FastAPI >= 0.16x looks up OpenTelemetry providers on every request; semrec has its own /metrics, and the
    lookups cost more than a whole model call per request at high rates. Older FastAPI has no such option."""
    import inspect

    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    return {}


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: the run, state folder, device and API key come from SEMREC_SERVE_* variables."""
    import torch

    threads = int(os.environ.get("SEMREC_SERVE_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    engine = Engine.from_run(os.environ["SEMREC_SERVE_RUN"], state_dir=os.environ.get("SEMREC_SERVE_STATE") or None,
                             data=os.environ.get("SEMREC_SERVE_DATA") or None,
                             device=os.environ.get("SEMREC_SERVE_DEVICE", "cpu"),
                             options=json.loads(os.environ.get("SEMREC_SERVE_SET", "[]")))
    app = create_app(engine, api_key=os.environ.get("SEMREC_API_KEY") or None,
                     max_batch=int(os.environ.get("SEMREC_SERVE_MAX_BATCH", "64")))
    # The loaded model, dataset and libraries are ~230k objects that live as long as the server; a full garbage
    # collection walks all of them (~0.4 s on the shared 2-core machine, stalling every request in flight). Frozen,
    # they are left out of every later collection (reference counting still frees what becomes unreachable).
    gc.collect()
    gc.freeze()
    return app
