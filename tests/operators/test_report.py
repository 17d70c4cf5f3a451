import html.parser

import numpy as np

from operators.report import write_report
from tests.fixture_output import write_fixture_output

REPORT = {
    "run_id": "20260101T000000Z-abc123", "status": "ok", "model": "en_test", "input": "in", "output": "out",
    "documents": 3, "errors": 1, "tokens": 20, "words": 16, "sentences": 4, "entities": 9, "seconds": 4.0,
    "words_per_second": 4.0, "actors": 2, "gpus_per_actor": 0.0, "units": {"planned": 1, "processed": 1},
    "bad_files": {"in/broken.parquet": "ArrowInvalid: not parquet"}, "failed_units": [], "first_errors": ["text is null"],
    "duplicate_ids": {"count": 0, "examples": []}, "started": "s", "finished": "f",
    "timeline": [{"t": 1.0, "documents": 1, "words": 5, "errors": 0}, {"t": 4.0, "documents": 3, "words": 16, "errors": 1}],
}


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_renders_a_real_figure_and_page(tmp_path):
    import base64
    import io

    import matplotlib.image

    out = write_fixture_output(tmp_path)
    paths = write_report(REPORT, out)
    image = matplotlib.image.imread(paths["png"])
    assert image.shape[0] >= 300 and image.shape[1] >= 1000
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 20  # not a blank canvas
    page = _Collect()
    page.feed(open(paths["html"]).read())
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    inline = matplotlib.image.imread(io.BytesIO(base64.b64decode(page.images[0].split(",", 1)[1])), format="png")
    assert inline.shape == image.shape
    text = " ".join(page.text)
    assert "unreadable input in/broken.parquet" in text and "document error: text is null" in text
    assert "error 1" in text and "ok 2" in text  # documents in OUTPUT by status


def test_an_output_that_cannot_be_read_shows_as_a_problem_not_as_zeros(tmp_path):
    out = write_fixture_output(tmp_path)
    for data in (tmp_path / "out" / "documents").glob("*.parquet"):
        data.write_bytes(b"not parquet any more")
    paths = write_report(REPORT, out)
    page = _Collect()
    page.feed(open(paths["html"]).read())
    text = " ".join(page.text)
    assert "could not read documents per status from the output" in text
    assert "documents in OUTPUT by status" in text and "ok 0" not in text
