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


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({}, 50_000),  # the CPU batch, on every device
        ({"batch_chars": 20_000}, 20_000),
        ({"batch_chars": 200_000}, 100_000),  # segment_chars
        ({"segment_chars": 30_000}, 30_000),
    ],
)
def test_no_segment_is_longer_than_a_batch_and_where_texts_are_cut_is_in_the_unit_keys(options, limit):
    config = AnnotateConfig.build(input="in", output="out", **options)
    assert config.segment_limit == limit
    assert f'"segment_chars": {limit}' in config.unit_fingerprint("model", "1")


@pytest.mark.parametrize("given", ["parser,lemmatizer", " parser , lemmatizer,parser,", ["parser", "lemmatizer"]])
def test_exclude_takes_a_comma_separated_list_and_is_part_of_the_output_configuration(given):
    config = AnnotateConfig.build(input="in", output="out", exclude=given)
    assert config.exclude == ("parser", "lemmatizer")
    assert config.fingerprint("m", "1")["exclude"] == "lemmatizer,parser"
    assert '"exclude": "lemmatizer,parser"' in config.unit_fingerprint("m", "1")
    plain = AnnotateConfig.build(input="in", output="out")
    assert plain.exclude == () and "exclude" not in plain.fingerprint("m", "1")  # earlier outputs keep their keys
