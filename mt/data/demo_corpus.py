"""A synthetic English-German corpus with gold word alignments by construction.

Users must see attention work without a download, so the demo corpus is generated
here from a small bilingual lexicon and a grammar that has the phenomena that make
translation hard for a model with a fixed-size context: verb-final subordinate clauses,
separable verbs (one English word to two German words far apart), modal and perfect
verb brackets, subject-verb inversion after a fronted adverb, contractions (``in
dem`` -> ``im``: many-to-one), compounds (``train station`` -> ``Bahnhof``), case and
gender agreement of articles, adjectives and relative pronouns.

Every token is generated together with a link id; two tokens on either side with the
same id are aligned, so the gold alignment (Pharaoh ``i-j``, 0-based) is exact.
Generation is deterministic for a given seed and uses only Python's ``random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mt.files import atomic_write_text

# --------------------------------------------------------------------------- lexicon
# Nouns: english singular, english plural, german singular, german plural, gender.
# Two-word English nouns are compounds in German (many-to-one).
NOUNS = [
    ("man", "men", "Mann", "Männer", "m"),
    ("woman", "women", "Frau", "Frauen", "f"),
    ("child", "children", "Kind", "Kinder", "n"),
    ("dog", "dogs", "Hund", "Hunde", "m"),
    ("cat", "cats", "Katze", "Katzen", "f"),
    ("horse", "horses", "Pferd", "Pferde", "n"),
    ("teacher", "teachers", "Lehrer", "Lehrer", "m"),
    ("doctor", "doctors", "Ärztin", "Ärztinnen", "f"),
    ("student", "students", "Student", "Studenten", "m"),
    ("girl", "girls", "Mädchen", "Mädchen", "n"),
    ("boy", "boys", "Junge", "Jungen", "m"),
    ("friend", "friends", "Freund", "Freunde", "m"),
    ("neighbour", "neighbours", "Nachbarin", "Nachbarinnen", "f"),
    ("cook", "cooks", "Koch", "Köche", "m"),
    ("farmer", "farmers", "Bauer", "Bauern", "m"),
    ("bird", "birds", "Vogel", "Vögel", "m"),
    ("book", "books", "Buch", "Bücher", "n"),
    ("letter", "letters", "Brief", "Briefe", "m"),
    ("car", "cars", "Auto", "Autos", "n"),
    ("apple", "apples", "Apfel", "Äpfel", "m"),
    ("bread", "breads", "Brot", "Brote", "n"),
    ("table", "tables", "Tisch", "Tische", "m"),
    ("door", "doors", "Tür", "Türen", "f"),
    ("window", "windows", "Fenster", "Fenster", "n"),
    ("picture", "pictures", "Bild", "Bilder", "n"),
    ("ball", "balls", "Ball", "Bälle", "m"),
    ("key", "keys", "Schlüssel", "Schlüssel", "m"),
    ("cup", "cups", "Tasse", "Tassen", "f"),
    ("flower", "flowers", "Blume", "Blumen", "f"),
    ("song", "songs", "Lied", "Lieder", "n"),
    ("newspaper", "newspapers", "Zeitung", "Zeitungen", "f"),
    ("bicycle", "bicycles", "Fahrrad", "Fahrräder", "n"),
    ("train station", "train stations", "Bahnhof", "Bahnhöfe", "m"),
    ("apple juice", "apple juices", "Apfelsaft", "Apfelsäfte", "m"),
    ("birthday cake", "birthday cakes", "Geburtstagskuchen", "Geburtstagskuchen", "m"),
    ("fire engine", "fire engines", "Feuerwehrauto", "Feuerwehrautos", "n"),
    ("tea cup", "tea cups", "Teetasse", "Teetassen", "f"),
    ("door key", "door keys", "Türschlüssel", "Türschlüssel", "m"),
]
ANIMATE = {"man", "woman", "child", "dog", "cat", "horse", "teacher", "doctor", "student",
           "girl", "boy", "friend", "neighbour", "cook", "farmer", "bird"}
# Every English form of those nouns, so "the children who ..." is as right as "the child who".
ANIMATE_FORMS = {form for sg, pl, *_ in NOUNS if sg in ANIMATE for form in (sg, pl)}

# Places for prepositional phrases: english, german, gender (dative after "in").
PLACES = [
    ("park", "Park", "m"), ("garden", "Garten", "m"), ("forest", "Wald", "m"),
    ("city", "Stadt", "f"), ("school", "Schule", "f"), ("kitchen", "Küche", "f"),
    ("house", "Haus", "n"), ("office", "Büro", "n"), ("village", "Dorf", "n"),
]

ADJECTIVES = [
    ("big", "groß"), ("small", "klein"), ("old", "alt"), ("young", "jung"),
    ("new", "neu"), ("red", "rot"), ("green", "grün"), ("beautiful", "schön"),
    ("tired", "müde"), ("happy", "glücklich"), ("quiet", "leise"), ("clever", "klug"),
    ("brown", "braun"), ("cheap", "billig"), ("strange", "seltsam"),
]

# Verbs. english: (3sg, base, past participle); german: (1sg, 3sg, plural/infinitive,
# participle without particle, separable particle or None); object case; auxiliary.
@dataclass(frozen=True)
class Verb:
    en: tuple[str, str, str]
    de: tuple[str, str, str, str]
    particle: str | None
    case: str | None  # "acc", "dat" or None (intransitive)
    aux: str = "haben"
    animate_object: bool = False

VERBS = [
    Verb(("sees", "see", "seen"), ("sehe", "sieht", "sehen", "gesehen"), None, "acc"),
    Verb(("finds", "find", "found"), ("finde", "findet", "finden", "gefunden"), None, "acc"),
    Verb(("buys", "buy", "bought"), ("kaufe", "kauft", "kaufen", "gekauft"), None, "acc"),
    Verb(("reads", "read", "read"), ("lese", "liest", "lesen", "gelesen"), None, "acc"),
    Verb(("carries", "carry", "carried"), ("trage", "trägt", "tragen", "getragen"), None, "acc"),
    Verb(("loves", "love", "loved"), ("liebe", "liebt", "lieben", "geliebt"), None, "acc"),
    Verb(("paints", "paint", "painted"), ("male", "malt", "malen", "gemalt"), None, "acc"),
    Verb(("washes", "wash", "washed"), ("wasche", "wäscht", "waschen", "gewaschen"), None, "acc"),
    Verb(("calls", "call", "called"), ("rufe", "ruft", "rufen", "gerufen"), "an", "acc", animate_object=True),
    Verb(("invites", "invite", "invited"), ("lade", "lädt", "laden", "geladen"), "ein", "acc", animate_object=True),
    Verb(("opens", "open", "opened"), ("mache", "macht", "machen", "gemacht"), "auf", "acc"),
    Verb(("closes", "close", "closed"), ("mache", "macht", "machen", "gemacht"), "zu", "acc"),
    Verb(("brings", "bring", "brought"), ("bringe", "bringt", "bringen", "gebracht"), "mit", "acc"),
    Verb(("describes", "describe", "described"), ("beschreibe", "beschreibt", "beschreiben", "beschrieben"), None, "acc"),
    Verb(("helps", "help", "helped"), ("helfe", "hilft", "helfen", "geholfen"), None, "dat", animate_object=True),
    Verb(("thanks", "thank", "thanked"), ("danke", "dankt", "danken", "gedankt"), None, "dat", animate_object=True),
    Verb(("follows", "follow", "followed"), ("folge", "folgt", "folgen", "gefolgt"), None, "dat", "sein", animate_object=True),
    Verb(("sleeps", "sleep", "slept"), ("schlafe", "schläft", "schlafen", "geschlafen"), None, None),
    Verb(("laughs", "laugh", "laughed"), ("lache", "lacht", "lachen", "gelacht"), None, None),
    Verb(("works", "work", "worked"), ("arbeite", "arbeitet", "arbeiten", "gearbeitet"), None, None),
    Verb(("sings", "sing", "sung"), ("singe", "singt", "singen", "gesungen"), None, None),
    Verb(("runs", "run", "run"), ("laufe", "läuft", "laufen", "gelaufen"), None, None, "sein"),
    Verb(("comes", "come", "come"), ("komme", "kommt", "kommen", "gekommen"), None, None, "sein"),
    Verb(("gets up", "get up", "got up"), ("stehe", "steht", "stehen", "gestanden"), "auf", None, "sein"),
    Verb(("goes out", "go out", "gone out"), ("gehe", "geht", "gehen", "gegangen"), "aus", None, "sein"),
]

# Modal verbs: english, german (1sg, 3sg, plural). "wants to": "to" is unaligned.
MODALS = [
    (("will",), ("werde", "wird", "werden")),
    (("can",), ("kann", "kann", "können")),
    (("must",), ("muss", "muss", "müssen")),
    (("wants", "to"), ("will", "will", "wollen")),
]
AUX = {"haben": ("habe", "hat", "haben"), "sein": ("bin", "ist", "sind")}

TIME_ADVERBS = [("today", "heute"), ("tomorrow", "morgen"), ("often", "oft"),
                ("now", "jetzt"), ("always", "immer"), ("sometimes", "manchmal")]

# Subordinating conjunctions (verb-final) and the main verbs that take "that".
SUBORDINATORS = [("because", "weil"), ("when", "wenn"), ("although", "obwohl"), ("while", "während")]
SAY_VERBS = [(("knows", "know"), ("weiß", "weiß", "wissen")),
             (("says", "say"), ("sage", "sagt", "sagen")),
             (("thinks", "think"), ("denke", "denkt", "denken")),
             (("hears", "hear"), ("höre", "hört", "hören"))]
COORDINATORS = [("and", "und"), ("but", "aber")]

PRONOUNS = [  # english, german, person ("1sg", "3sg", "pl")
    ("i", "ich", "1sg"), ("he", "er", "3sg"), ("she", "sie", "3sg"),
    ("we", "wir", "pl"), ("they", "sie", "pl"),
]

DEF = {"nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
       "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
       "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"}}
INDEF = {"nom": {"m": "ein", "f": "eine", "n": "ein"},
         "acc": {"m": "einen", "f": "eine", "n": "ein"},
         "dat": {"m": "einem", "f": "einer", "n": "einem"}}
RELATIVE = {"m": "der", "f": "die", "n": "das", "pl": "die"}  # subject relative pronouns


def _weak_ending(case: str, gender: str) -> str:
    """Adjective ending after a definite article."""
    if gender == "pl" or case == "dat" or (case == "acc" and gender == "m"):
        return "en"
    return "e"


def _mixed_ending(case: str, gender: str) -> str:
    """Adjective ending after an indefinite article."""
    if case == "dat" or (case == "acc" and gender == "m"):
        return "en"
    return {"m": "er", "f": "e", "n": "es"}[gender]


def _dative_plural(noun: str) -> str:
    return noun if noun.endswith(("n", "s")) else noun + "n"


# --------------------------------------------------------------------------- generation
Token = tuple[str, int | None]  # (word, link id); None: unaligned


class _Builder:
    """Hands out fresh link ids and collects tokens of both sides."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 0

    def link(self) -> int:
        self.next_id += 1
        return self.next_id


