"""Request and response bodies of the HTTP API, with the limits every request is held to.

Unknown fields are rejected (422), so a misspelt option never silently does nothing.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_HISTORY = 200  # history items read per request (models read at most their max_len anyway)
MAX_K = 200
MAX_BATCH = 256  # users per POST /recommend/batch
MAX_NEW_ITEMS = 100  # items per POST /items
MAX_ATTRIBUTES = 32
MAX_TEXT = 2000  # characters of one attribute value or query
MAX_BODY_BYTES = 1 << 20  # request bodies larger than this get 413

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# attribute (column) names: letters, digits, _ . - and inner spaces, so they are safe as table columns and in sentences
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_ .-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Scalar = Union[Annotated[str, StringConstraints(max_length=200)], int, float, bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    min: float | None = None
    max: float | None = None


FilterValue = Union[Scalar, Annotated[list[Scalar], Field(max_length=100)], Range]
AttributeValue = Union[Text, int, float, bool, Annotated[list[Text], Field(max_length=100)],
                       Annotated[list[Annotated[list[Text], Field(max_length=20)]], Field(max_length=20)]]


class RecommendRequest(_Strict):
    history: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY,
                                  description="External item ids, oldest first.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: bool = Field(False, description="Never return items of the history.")
    query: Text | None = Field(None, description="Only items whose id or text contains every word of this query.")
    filter: dict[FieldName, FilterValue] | None = Field(
        None, max_length=16, description='Attribute constraints: {"brand": "OPI"}, {"brand": ["OPI", "Essie"]}, '
                                         '{"price": {"min": 5, "max": 20}}; list attributes match by contained text.')

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"history": ["B004756YJA", "B00BQYWEK8"], "k": 10, "exclude_seen": True}]})


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    title: str
    score: float


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    unknown: list[str] = Field(description="History ids not in the catalogue (ignored).")
    ignored: list[str] = Field(default_factory=list, description="Known ids this model cannot read (added after "
                                                                 "training, for a model that scores only trained items).")
    fallback: str | None = Field(None, description="'popularity' when no history item was usable.")
    model: str


class BatchRequest(_Strict):
    requests: list[RecommendRequest] = Field(max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


class NewItem(_Strict):
    item_id: ItemId
    attributes: dict[FieldName, AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES,
        description="Attribute values, e.g. title, brand, categories: the run's text fields make the item's sentence.")


class AddItemsRequest(_Strict):
    items: list[NewItem] = Field(min_length=1, max_length=MAX_NEW_ITEMS)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [{"item_id": "NEW-1", "attributes": {"title": "lavender hand cream", "brand": "Acme"}}]}]})


class AddedItem(BaseModel):
    item_id: str
    status: str = Field(description="added, exists (id already in the catalogue) or duplicate (repeated in this "
                                    "request)")
    recommendable: bool
    reason: str | None = None
    code: list[int] | None = Field(None, description="Semantic ID, for semantic-ID runs.")


class AddItemsResponse(BaseModel):
    items: list[AddedItem]
    catalogue_size: int
    new_items: str = Field(description="How this run takes new items: codes, vectors or none.")


class DeleteResponse(BaseModel):
    item_id: str
    deleted: bool
    catalogue_size: int


class ItemSummary(BaseModel):
    item_id: str
    title: str
    score: float | None = None


class ItemResponse(BaseModel):
    item_id: str
    title: str
    active: bool
    added: bool = Field(description="Added while serving (not in the training data).")
    interactions: int
    attributes: dict
    code: list[int] | None = None
    prefix: list[int] | None = Field(None, description="The code without its last level.")
    prefix_neighbours: list[ItemSummary] = Field(default_factory=list)


class SearchResponse(BaseModel):
    items: list[ItemSummary]


class SimilarResponse(BaseModel):
    item_id: str
    method: str
    items: list[ItemSummary]


class EmbedRequest(_Strict):
    history: list[ItemId] = Field(max_length=MAX_HISTORY)


class EmbedResponse(BaseModel):
    vector: list[float]
    dim: int
    unknown: list[str]
    model: str


class HealthResponse(BaseModel):
    status: str
    model: str
    run: str
    items: int
    active_items: int
    added_items: int
    new_items: str
    new_items_reason: str | None
    semantic_ids: bool
    user_vectors: bool
    state_version: int


class ErrorResponse(BaseModel):
    detail: str
