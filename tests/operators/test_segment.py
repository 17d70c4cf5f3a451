from operators.segment import segment_bounds


def starts_after_periods(text: str) -> list[int]:
    return [i + 2 for i, ch in enumerate(text[:-2]) if ch == "." and text[i + 1] == " "]


def test_short_text_is_one_segment():
    assert segment_bounds("One. Two.", 100, starts_after_periods) == [(0, 9)]


def test_segments_tile_the_text_and_cut_at_sentence_starts():
    text = "Sentence number %d is here. " * 200 % tuple(range(200))
    bounds = segment_bounds(text, 500, starts_after_periods)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(bounds, bounds[1:]))
    assert all(0 < end - start <= 500 for start, end in bounds)
    for _, end in bounds[:-1]:
        assert text[end:].startswith("Sentence number"), text[end - 10 : end + 10]


def test_no_sentence_boundary_falls_back_to_whitespace_then_hard_cut():
    words = "word " * 300
    bounds = segment_bounds(words, 100, lambda s: [])
    assert all(words[end - 1] == " " for _, end in bounds[:-1])
    blob = "x" * 1050
    assert segment_bounds(blob, 100, lambda s: []) == [(i, min(i + 100, 1050)) for i in range(0, 1050, 100)]