@dataclass
class NounPhrase:
    en: list[Token]
    de: list[Token]
    person: str  # "3sg" or "pl" or "1sg"
    gender: str  # "m", "f", "n" or "pl"


def _noun_phrase(b: _Builder, case: str, animate: bool | None = None) -> NounPhrase:
    rng = b.rng
    pool = [n for n in NOUNS if animate is None or (n[0] in ANIMATE) == animate]
    en_sg, en_pl, de_sg, de_pl, gender = rng.choice(pool)
    plural = rng.random() < 0.3
    article = "none" if plural and rng.random() < 0.4 else ("indef" if not plural and rng.random() < 0.3 else "def")
    g = "pl" if plural else gender
    en: list[Token] = []
    de: list[Token] = []
    if article != "none":
        lid = b.link()
        en.append(("the" if article == "def" else "a", lid))
        de.append(((DEF if article == "def" else INDEF)[case][g], lid))
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        adj_en, adj_de = rng.choice(ADJECTIVES)
        ending = _weak_ending(case, g) if article == "def" else (
            _mixed_ending(case, g) if article == "indef" else ("en" if case == "dat" else "e"))
        lid = b.link()
        en.append((adj_en, lid))
        de.append(((adj_de.removesuffix("e")) + ending, lid))
    lid = b.link()
    noun_en = en_pl if plural else en_sg
    en.extend((w, lid) for w in noun_en.split())
    noun_de = (_dative_plural(de_pl) if case == "dat" else de_pl) if plural else de_sg
    de.append((noun_de, lid))
    if en and en[0][0] == "a" and en[1][0][0] in "aeiou":
        en[0] = ("an", en[0][1])
    return NounPhrase(en, de, "pl" if plural else "3sg", g)


