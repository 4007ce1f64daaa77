"""Text preparation (``voice_inference.textsplit``): whitespace normalization and splitting
long text into segments that engines synthesize (and stream) one at a time.

What can break: a segment longer than the limit, an empty or whitespace-only segment, a word
cut in half although it fits, sentence ends ignored, CJK punctuation not treated as a sentence
end, words lost or reordered.
"""

from __future__ import annotations

import pytest

from voice_inference import textsplit

LOREM = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "How vexingly quick daft zebras jump? Sphinx of black quartz, judge my vow; "
    "the five boxing wizards jump quickly: a wizard's job is to vex chumps quickly in fog."
)


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello   world \n", "hello world"),
        ("a\tb\r\nc", "a b c"),
        ("\u3000全角\u3000空白\u3000", "全角 空白"),
        ("", ""),
        (" \n\t ", ""),
    ],
)
def test_normalize_text_collapses_whitespace(raw: str, expected: str) -> None:
    assert textsplit.normalize_text(raw) == expected


@pytest.mark.parametrize("max_chars", [10, 20, 37, 80, 200, 1000])
def test_segments_are_within_bounds_nonempty_and_keep_every_word(max_chars: int) -> None:
    segments = textsplit.split_text(LOREM, max_chars)
    assert segments
    for segment in segments:
        assert 0 < len(segment) <= max_chars
        assert segment == segment.strip(), "segments carry no leading or trailing whitespace"
    assert words(" ".join(segments)) == words(LOREM)


def test_short_text_is_one_segment() -> None:
    assert textsplit.split_text("Hello there. General Kenobi!", 200) == ["Hello there. General Kenobi!"]


def test_sentence_ends_are_preferred_to_filling_the_segment() -> None:
    text = "One two three. Four five six seven eight."
    # A greedy word-filler would give "One two three. Four" (19 chars); sentences come first.
    assert textsplit.split_text(text, 20) == ["One two three.", "Four five six seven", "eight."]
    assert textsplit.split_text("Hi there! Are you ok? Yes.", 12) == ["Hi there!", "Are you ok?", "Yes."]


def test_short_sentences_are_merged_up_to_the_limit() -> None:
    assert textsplit.split_text("A. B. C. D.", 5) == ["A. B.", "C. D."]


def test_words_are_never_cut_when_they_fit() -> None:
    text = "internationalization localization globalization accessibility"
    segments = textsplit.split_text(text, 30)
    for segment in segments:
        assert set(words(segment)) <= set(words(text)), segment
    assert words(" ".join(segments)) == words(text)


def test_words_are_never_cut_at_newlines_and_tabs_in_unnormalized_text() -> None:
    # Engines skip normalize_text when the request says normalize=false.
    text = "alpha\nbeta\ngamma\ndelta\tepsilon zeta"
    segments = textsplit.split_text(text, 12)
    assert all(len(segment) <= 12 for segment in segments)
    assert words(" ".join(segments)) == words(text)


def test_a_word_longer_than_the_limit_is_split_hard_without_losing_characters() -> None:
    long_word = "x" * 25
    segments = textsplit.split_text(f"ab {long_word} cd", 10)
    assert all(0 < len(segment) <= 10 for segment in segments)
    assert "".join(segments).replace(" ", "") == "ab" + long_word + "cd"
    assert segments[0] == "ab", "the short word before is not glued to the hard-split one"


def test_cjk_sentence_punctuation_ends_sentences_without_spaces() -> None:
    # Without the CJK rule these would be hard-split mid-sentence ("你好。世" + "界").
    assert textsplit.split_text("你好。世界", 4) == ["你好。", "世界"]
    assert textsplit.split_text("今天天气很好。我们走吧！", 8) == ["今天天气很好。", "我们走吧！"]
    text = "你好。世界！今天天气很好？是的；我们走吧"
    segments = textsplit.split_text(text, 8)
    assert all(0 < len(segment) <= 8 for segment in segments)
    assert "".join(segments).replace(" ", "") == text
    assert all(segment[-1] in "。！？；" for segment in segments[:-1]), segments


def test_cjk_without_punctuation_is_split_hard_within_bounds() -> None:
    text = "我们今天去公园散步然后回家吃饭" * 3
    segments = textsplit.split_text(text, 10)
    assert all(0 < len(segment) <= 10 for segment in segments)
    assert "".join(segments) == text


@pytest.mark.parametrize("text", ["", "   ", "\n\t", ". . .", "。。。", "!"])
def test_never_empty_segments(text: str) -> None:
    segments = textsplit.split_text(text, 5)
    assert all(segment.strip() for segment in segments)
    if not text.strip():
        assert segments == []


def test_whitespace_after_punctuation_never_yields_a_blank_segment() -> None:
    segments = textsplit.split_text("Hi.   \n\t  There.\u3000\u3000Done。  ok", 6)
    assert all(segment.strip() and len(segment) <= 6 for segment in segments)
    assert words(" ".join(segments)) == ["Hi.", "There.", "Done。", "ok"]


def test_limit_of_one_character() -> None:
    segments = textsplit.split_text("ab c", 1)
    assert segments == ["a", "b", "c"]


@pytest.mark.parametrize("max_chars", [0, -1])
def test_non_positive_limit_is_rejected(max_chars: int) -> None:
    with pytest.raises(ValueError):
        textsplit.split_text("hello", max_chars)
