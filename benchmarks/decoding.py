"""Decoding speed of trie-constrained beam search: users/s over beam sizes over 4-level codes, for the TIGER
encoder-decoder (paper defaults: 4+4 layers, d_model 128, 6 heads, d_ff 1024, 20-item histories) or the
two-level `tiger-hier` (item-level Transformer once per user, small code decoder per beam; --arch tiger-hier).

Also checks every returned item against the catalogue (invalid_items must be 0) and that lists are distinct.

The parallel-identifier model (`--arch tiger-set`, 32 independent digits of 256 codes by default) has no beam: it
scores the whole catalogue exactly; it is timed on the same histories right after a beam-search model
(`--vs-arch`, `--vs-beam`, untrained or `--vs-model`), and `extra.speedup_vs_beam` is the ratio of users/s.
Throughput does not depend on the weights, so by default the model is untrained (seeded); pass --model RUN/model
to time a trained one.

`--reserve-new 0.2` times the cold-start reservation instead: beam search with `reserve_new` 0 and 0.2 on the same
histories, alternated `--repeats` times in one process (medians), `extra.reserve_cost_ratio` = time(0.2) /
time(0). An untrained model has no unseen items, so `--unseen-share` marks a random share of the catalogue as never
trained (a trained cold-split model keeps its own).

    python benchmarks/decoding.py --dataset beauty --beams 1 5 10 20 50
    python benchmarks/decoding.py --dataset beauty --arch tiger-hier --beams 20 --reserve-new 0.2 --unseen-share 0.05
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import SHARED_DATA, record, write_results_md  # noqa: E402
from semrec.data import Sequences  # noqa: E402
from semrec.generation import disambiguate  # noqa: E402
from semrec.models.base import Recommender, get_model_class  # noqa: E402


def catalogue(args) -> tuple[np.ndarray, Sequences, str]:
    """Codes and real evaluation histories: a code table file + S3-Rec sequences, or random 4-level codes."""
    rng = np.random.default_rng(0)
    if args.dataset == "random":
        n_items = args.n_items
        codes = rng.integers(0, 256, size=(n_items, 3))
        hist = Sequences.from_lists([rng.integers(0, n_items, 20).tolist() for _ in range(args.users)])
        source = f"random 3x256 codes for {n_items} items + disambiguation level"
    else:
        from semrec.data import leave_one_out
        from semrec.data.readers import read_s3rec

        folder = {"beauty": "amazon-beauty-s3rec", "sports": "amazon-sports-s3rec", "toys": "amazon-toys-s3rec"}
        name = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games"}[args.dataset]
        ds = read_s3rec(SHARED_DATA / folder[args.dataset] / f"{name}.txt")
        split = leave_one_out(ds)
        n_items = ds.n_items
        hist = split.test.histories.select(np.arange(min(args.users, len(split.test))))
        if args.codes:
            from semrec.models.tiger_layers import load_codes

            return load_codes(args.codes, n_items)[0], hist, f"code table {args.codes}"
        codes = rng.integers(0, 256, size=(n_items, 3))
        source = f"random 3x256 codes for the {n_items} {args.dataset} items + disambiguation level"
    # collision-free: a 4th level numbers the items that share the first three codes
    return disambiguate(np.concatenate([codes, np.zeros((n_items, 1), np.int64)], 1)), hist, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", choices=["beauty", "sports", "toys", "random"])
    ap.add_argument("--codes", help="code table file (.safetensors/.npy/.parquet); default: random 4-level codes")
    ap.add_argument("--arch", default="tiger", choices=["tiger", "tiger-decoder", "tiger-hier", "tiger-set"],
                    help="architecture of the untrained (seeded) model that is timed")
    ap.add_argument("--model", help="a saved generative model folder to time instead of an untrained one")
    ap.add_argument("--n-items", type=int, default=12101)
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--beams", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    ap.add_argument("--decode-batch", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the network to bfloat16")
    ap.add_argument("--tag", default=None, help="suffix for result file names (e.g. the machine)")
    ap.add_argument("--digits", type=int, default=32, help="tiger-set: digits of the random identifiers")
    ap.add_argument("--vs-arch", default="tiger-hier", help="tiger-set: the beam-search model it is compared with")
    ap.add_argument("--vs-model", default=None, help="tiger-set: a saved beam-search model folder instead")
    ap.add_argument("--vs-beam", type=int, default=20)
    ap.add_argument("--reserve-new", type=float, default=0.0, help="time this reserve_new share against 0")
    ap.add_argument("--unseen-share", type=float, default=0.05,
                    help="with --reserve-new on an untrained model: share of items marked never trained")
    ap.add_argument("--repeats", type=int, default=3, help="with --reserve-new: alternations (medians)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.arch == "tiger-set" or (args.model and "tiger-set" in open(Path(args.model) / "config.json").read(200)):
        return time_parallel(args)
    codes, hist, source = catalogue(args)
    if args.model:
        model = Recommender.load(args.model, device=args.device)
        source = f"trained model {args.model}"
    else:
        model = get_model_class(args.arch)(len(codes), codes=codes, device=args.device,
                                           decode_batch=args.decode_batch).build()
    model.module.eval()
    if args.reserve_new:
        return time_reserve(args, model, hist, source)
    n_levels = codes.shape[1]
    codes_t = torch.as_tensor(model.codes)
    for beam in args.beams:
        k = min(args.k, beam)
        model.recommend(hist.select(np.arange(min(64, len(hist)))), k=k, beam=beam)  # warm-up
        load0 = os.getloadavg()
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            items, scores = model.recommend(hist, k=k, beam=beam)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        # every returned item must be an active catalogue item whose code the trie maps back to it
        valid = (items >= 0) & (items < len(model.codes))
        back = model.trie.lookup(codes_t[np.clip(items, 0, None)].to(model.trie.device)).cpu().numpy()
        invalid = int((~valid | (back != items) | ~model.active[np.clip(items, 0, None)]).sum())
        distinct = bool(all(len(set(r)) == k for r in items.tolist()))
        ups = len(hist) / dt
        print(f"beam {beam:3d}: {ups:8.1f} users/s  ({dt:.2f}s for {len(hist)} users), invalid {invalid}, "
              f"distinct {distinct}, load {load0[0]:.1f}")
        tag = f"_{args.tag}" if args.tag else ""
        arch = model.name
        cfg = model.config
        layers = {"tiger": ["encoder_layers", "decoder_layers"], "tiger-hier": ["n_layers", "head_layers"]}.get(arch, ["n_layers"])
        stem = "tiger" if arch == "tiger" else arch.replace("-", "_")
        record("decoding", dataset=args.dataset, model=arch, variant=f"beam{beam}{'-bf16' if args.bf16 else ''}{tag}",
               split=None, timing={"wall_s": round(dt, 3)}, device=args.device,
               settings={"beam": beam, "k": k, "n_levels": n_levels, "users": len(hist),
                         "decode_batch": model.config.decode_batch, "max_history": model.config.max_history,
                         "encoder_input": "item" if model.item_input else "token", "bf16": args.bf16,
                         "threads": torch.get_num_threads(), "codes": source, "n_items": len(model.codes),
                         "d_model": cfg.d_model, "d_ff": cfg.d_ff, "layers": [getattr(cfg, n) for n in layers]},
               extra={"beam": beam, "users_per_s": round(ups, 1), "invalid_items": invalid, "distinct": distinct,
                      "loadavg_before": [round(x, 2) for x in load0],
                      "loadavg_after": [round(x, 2) for x in os.getloadavg()], "trie": repr(model.trie)},
               name=f"{args.dataset}_{stem}_beam{beam}{'_bf16' if args.bf16 else ''}{tag}")
    write_results_md()


def time_reserve(args, model, hist: Sequences, source: str) -> None:
    """Beam search with reserve_new 0 and `args.reserve_new`, alternated in one process: the reservation's cost."""
    if not args.model:  # untrained: mark a random share of the catalogue as never trained
        model.seen = np.random.default_rng(3).random(len(model.codes)) >= args.unseen_share
    beam = args.beams[0]
    k = min(args.k, beam)
    times: dict[float, list[float]] = {0.0: [], args.reserve_new: []}
    load0 = os.getloadavg()
    for _ in range(args.repeats):
        for share in times:
            model.config.reserve_new = share
            ups, items = _users_per_s(model, hist, k, beam=beam)
            times[share].append(len(hist) / ups)
    unseen = ~model.seen[np.clip(items, 0, len(model.seen) - 1)]
    med = {share: float(np.median(t)) for share, t in times.items()}
    ratio = med[args.reserve_new] / med[0.0]
    print(f"{model.name} beam {beam}: reserve 0 {len(hist) / med[0.0]:.1f} users/s, reserve {args.reserve_new} "
          f"{len(hist) / med[args.reserve_new]:.1f} users/s: cost ratio {ratio:.2f}; unseen share of lists "
          f"{unseen.mean():.3f}")
    tag = f"_{args.tag}" if args.tag else ""
    record("decoding", dataset=args.dataset, model=model.name, variant=f"beam{beam}-reserve{args.reserve_new}{tag}",
           split=None, timing={"wall_s": round(med[args.reserve_new], 3)}, device=args.device,
           settings={"beam": beam, "k": k, "users": len(hist), "reserve_new": args.reserve_new,
                     "unseen_items": int((~model.seen).sum()), "n_items": len(model.codes), "codes": source,
                     "repeats": args.repeats, "threads": torch.get_num_threads(),
                     "how": "reserve 0 and reserve_new alternated in one process, medians"},
           extra={"beam": beam, "reserve_new": args.reserve_new, "reserve_cost_ratio": round(ratio, 3),
                  "users_per_s": round(len(hist) / med[args.reserve_new], 1),
                  "users_per_s_reserve0": round(len(hist) / med[0.0], 1),
                  "times_s": {str(s): [round(t, 3) for t in ts] for s, ts in times.items()},
                  "unseen_share_of_lists": round(float(unseen.mean()), 4), "target": {"reserve_cost_ratio": 1.3},
                  "target_met": ratio <= 1.3, "loadavg_before": [round(x, 2) for x in load0],
                  "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
           name=f"{args.dataset}_{model.name.replace('-', '_')}_beam{beam}_reserve{args.reserve_new}{tag}")
    write_results_md()


def _users_per_s(model, hist: Sequences, k: int, **kw) -> tuple[float, np.ndarray]:
    model.recommend(hist.select(np.arange(min(64, len(hist)))), k=k, **kw)  # warm-up
    t0 = time.perf_counter()
    items, _ = model.recommend(hist, k=k, **kw)
    return len(hist) / (time.perf_counter() - t0), items


def time_parallel(args) -> None:
    """Exact whole-catalogue scoring of tiger-set vs beam search of a trie model, same histories, same process."""
    codes, hist, source = catalogue(args)
    n_items = len(codes)
    if args.model:
        model = Recommender.load(args.model, device=args.device)
        source = f"trained model {args.model}"
    else:
        set_codes = np.random.default_rng(1).integers(0, 256, size=(n_items, args.digits))
        model = get_model_class("tiger-set")(n_items, codes=set_codes, device=args.device).build()
        source = f"random {args.digits}x256 digit codes for {n_items} items"
    if args.vs_model:
        beam_model = Recommender.load(args.vs_model, device=args.device)
    else:
        beam_model = get_model_class(args.vs_arch)(n_items, codes=codes, device=args.device,
                                                   decode_batch=args.decode_batch).build()
    load0 = os.getloadavg()
    beam_ups, _ = _users_per_s(beam_model, hist, args.k, beam=args.vs_beam)
    ups, items = _users_per_s(model, hist, args.k)
    invalid = int(((items < 0) | (items >= model.n_items)).sum() + (~model.active[np.clip(items, 0, None)]).sum())
    distinct = bool(all(len(set(r)) == args.k for r in items.tolist()))
    print(f"tiger-set exact: {ups:8.1f} users/s; {beam_model.name} beam {args.vs_beam}: {beam_ups:8.1f} users/s; "
          f"speedup {ups / beam_ups:.2f}x, invalid {invalid}, load {load0[0]:.1f}")
    cfg, tag = model.config, f"_{args.tag}" if args.tag else ""
    record("decoding", dataset=args.dataset, model="tiger-set", variant=f"exact{tag}", split=None,
           timing={"wall_s": round(len(hist) / ups, 3)}, device=args.device,
           settings={"decoding": "exact: every catalogue item scored by the sum of its digits' log-probs",
                     "k": args.k, "n_digits": int(model.codes.shape[1]), "users": len(hist),
                     "score_batch": cfg.score_batch, "max_history": cfg.max_history, "d_model": cfg.d_model,
                     "d_ff": cfg.d_ff, "layers": cfg.n_layers, "threads": torch.get_num_threads(), "codes": source,
                     "n_items": n_items, "vs": {"model": args.vs_model or f"untrained {args.vs_arch}",
                                                "beam": args.vs_beam, "codes": "4-level trie codes"}},
           extra={"users_per_s": round(ups, 1), "beam_users_per_s": round(beam_ups, 1),
                  "speedup_vs_beam": round(ups / beam_ups, 2), "invalid_items": invalid, "distinct": distinct,
                  "loadavg_before": [round(x, 2) for x in load0],
                  "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
           name=f"{args.dataset}_tiger_set_exact{tag}")
    write_results_md()


if __name__ == "__main__":
    main()
