"""Small real runs for the serving tests, built the way the CLI builds them (dataset -> text vectors -> RQ-KMeans
ids -> trained models), on a slice of the synthetic catalogue so a test session builds them in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_USERS, N_ITEMS = 500, 300
FIELDS = ["title", "brand", "categories"]


def build_dataset(root: Path):
    from semrec.data import SyntheticConfig, synthetic_dataset

    ds = synthetic_dataset(SyntheticConfig(n_users=N_USERS, n_items=N_ITEMS, seed=3))
    ds.save(root / "dataset")
    return ds


def build_sasrec(root: Path, ds) -> Path:
    """A SASRec run (full softmax, 3 epochs) in root/sasrec."""
    from semrec.data import leave_one_out
    from semrec.training.run import build_model, train_run

    model = build_model("sasrec", ds.n_items, overrides={"loss": "ce", "max_len": 20, "train.epochs": 3,
                                                          "train.progress": False, "train.num_threads": 1})
    train_run(model, leave_one_out(ds), root / "sasrec", dataset=ds, progress=False,
              provenance={"data": str(root / "dataset")})
    return root / "sasrec"


def build_ids(root: Path, ds) -> Path:
    """Text vectors (bundled MiniLM) + a 2-level RQ-KMeans tokenizer, as `semrec embed` + `semrec ids fit` write."""
    from semrec.data import item_sentences
    from semrec.features import TextEncoder, save_vectors
    from semrec.semantic_ids import TOKENIZERS

    enc = TextEncoder(cache_dir=str(root / "cache"), progress=False, batch_size=64)
    vectors = enc.encode(item_sentences(ds.items, FIELDS))
    save_vectors(root / "text.safetensors", vectors, {"dataset": str(root / "dataset"), "source": "text",
                                                       "rows": "item_idx", "model": enc.model_id,
                                                       "fields": ",".join(FIELDS)})
    tok = TOKENIZERS["rq-kmeans"](n_levels=2, codebook_size=16, collisions="append", seed=0)
    tok.fit(vectors, item_ids=ds.item_ids().tolist())
    tok.save(root / "ids")
    (root / "ids" / "inputs.json").write_text(json.dumps({"vectors": [str(root / "text.safetensors")],
                                                          "weights": None, "cf": None, "dataset": None}))
    return root / "ids"


def build_tiger_hier(root: Path, ds, ids: Path) -> Path:
    """A small tiger-hier run over those codes (30 epochs: enough to learn the synthetic routines)."""
    from semrec.data import leave_one_out
    from semrec.training.run import build_model, train_run

    model = build_model("tiger-hier", ds.n_items, overrides={
        "codes_path": str(ids), "d_model": 64, "d_ff": 128, "n_heads": 2, "beam": 20, "train.epochs": 30,
        "train.eval_every": 100, "train.progress": False, "train.num_threads": 1, "train.batch_size": 64})
    train_run(model, leave_one_out(ds), root / "tiger-hier", dataset=ds, progress=False,
              provenance={"data": str(root / "dataset")})
    return root / "tiger-hier"


def similar_history(ds, product_type: str, n: int = 4) -> list[str]:
    """Ids of up to n items of one product type (e.g. 'shampoo'): a history a new item of that type should follow."""
    titles = ds.items["title"].to_numpy().astype(str)
    rows = np.flatnonzero(np.char.find(np.char.lower(titles), product_type) >= 0)[:n]
    return ds.items["item_id"].to_numpy()[rows].tolist()


def build_text_seq(root: Path, ds) -> Path:
    """A text-seq run over the same text vectors (10 epochs): scores items, new ones too, from their text."""
    from semrec.data import leave_one_out
    from semrec.training.run import build_model, train_run

    # unseen_id=none: an added item is scored from its text alone. The default (borrow the ID vector of the
    # nearest seen item) would give the new tent the ID of a tent in the request's own history, which the
    # model learned not to repeat (it ranks 27th then); see docs/text_models.md on cold items.
    model = build_model("text-seq", ds.n_items, overrides={
        "vectors_path": str(root / "text.safetensors"), "max_len": 20, "train.epochs": 10, "train.progress": False,
        "train.num_threads": 1, "train.batch_size": 64, "unseen_id": "none"})
    train_run(model, leave_one_out(ds), root / "text-seq", dataset=ds, progress=False,
              provenance={"data": str(root / "dataset")})
    return root / "text-seq"
