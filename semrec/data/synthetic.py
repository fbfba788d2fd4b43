"""The built-in synthetic catalogue: realistic item text and users with real sequential habits.

Users have latent department interests and brand loyalty; each next purchase repeats the current
product line, follows the "routine" to its complementary next product type, or jumps to a new
interest. So a sequence model has real signal to find (it beats popularity clearly), and items
with text but no interactions exercise cold start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from semrec.data.dataset import Dataset

# department -> line -> product types in "routine" order (the next type is the usual follow-up)
TAXONOMY: dict[str, dict[str, list[str]]] = {
    "Beauty": {"Skin Care": ["cleanser", "toner", "serum", "moisturizer", "sunscreen"],
               "Hair Care": ["shampoo", "conditioner", "hair mask", "hair oil"],
               "Makeup": ["primer", "foundation", "concealer", "mascara", "lipstick"],
               "Nails": ["base coat", "nail polish", "top coat", "nail polish remover"]},
    "Kitchen": {"Coffee": ["coffee beans", "coffee grinder", "pour over dripper", "paper filters", "milk frother"],
                "Cookware": ["skillet", "saucepan", "spatula", "dutch oven"],
                "Baking": ["mixing bowl", "baking sheet", "silicone mat", "cooling rack", "piping bags"]},
    "Sports": {"Running": ["running shoes", "running socks", "hydration belt", "energy gels", "foam roller"],
               "Yoga": ["yoga mat", "yoga block", "yoga strap", "meditation cushion"],
               "Camping": ["tent", "sleeping bag", "sleeping pad", "camping stove", "headlamp"],
               "Cycling": ["bike helmet", "bike lights", "bike lock", "water bottle cage", "cycling gloves"]},
    "Electronics": {"Audio": ["headphones", "headphone stand", "bluetooth speaker", "audio cable"],
                    "Phone": ["phone case", "screen protector", "fast charger", "power bank"],
                    "Computer": ["mechanical keyboard", "wireless mouse", "mouse pad", "monitor stand", "usb hub"]},
    "Toys": {"Building": ["building blocks", "baseplate", "minifigure set", "storage bin"],
             "Puzzles": ["jigsaw puzzle", "puzzle mat", "puzzle glue", "puzzle frame"],
             "Games": ["board game", "card sleeves", "game expansion", "dice set"]},
}
ADJECTIVES = ["classic", "premium", "compact", "organic", "professional", "lightweight", "deluxe", "travel",
              "ultra", "natural", "essential", "advanced", "everyday", "eco", "signature", "pro", "mini", "soft"]
VARIANTS = ["black", "white", "blue", "rose", "green", "large", "small", "2-pack", "3-pack", "unscented",
            "citrus", "lavender", "matte", "gloss", "original", "xl"]
BRAND_SYLLABLES = ["lu", "ma", "ko", "ri", "ve", "sa", "no", "ta", "zen", "vo", "pi", "el", "ar", "bo", "ne", "qu"]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 3000
    n_items: int = 2000
    n_brands: int = 60
    min_length: int = 5
    max_length: int = 30
    p_repeat_line: float = 0.35  # next item of the same line (often the routine follow-up)
    p_follow_up: float = 0.7  # within the line: the next product type in the routine
    p_brand_loyal: float = 0.5  # pick the user's favourite brand when it sells the type
    cold_fraction: float = 0.05  # items with text but no interactions
    seed: int = 0


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        k = rng.integers(2, 4)
        names.add("".join(rng.choice(BRAND_SYLLABLES, size=k)).capitalize())
    return sorted(names)


def synthetic_dataset(config: SyntheticConfig | None = None) -> Dataset:
    """Generate the catalogue and interaction log (deterministic for a given config)."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    types = [(d, line, t, i) for d, lines in TAXONOMY.items() for line, ts in lines.items() for i, t in enumerate(ts)]
    n_types = len(types)
    dept_names = list(TAXONOMY)
    type_dept = np.array([dept_names.index(d) for d, _, _, _ in types])
    line_names = [f"{d}/{line}" for d, line, _, _ in types]
    line_ids = {name: k for k, name in enumerate(dict.fromkeys(line_names))}
    type_line = np.array([line_ids[n] for n in line_names])
    # follow-up type: the next in the routine, wrapping around
    follow = np.array([k + 1 if k + 1 < n_types and type_line[k + 1] == type_line[k]
                       else int(np.flatnonzero(type_line == type_line[k])[0]) for k in range(n_types)])

    brands = _brand_names(rng, cfg.n_brands)
    brand_dept = rng.integers(0, len(dept_names), size=cfg.n_brands)

    # items: type uniform, brand from the type's department, popularity Zipf-like
    item_type = rng.integers(0, n_types, size=cfg.n_items)
    item_brand = np.empty(cfg.n_items, dtype=np.int64)
    for d in range(len(dept_names)):
        in_d = np.flatnonzero(type_dept[item_type] == d)
        pool = np.flatnonzero(brand_dept == d)
        pool = pool if len(pool) else np.arange(cfg.n_brands)
        item_brand[in_d] = rng.choice(pool, size=len(in_d))
    popularity = rng.pareto(1.2, size=cfg.n_items) + 1.0
    cold = rng.random(cfg.n_items) < cfg.cold_fraction
    weight = np.where(cold, 0.0, popularity)
    base_price = {d: p for d, p in zip(dept_names, [18.0, 35.0, 45.0, 60.0, 25.0])}
    price = np.round(np.array([base_price[types[t][0]] for t in item_type]) * rng.lognormal(0, 0.5, cfg.n_items), 2)

    titles, cats = [], []
    for i in range(cfg.n_items):
        d, line, t, _ = types[item_type[i]]
        adj = " ".join(rng.choice(ADJECTIVES, size=rng.integers(1, 3), replace=False))
        titles.append(f"{brands[item_brand[i]]} {adj} {t}, {rng.choice(VARIANTS)}")
        cats.append([f"{d} > {line} > {t}"])
    items = pl.DataFrame({"item_id": [f"SYN{i:05d}" for i in range(cfg.n_items)], "title": titles,
                          "brand": [brands[b] for b in item_brand], "categories": cats,
                          "price": [f"{p:.2f}" for p in price]})

    # per-type item sampling tables (cumulative weights), built once
    type_items = [np.flatnonzero((item_type == k) & (weight > 0)) for k in range(n_types)]

    def draw(type_idx: np.ndarray, fav_brand: np.ndarray) -> np.ndarray:
        out = np.empty(len(type_idx), dtype=np.int64)
        for k in np.unique(type_idx):
            rows = np.flatnonzero(type_idx == k)
            cand = type_items[k]
            if len(cand) == 0:
                out[rows] = rng.choice(np.flatnonzero(weight > 0), size=len(rows))
                continue
            w = weight[cand][None, :] * np.where(item_brand[cand][None, :] == fav_brand[rows, None],
                                                   1.0 + 8.0 * cfg.p_brand_loyal, 1.0)
            cum = np.cumsum(w, axis=1)
            u = rng.random(len(rows))[:, None] * cum[:, -1:]
            out[rows] = cand[(cum < u).sum(axis=1).clip(max=len(cand) - 1)]
        return out

    n = cfg.n_users
    interest = rng.dirichlet(np.full(len(dept_names), 0.3), size=n)  # department mixture per user
    fav_brand = rng.integers(0, cfg.n_brands, size=n)
    lengths = np.clip(np.round(rng.lognormal(np.log(9), 0.6, n)).astype(int), cfg.min_length, cfg.max_length)

    def new_interest_type(rows: np.ndarray) -> np.ndarray:
        cum = np.cumsum(interest[rows], axis=1)
        dept = (cum < rng.random(len(rows))[:, None]).sum(axis=1).clip(max=len(dept_names) - 1)
        # a type of that department, favouring the start of a routine
        out = np.empty(len(rows), dtype=np.int64)
        for d in np.unique(dept):
            r = np.flatnonzero(dept == d)
            cand = np.flatnonzero(type_dept == d)
            out[r] = rng.choice(cand, size=len(r))
        return out

    cur_type = new_interest_type(np.arange(n))
    seq = np.full((n, cfg.max_length), -1, dtype=np.int64)
    seq[:, 0] = draw(cur_type, fav_brand)
    for pos in range(1, cfg.max_length):
        active = np.flatnonzero(lengths > pos)
        r = rng.random(len(active))
        stay = r < cfg.p_repeat_line
        nxt = new_interest_type(active)
        same_line = cur_type[active]
        follow_up = np.where(rng.random(len(active)) < cfg.p_follow_up, follow[same_line],
                             rng.choice(n_types, size=len(active)))
        follow_up = np.where(type_line[follow_up] == type_line[same_line], follow_up, follow[same_line])
        nxt = np.where(stay, follow_up, nxt)
        cur_type[active] = nxt
        seq[active, pos] = draw(nxt, fav_brand[active])

    user = np.repeat(np.arange(n), lengths)
    mask = seq >= 0
    t0 = rng.integers(1_600_000_000, 1_650_000_000, size=n)
    gaps = rng.integers(3_600, 20 * 86_400, size=seq.shape).cumsum(axis=1)
    inter = pl.DataFrame({"user_id": [f"U{u:05d}" for u in user], "item_id": items["item_id"].to_numpy()[seq[mask]],
                          "timestamp": (t0[:, None] + gaps)[mask]})
    meta = {"source_format": "synthetic", "synthetic": asdict(cfg), "timestamp_kind": "unix"}
    return Dataset.build(inter, items, name="synthetic", text_fields=["title", "brand", "categories", "price"],
                         meta=meta)