def _subject(b: _Builder) -> NounPhrase:
    if b.rng.random() < 0.25:
        en, de, person = b.rng.choice(PRONOUNS)
        lid = b.link()
        return NounPhrase([(en, lid)], [(de, lid)], person, "pl" if person == "pl" else "m")
    return _noun_phrase(b, "nom")


def _person_index(person: str) -> int:
    return {"1sg": 0, "3sg": 1, "pl": 2}[person]


@dataclass
class Clause:
    """One clause, with the German verbal parts kept apart so that the caller can
    put them in main-clause (verb second) or subordinate (verb final) order."""

    en: list[Token]
    subj_de: list[Token]
    finite_de: Token
    middle_de: list[Token]   # objects, adverbs, negation, prepositional phrases
    final_de: list[Token]    # particle / infinitive / participle (main-clause order)
    joined_final_de: list[Token]  # the same when the finite verb joins them at the end
    fronted: list[Token]     # a fronted adverb (German) or []
    tail_en: list[Token]     # English relative clause after the object
    tail_de: list[Token]     # German relative clause, extraposed after the verbs

    def main(self) -> list[Token]:
        if self.fronted:
            return self.fronted + [self.finite_de] + self.subj_de + self.middle_de + self.final_de + self.tail_de
        return self.subj_de + [self.finite_de] + self.middle_de + self.final_de + self.tail_de

    def subordinate(self) -> list[Token]:
        return self.subj_de + self.middle_de + self.joined_final_de + self.tail_de


