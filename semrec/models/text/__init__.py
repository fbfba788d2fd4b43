"""Text-based sequential recommenders: items enter as their text vectors (UniSRec / Recformer line).

`text-seq` (text_seq.py) with its adapter (adapter.py), item-vector sources (item_vectors.py), catalogue growth and
transfer (transfer.py) and multi-catalogue item tables (catalogues.py). Modules load lazily through the registry.
"""
