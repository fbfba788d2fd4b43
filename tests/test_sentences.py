import polars as pl

from semrec.data import SentenceConfig, item_sentences


def test_flattening_cleans_orders_and_truncates():
    items = pl.DataFrame({"item_id": ["1", "2"],
                          "title": ["OPI &amp; Co <b>Nail</b>   Lacquer", "L&#39;Oreal Paris Mascara extra long"],
                          "categories": [["Beauty > Makeup"], []], "brand": ["OPI", None]})
    s = item_sentences(items, ["brand", "title", "categories"], SentenceConfig(max_words={"title": 3}))
    assert s == ["brand: OPI; title: OPI & Co; categories: Beauty > Makeup", "title: L'Oreal Paris Mascara"]
    assert item_sentences(items, ["title"]) == ["title: OPI & Co Nail Lacquer",
                                                "title: L'Oreal Paris Mascara extra long"]


def test_synthetic_sentences_are_deterministic(synthetic):
    a = item_sentences(synthetic.items, synthetic.text_fields)
    assert a == item_sentences(synthetic.items, synthetic.text_fields)
    assert a[0].startswith("title: ") and "categories: " in a[0]