def _clause(b: _Builder, depth: int, allow_front: bool) -> Clause:
    """A clause with a subject, a verb (simple, negated, modal or perfect), maybe an
    object, an adverb, a place and a relative clause."""
    rng = b.rng
    subj = _subject(b)
    pi = _person_index(subj.person)
    verb = rng.choice(VERBS)
    form = rng.choices(["simple", "negated", "modal", "perfect"], [5, 2, 2, 2])[0]

    en: list[Token] = []
    fronted_en: list[Token] = []
    fronted_de: list[Token] = []
    adverb = rng.random() < 0.3
    if adverb:
        adv_en, adv_de = rng.choice(TIME_ADVERBS)
        adv_id = b.link()
    front = adverb and allow_front and rng.random() < 0.5 and adv_en != "often"
    if front:
        fronted_en = [(adv_en, adv_id)]
        fronted_de = [(adv_de, adv_id)]

    verb_id = b.link()
    particle = [(verb.particle, verb_id)] if verb.particle else []
    en_verb_words = verb.en[0].split() if (subj.person == "3sg") else verb.en[1].split()
    middle: list[Token] = []
    if form == "simple":
        en_verb = [(w, verb_id) for w in en_verb_words]
        finite = (verb.de[pi], verb_id)
        final = particle
        joined = [((verb.particle or "") + verb.de[pi], verb_id)]
        neg_en: list[Token] = []
    elif form == "negated":
        neg_id = b.link()
        does = "does" if subj.person == "3sg" else "do"
        en_verb = [(does, verb_id), ("not", neg_id)] + [(w, verb_id) for w in verb.en[1].split()]
        finite = (verb.de[pi], verb_id)
        final = particle
        joined = [((verb.particle or "") + verb.de[pi], verb_id)]
        neg_en = [("nicht", neg_id)]
    elif form == "modal":
        modal_en, modal_de = rng.choice(MODALS)
        modal_id = b.link()
        en_verb = [(modal_en[0], modal_id)] + [(w, None) for w in modal_en[1:]]
        en_verb += [(w, verb_id) for w in verb.en[1].split()]
        finite = (modal_de[pi], modal_id)
        infinitive = ((verb.particle or "") + verb.de[2], verb_id)
        final = [infinitive]
        joined = [infinitive, finite]
        neg_en = []
    else:  # perfect
        aux_id = b.link()
        has = "has" if subj.person == "3sg" else "have"
        en_verb = [(has, aux_id)] + [(w, verb_id) for w in verb.en[2].split()]
        finite = (AUX[verb.aux][pi], aux_id)
        participle = ((verb.particle or "") + verb.de[3], verb_id)
        final = [participle]
        joined = [participle, finite]
        neg_en = []

    obj: NounPhrase | None = None
    if verb.case:
        obj = _noun_phrase(b, verb.case, animate=True if verb.animate_object else None)
    # English: subject verb object [adverb] [place]; German middle field:
    # object [adverb] [nicht] [place].
    en = fronted_en + subj.en + en_verb
    if obj:
        en += obj.en
        middle += obj.de
    # English phrasal verbs with an object ("gets up" has none) keep particle order.
    relative_en: list[Token] = []
    relative_de: list[Token] = []
    place = depth < 2 and rng.random() < 0.3
    if obj and obj.gender and not place and not adverb and depth < 2 and rng.random() < 0.25:
        relative_en, relative_de = _relative_clause(b, obj, depth + 1)
    if adverb and not front:
        en.append((adv_en, adv_id))
        middle.append((adv_de, adv_id))
    middle += neg_en
    if place:
        p_en, p_de, p_gender = rng.choice(PLACES)
        in_id = b.link()
        noun_id = b.link()
        en += [("in", in_id), ("the", in_id), (p_en, noun_id)]
        if p_gender == "f":
            middle += [("in", in_id), ("der", in_id), (p_de, noun_id)]
        else:
            middle += [("im", in_id), (p_de, noun_id)]
    comma_de: list[Token] = [(",", None)] if relative_de else []
    return Clause(
        en=en + relative_en,
        subj_de=subj.de,
        finite_de=finite,
        middle_de=middle,
        final_de=final,
        joined_final_de=joined,
        fronted=fronted_de,
        tail_en=relative_en,
        tail_de=comma_de + relative_de,
    )


