import itertools
from pathlib import Path

from mt.data.demo_corpus import ensure_demo_corpus, generate_pairs, write_demo_corpus


def test_generator_is_deterministic_and_seeded():
    a = generate_pairs(300, seed=11)
    b = generate_pairs(300, seed=11)
    c = generate_pairs(300, seed=12)
    assert [(p.src, p.tgt, p.alignment) for p in a] == [(p.src, p.tgt, p.alignment) for p in b]
    assert [p.src for p in a] != [p.src for p in c]


def test_lengths_span_short_to_long_sentences():
    lengths = [len(p.src.split()) for p in generate_pairs(2000, seed=3)]
    assert min(lengths) >= 3 and max(lengths) <= 40
    assert sum(n <= 8 for n in lengths) > 50 and sum(n >= 32 for n in lengths) > 150


def test_gold_alignments_index_real_words_and_cover_the_source():
    for p in generate_pairs(500, seed=5):
        src, tgt = p.src.split(), p.tgt.split()
        links = [tuple(map(int, link.split("-"))) for link in p.alignment.split()]
        assert links, p
        assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in links)
        aligned_src = {i for i, _ in links}
        # Only "to" (of "wants to") may stay unaligned on the English side.
        assert all(i in aligned_src or src[i] == "to" for i in range(len(src))), p


def test_alignments_show_reordering_and_one_to_many():
    pairs = generate_pairs(1000, seed=9)
    crossing = one_to_many = many_to_one = 0
    for p in pairs:
        links = sorted(tuple(map(int, link.split("-"))) for link in p.alignment.split())
        targets_of: dict[int, list[int]] = {}
        sources_of: dict[int, list[int]] = {}
        for i, j in links:
            targets_of.setdefault(i, []).append(j)
            sources_of.setdefault(j, []).append(i)
        one_to_many += any(len(js) > 1 and max(js) - min(js) > 1 for js in targets_of.values())
        many_to_one += any(len(is_) > 1 for is_ in sources_of.values())
        crossing += any(j2 < j1 for (i1, j1), (i2, j2) in itertools.pairwise(links) if i2 > i1)
    assert crossing > 500 and one_to_many > 100 and many_to_one > 100


def test_splits_are_disjoint_and_complete(tmp_path: Path):
    out = write_demo_corpus(tmp_path, sizes=(300, 40, 40), seed=2)
    train = set((out / "train.en").read_text().splitlines())
    for split, n in (("valid", 40), ("test", 40)):
        lines = (out / f"{split}.en").read_text().splitlines()
        assert len(lines) == n
        assert not train & set(lines)
        assert len((out / f"{split}.de").read_text().splitlines()) == n
        assert len((out / f"{split}.align").read_text().splitlines()) == n


def test_ensure_reuses_a_complete_corpus_and_regenerates_on_new_settings(tmp_path: Path):
    ensure_demo_corpus(tmp_path, (50, 5, 5), 1)
    stamp = (tmp_path / "train.en").stat().st_mtime_ns
    ensure_demo_corpus(tmp_path, (50, 5, 5), 1)
    assert (tmp_path / "train.en").stat().st_mtime_ns == stamp
    ensure_demo_corpus(tmp_path, (60, 5, 5), 1)
    assert len((tmp_path / "train.en").read_text().splitlines()) == 60


def test_relative_pronoun_follows_animacy_in_singular_and_plural():
    from mt.data.demo_corpus import ANIMATE, NOUNS

    people = {pl for sg, pl, *_ in NOUNS if sg in ANIMATE} | ANIMATE
    things = {form.split()[-1] for sg, pl, *_ in NOUNS if sg not in ANIMATE for form in (sg, pl)}  # "birthday cake"
    seen = {"who": set(), "which": set()}
    for p in generate_pairs(3000, seed=4):
        words = p.src.rstrip(".?!").replace(",", "").split()
        for before, pronoun in itertools.pairwise(words):
            if pronoun in seen:
                seen[pronoun].add(before)
    assert seen["who"] and seen["which"]
    assert seen["who"] <= people, seen["who"] - people     # "the children who", never "which"
    assert seen["which"] <= things, seen["which"] - things
    assert {"children", "men", "women"} & seen["who"]
