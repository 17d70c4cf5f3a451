import pytest

from operators.config import DEFAULT_MODEL, AnnotateConfig
from operators.errors import ConfigError


def test_defaults():
    config = AnnotateConfig.build(input="in", output="out")
    assert config.model == DEFAULT_MODEL
    assert (config.text_column, config.id_column, config.pooling) == ("text", "id", "mean")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"pooling": "max"}, "pooling"),
        ({"gpus_per_actor": 1.5}, "gpus_per_actor"),
        ({"text_column": "id"}, "text_column and id_column"),
        ({"segment_chars": 10}, "segment_chars"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        AnnotateConfig.build(input="in", output="out", **options)