def _relative_clause(b: _Builder, head: NounPhrase, depth: int) -> tuple[list[Token], list[Token]]:
    """'who/which sees the dog' -> 'der den Hund sieht' (verb final, pronoun agrees)."""
    rng = b.rng
    verb = rng.choice([v for v in VERBS if v.case != "dat"])
    pi = 1 if head.person == "3sg" else 2
    rel_id = b.link()
    verb_id = b.link()
    animate = head.en[-1][0] in ANIMATE_FORMS
    en: list[Token] = [("who" if animate else "which", rel_id)]
    en += [(w, verb_id) for w in verb.en[0 if pi == 1 else 1].split()]
    de: list[Token] = [(RELATIVE[head.gender], rel_id)]
    if verb.case:
        obj = _noun_phrase(b, verb.case, animate=True if verb.animate_object else None)
        en += obj.en
        de += obj.de
    de.append(((verb.particle or "") + verb.de[pi], verb_id))
    return en, de


def _sentence(b: _Builder, target_len: int) -> tuple[list[Token], list[Token]]:
    """Clauses joined by coordination or subordination until the English side is at
    least ``target_len`` words long."""
    rng = b.rng
    first = _clause(b, 0, allow_front=True)
    en = list(first.en)
    de = first.main()
    while len(en) + 1 < target_len:
        kind = rng.choices(["coord", "subord", "that"], [2, 2, 2])[0]
        if kind == "coord":
            c_en, c_de = rng.choice(COORDINATORS)
            lid = b.link()
            clause = _clause(b, 1, allow_front=False)
            en += [(c_en, lid)] + clause.en
            de += [(",", None)] * (c_de == "aber") + [(c_de, lid)] + clause.main()
        elif kind == "subord":
            s_en, s_de = rng.choice(SUBORDINATORS)
            lid = b.link()
            clause = _clause(b, 1, allow_front=False)
            en += [(s_en, lid)] + clause.en
            de += [(",", None), (s_de, lid)] + clause.subordinate()
        else:  # "and he knows that ..." -> ", und er weiß , dass ..."
            c_en, c_de = COORDINATORS[0]
            c_id = b.link()
            subj = _subject(b)
            pi = _person_index(subj.person)
            say_en, say_de = rng.choice(SAY_VERBS)
            say_id = b.link()
            that_id = b.link()
            clause = _clause(b, 1, allow_front=False)
            en += [(c_en, c_id)] + subj.en + [(say_en[0] if subj.person == "3sg" else say_en[1], say_id),
                                             ("that", that_id)] + clause.en
            de += [(c_de, c_id)] + subj.de + [(say_de[pi], say_id), (",", None), ("dass", that_id)]
            de += clause.subordinate()
    end = b.link()
    en.append((".", end))
    de.append((".", end))
    en[0] = (en[0][0][0].upper() + en[0][0][1:], en[0][1])
    de[0] = (de[0][0][0].upper() + de[0][0][1:], de[0][1])
    # "i" is an English pronoun written "I" everywhere.
    en = [("I" if w == "i" else w, lid) for w, lid in en]
    return en, de


