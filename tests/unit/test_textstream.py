"""Segmenting streamed text (``voice_inference.textstream``), the way ``/v1/tts/live`` sees it:
pieces of a word or less at a time.

What can break: a sentence held back after it is complete (late first audio), a cut inside a
number or abbreviation because the piece ended at its dot, a segment over the length limit, a
short sentence spoken alone although ``min_chars`` asks to merge (or a first sentence held
back by it), words lost, reordered or
glued together across pieces, text left behind at flush.
"""

from __future__ import annotations

import random

import pytest

from voice_inference import textstream

TEXT = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "Version 3.5 ships today, e.g. on Monday. How vexingly quick daft zebras jump? "
    "Sphinx of black quartz, judge my vow."
)


def feed_pieces(segmenter: textstream.Segmenter, text: str, sizes: list[int]) -> list[str]:
    out: list[str] = []
    position = 0
    for size in sizes:
        out.extend(segmenter.feed(text[position : position + size]))
        position += size
    out.extend(segmenter.feed(text[position:]))
    return out + segmenter.flush()


def test_a_sentence_is_cut_as_soon_as_the_next_piece_shows_its_end() -> None:
    segmenter = textstream.Segmenter(max_chars=200)
    assert segmenter.feed("Hello the") == []
    assert segmenter.feed("re.") == []  # could still be "there.5" or "there.com"
    assert segmenter.feed(" How") == ["Hello there."]
    assert segmenter.pending == " How"
    assert segmenter.feed(" are you?") == []
    assert segmenter.flush() == ["How are you?"]
    assert segmenter.flush() == []


def test_dots_inside_numbers_do_not_cut() -> None:
    segmenter = textstream.Segmenter(max_chars=200)
    assert segmenter.feed("Version 3") == []
    assert segmenter.feed(".") == []
    assert segmenter.feed("5 is out. Next") == ["Version 3.5 is out."]


def test_cjk_sentence_ends_cut_at_once() -> None:
    segmenter = textstream.Segmenter(max_chars=200)
    assert segmenter.feed("你好。今天") == ["你好。"]
    assert segmenter.flush() == ["今天"]


def test_min_chars_merges_short_sentences_after_the_first() -> None:
    segmenter = textstream.Segmenter(max_chars=200, min_chars=20)
    assert segmenter.feed("Hi. ") == ["Hi."]  # the first sentence goes at once: first audio
    assert segmenter.feed("Yes. No. ") == []
    assert segmenter.feed("That is a longer one. And") == ["Yes. No. That is a longer one."]


def test_the_first_segment_may_also_come_from_a_flush() -> None:
    segmenter = textstream.Segmenter(max_chars=200, min_chars=20)
    segmenter.feed("Hmm")
    assert segmenter.flush() == ["Hmm"]
    assert segmenter.feed("Ok. Fine. ") == []


def test_length_limit_cuts_on_whitespace_and_hard_without() -> None:
    segmenter = textstream.Segmenter(max_chars=20)
    segments = segmenter.feed("one two three four five six seven eight ")
    assert segments == ["one two three four", "five six seven eight"]
    assert textstream.Segmenter(max_chars=5).feed("abcdefghijkl") == ["abcde", "fghij"]


@pytest.mark.parametrize("seed", range(20))
def test_any_split_of_the_text_keeps_every_word_in_order(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(1, 6) for _ in range(len(TEXT) // 3)]
    max_chars = rng.choice([40, 100, 200])
    segments = feed_pieces(textstream.Segmenter(max_chars=max_chars, min_chars=rng.choice([0, 10, 30])), TEXT, sizes)
    assert " ".join(segments).split() == TEXT.split()
    assert all(0 < len(segment) <= max_chars for segment in segments)
    assert all(segment == segment.strip() for segment in segments)


def test_pieces_one_character_at_a_time_cut_where_the_whole_text_would() -> None:
    whole = feed_pieces(textstream.Segmenter(max_chars=200), TEXT, [])
    by_char = feed_pieces(textstream.Segmenter(max_chars=200), TEXT, [1] * len(TEXT))
    assert by_char == whole
    assert whole[:3] == [
        "The quick brown fox jumps over the lazy dog.",
        "Pack my box with five dozen liquor jugs!",
        "Version 3.5 ships today, e.g.",  # an abbreviation followed by a space reads as an end
    ]


def test_whitespace_only_flush_is_empty() -> None:
    segmenter = textstream.Segmenter(max_chars=50)
    assert segmenter.feed("   \n ") == []
    assert segmenter.flush() == []


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError):
        textstream.Segmenter(max_chars=0)
