"""Cut texts longer than a limit into segments at sentence boundaries.

Each segment is annotated as its own Doc and its offsets are shifted back by the segment's start,
so a 10 MB text is processed in bounded memory and comes out as one document.
"""

from __future__ import annotations

from collections.abc import Callable

SentenceStarts = Callable[[str], list[int]]


def segment_bounds(text: str, limit: int, sentence_starts: SentenceStarts) -> list[tuple[int, int]]:
    """[(start, end)] char ranges that tile `text`, each at most `limit` chars long.

    A cut goes at the last sentence start found in the back part of the window (only that part is
    tokenized, so cutting costs O(limit) per segment, not O(len(text))); failing that at the last
    whitespace; failing that (one enormous token) at the limit itself.
    """
    if len(text) <= limit:
        return [(0, len(text))]
    look_back = max(1, min(limit // 2, 20_000))
    bounds = []
    start = 0
    while len(text) - start > limit:
        hard_end = start + limit
        window_start = hard_end - look_back
        window = text[window_start:hard_end]
        cut = _last_sentence_start(window, sentence_starts)
        if cut is None:
            cut = _last_whitespace_end(window)
        end = window_start + cut if cut else hard_end
        bounds.append((start, end))
        start = end
    bounds.append((start, len(text)))
    return bounds


def _last_sentence_start(window: str, sentence_starts: SentenceStarts) -> int | None:
    # the window's first sentence start is where the window happens to begin: not a boundary
    starts = [s for s in sentence_starts(window) if s > 0]
    return starts[-1] if starts else None


def _last_whitespace_end(window: str) -> int | None:
    for i in range(len(window), 0, -1):
        if window[i - 1].isspace():
            return i
    return None