Word = tuple[str, frozenset[int]]  # a whitespace token and the link ids it carries


def attach_punctuation(tokens: list[Token]) -> list[Word]:
    """Writes "," and "." onto the word before them, as raw text has them; the merged
    word carries the links of both, so alignments stay exact on whitespace tokens."""
    words: list[Word] = []
    for text, lid in tokens:
        ids = frozenset() if lid is None else frozenset([lid])
        if text in {",", "."} and words:
            prev_text, prev_ids = words[-1]
            words[-1] = (prev_text + text, prev_ids | ids)
        else:
            words.append((text, ids))
    return words


def alignment_of(src: list[Word], tgt: list[Word]) -> list[tuple[int, int]]:
    """Pharaoh links (source index, target index) of words sharing a link id."""
    return [(i, j) for i, (_, a) in enumerate(src) for j, (_, b) in enumerate(tgt) if a & b]


@dataclass
class DemoPair:
    src: str
    tgt: str
    alignment: str  # Pharaoh "i-j" links, 0-based, source-target


def generate_pairs(n: int, seed: int = 1234, min_len: int = 3, max_len: int = 40) -> list[DemoPair]:
    """``n`` distinct pairs whose English side has ``min_len``..``max_len`` words, with
    lengths spread roughly evenly over that range."""
    b = _Builder(random.Random(seed))
    seen: set[str] = set()
    pairs: list[DemoPair] = []
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct demo pairs; lower the size")
        target = b.rng.randint(min_len, max_len)
        en_tokens, de_tokens = _sentence(b, target)
        en, de = attach_punctuation(en_tokens), attach_punctuation(de_tokens)
        if not (min_len <= len(en) <= max_len):
            continue
        src = " ".join(w for w, _ in en)
        if src in seen:
            continue
        seen.add(src)
        links = " ".join(f"{i}-{j}" for i, j in alignment_of(en, de))
        pairs.append(DemoPair(src, " ".join(w for w, _ in de), links))
    return pairs


SPLITS = ("train", "valid", "test")


def write_demo_corpus(
    out_dir: str | Path,
    sizes: tuple[int, int, int] = (20000, 500, 500),
    seed: int = 1234,
    src_lang: str = "en",
    tgt_lang: str = "de",
) -> Path:
    """Writes ``{split}.{en,de,align}`` for train/valid/test. Splits are cut from one
    stream of distinct sources, so no test sentence occurs in train. Each file is written
    under a temporary name beside it, fsynced and renamed over the old one
    (mt.files.atomic_write_text), so an interrupted run leaves no half file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = generate_pairs(sum(sizes), seed=seed)
    start = 0
    for split, size in zip(SPLITS, sizes):
        chunk = pairs[start:start + size]
        start += size
        for suffix, lines in ((src_lang, [p.src for p in chunk]), (tgt_lang, [p.tgt for p in chunk]),
                              ("align", [p.alignment for p in chunk])):
            atomic_write_text(out / f"{split}.{suffix}", "".join(line + "\n" for line in lines))
    return out


def ensure_demo_corpus(out_dir: str | Path, sizes: tuple[int, int, int], seed: int) -> Path:
    """Generates the corpus unless a complete one with the same settings is there."""
    out = Path(out_dir)
    stamp = out / "SETTINGS"
    settings = f"sizes={sizes} seed={seed} version=3\n"
    if stamp.exists() and stamp.read_text() == settings and all(
        (out / f"{s}.{x}").exists() for s in SPLITS for x in ("en", "de", "align")
    ):
        return out
    write_demo_corpus(out, sizes, seed)
    atomic_write_text(stamp, settings)  # last: a corpus cut short has no stamp, and is written again
    return out
