"""mt.decoding.sentences: a text cut into lines and sentences as the server translates it."""

from __future__ import annotations

from mt.decoding.sentences import join_text, split_sentences, split_text


def test_sentences_end_at_final_punctuation_before_a_capital_not_after_abbreviations_or_initials():
    assert split_sentences("The dog sleeps. A man calls!  Does he? yes.") == ["The dog sleeps.", "A man calls!",
                                                                            "Does he? yes."]
    assert split_sentences("Dr. Smith met J. R. Tolkien, e.g. at 5 p.m. Then he left.") == [
        "Dr. Smith met J. R. Tolkien, e.g. at 5 p.m. Then he left."]  # "p.m." holds a dot: no cut
    assert split_sentences('He said "Go." Then 3 dogs ran.') == ['He said "Go."', "Then 3 dogs ran."]
    assert split_sentences("   ") == []


def test_lines_and_their_breaks_come_back_around_the_translations():
    text = "One. Two.\n\nThree\r\n"
    lines = split_text(text)
    assert lines == [["One.", "Two."], [], ["Three"]]
    upper = [[s.upper() for s in line] for line in lines]
    assert join_text(upper, text) == "ONE. TWO.\n\nTHREE\r\n"  # each line ended as in the source
    assert join_text(split_text("a\n\n"), "a\n\n") == "a\n\n"  # a trailing blank line kept
    assert join_text([["A"]], "a") == "A" and split_text("") == [[]]
