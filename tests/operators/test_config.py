import pytest

from operators.config import DEFAULT_MODEL, AnnotatorConfig, RunConfig
from operators.errors import ConfigError


def test_defaults_and_the_two_parts():
    config = RunConfig.build(input="in", output="out")
    assert config.model == DEFAULT_MODEL
    annotator = config.annotator
    assert (annotator.text_column, annotator.id_column, annotator.pooling) == ("text", "id", "mean")
    flat = RunConfig.build(input="in", output="out", model="m", batch_size=8, actors=3)
    assert flat.annotator == AnnotatorConfig(model="m", batch_size=8) and flat.actors == 3


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"pooling": "max"}, "pooling"),
        ({"gpus_per_actor": 1.5}, "gpus_per_actor"),
        ({"text_column": "id"}, "text_column and id_column"),
        ({"segment_chars": 10}, "segment_chars"),
        ({"unit_mb": 0}, "unit_mb"),
        ({"resume": True, "overwrite": True}, "resume and overwrite"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        RunConfig.build(input="in", output="out", **options)


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({}, 50_000),  # the same on every device
        ({"batch_chars": 20_000}, 20_000),
        ({"batch_chars": 200_000}, 50_000),
        ({"segment_chars": 30_000}, 30_000),
    ],
)
def test_no_segment_is_longer_than_a_batch_and_where_texts_are_cut_is_in_the_fingerprint(options, limit):
    config = RunConfig.build(input="in", output="out", **options)
    assert config.annotator.segment_limit == limit
    assert config.fingerprint("m-1", "abc", "2")["segment_chars"] == limit
    assert '"segment_chars": %d' % limit in config.unit_fingerprint(config.fingerprint("m-1", "abc", "2"))


def test_the_fingerprint_holds_the_models_content_and_every_setting_that_changes_rows():
    fingerprint = RunConfig.build(input="in", output="out", precision="bf16").fingerprint("m-1", "digest", "2")
    assert fingerprint == {"schema_version": "2", "model": "m-1", "model_digest": "digest", "text_column": "text",
                           "max_wordpieces": 256, "segment_chars": 50_000, "pooling": "mean", "precision": "bf16",
                           "exclude": ""}


@pytest.mark.parametrize("given", ["parser,lemmatizer", " parser , lemmatizer,parser,", ["parser", "lemmatizer"]])
def test_exclude_takes_a_comma_separated_list_and_is_part_of_the_fingerprint(given):
    config = RunConfig.build(input="in", output="out", exclude=given)
    assert config.annotator.exclude == "parser,lemmatizer" and config.annotator.excluded == ("parser", "lemmatizer")
    assert config.fingerprint("m-1", "abc", "2")["exclude"] == "lemmatizer,parser"  # the order does not matter
    assert RunConfig.build(input="in", output="out").annotator.excluded == ()
