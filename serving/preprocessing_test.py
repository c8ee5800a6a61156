import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.beam import tft_unit
from tensorflow_transform.tf_metadata import schema_utils

from serving import features, preprocessing


def _metadata(feature_spec):
    return tft.DatasetMetadata.from_feature_spec(feature_spec)


def _preprocessing_fn(config):
    def fn(inputs):
        return preprocessing.preprocessing_fn(inputs, config.to_dict())

    return fn


class PreprocessingFnTest(tft_unit.TransformTestCase):
    def test_token_ids_and_labels(self):
        config = features.PreprocessingConfig(
            text_columns=["Title", "Review Text"],
            label_columns=["Rating", "Department Name"],
            max_length=5,
            vocabulary_size=3,
            num_oov_buckets=1,
        )
        # Sparse (Title, Rating: cells may be empty) and dense (Review Text,
        # Department Name) columns, as CsvExampleGen + SchemaGen make them.
        input_metadata = _metadata(
            {
                "Title": tf.io.VarLenFeature(tf.string),
                "Review Text": tf.io.FixedLenFeature([1], tf.string),
                "Rating": tf.io.VarLenFeature(tf.int64),
                "Department Name": tf.io.FixedLenFeature([1], tf.string),
            }
        )
        input_data = [
            {
                "Title": ["Great"],
                "Review Text": ["Love it, LOVE it!"],
                "Rating": [5],
                "Department Name": ["Tops"],
            },
            {
                "Title": [],
                "Review Text": ["love it"],
                "Rating": [],
                "Department Name": ["Dresses"],
            },
            {
                "Title": [],
                "Review Text": [""],
                "Rating": [2],
                "Department Name": [""],
            },
            {
                # Latin-1 "café": \xe9 is not UTF-8.
                "Title": [b"caf\xe9"],
                "Review Text": ["it"],
                "Rating": [10],
                "Department Name": ["Jackets"],
            },
        ]
        # Tokens within max_length=5: row 1 keeps "great love it , love" and
        # drops "it !". Counts: love 3, it 3, great 1, "," 1, caf 1. Ties go
        # to the larger token bytes: love, it, great. Ids shift by 1 for
        # padding: love 1, it 2, great 3, the one OOV bucket 4.
        # Rating classes in numeric order: 2, 5, 10 (not "10" < "2").
        # Terms read the whole text: the unigrams seen at least twice are
        # it 4 and love 3 (ids 1, 2), the bigram "love it" 3 (id 3, keyed
        # by its unigram ids 1 and 0 as 1 * 2**32 + 0); each row lists its
        # terms in order of first occurrence, a bigram right after its first
        # word, with their counts.
        expected_data = [
            {
                "token_ids": [3, 1, 2, 4, 1],
                "term_ids": [2, 3, 1],
                "term_counts": [2, 2, 2],
                "rating_label": 1,
                "department_name_label": 2,
            },
            {
                "token_ids": [1, 2, 0, 0, 0],
                "term_ids": [2, 3, 1],
                "term_counts": [1, 1, 1],
                "rating_label": -1,
                "department_name_label": 0,
            },
            {
                "token_ids": [0, 0, 0, 0, 0],
                "term_ids": [],
                "term_counts": [],
                "rating_label": 0,
                "department_name_label": -1,
            },
            {
                "token_ids": [4, 2, 0, 0, 0],
                "term_ids": [1],
                "term_counts": [1],
                "rating_label": 2,
                "department_name_label": 1,
            },
        ]
        # apply_vocabulary records the id range: -1 .. num_classes - 1.
        categorical = schema_pb2.IntDomain(min=-1, max=2, is_categorical=True)
        expected_metadata = tft.DatasetMetadata(
            schema_utils.schema_from_feature_spec(
                {
                    "token_ids": tf.io.FixedLenFeature([5], tf.int64),
                    "term_ids": tf.io.VarLenFeature(tf.int64),
                    "term_counts": tf.io.VarLenFeature(tf.int64),
                    "rating_label": tf.io.FixedLenFeature([], tf.int64),
                    "department_name_label": tf.io.FixedLenFeature(
                        [], tf.int64
                    ),
                },
                domains={
                    "rating_label": categorical,
                    "department_name_label": categorical,
                },
            )
        )
        self.assertAnalyzeAndTransformResults(
            input_data,
            input_metadata,
            _preprocessing_fn(config),
            expected_data=expected_data,
            expected_metadata=expected_metadata,
            expected_vocab_file_contents={
                "tokens_vocab": [b"love", b"it", b"great"],
                "terms_vocab": [b"it", b"love"],
                "bigrams_vocab": [str(2**32).encode()],
                "rating_label_vocab": [b"2", b"5", b"10"],
                "department_name_label_vocab": [
                    b"Dresses",
                    b"Jackets",
                    b"Tops",
                ],
            },
        )

    def test_unseen_tokens_and_labels(self):
        config = features.PreprocessingConfig(
            text_columns=["text"],
            label_columns=["Score", "Recommended IND"],
            max_length=4,
            vocabulary_size=2,
            num_oov_buckets=3,
        )
        input_metadata = _metadata(
            {
                "text": tf.io.VarLenFeature(tf.string),
                "Score": tf.io.VarLenFeature(tf.float32),
                "Recommended IND": tf.io.FixedLenFeature([1], tf.int64),
            }
        )
        input_data = [
            {"text": ["b b a"], "Score": [1.0], "Recommended IND": [1]},
            {"text": ["a c"], "Score": [4.5], "Recommended IND": [0]},
            {"text": ["b"], "Score": [], "Recommended IND": [1]},
        ]
        # Analyzed on input_data, applied to test_data: "c" fell out of the
        # top 2 (b, a) and "zz" was never seen, so both land in one of the
        # buckets 3..5; the Score 3 was never seen, so it is -1 like a
        # missing one.
        test_data = [
            {"text": ["A B zz"], "Score": [3.0], "Recommended IND": [1]},
            {"text": ["c"], "Score": [4.5], "Recommended IND": [0]},
        ]

        def oov_id(token):
            bucket = tf.strings.to_hash_bucket_fast(token, 3).numpy()
            return 2 + int(bucket) + 1

        self.assertBetween(oov_id("zz"), 3, 5)
        self.assertBetween(oov_id("c"), 3, 5)
        # Terms seen twice: b 3, a 2; "zz", "c" and the bigrams are dropped.
        expected_data = [
            {
                "token_ids": [2, 1, oov_id("zz"), 0],
                "term_ids": [2, 1],
                "term_counts": [1, 1],
                "score_label": -1,
                "recommended_ind_label": 1,
            },
            {
                "token_ids": [oov_id("c"), 0, 0, 0],
                "term_ids": [],
                "term_counts": [],
                "score_label": 1,
                "recommended_ind_label": 0,
            },
        ]
        self.assertAnalyzeAndTransformResults(
            input_data,
            input_metadata,
            _preprocessing_fn(config),
            expected_data=expected_data,
            test_data=test_data,
            expected_vocab_file_contents={
                "tokens_vocab": [b"b", b"a"],
                "terms_vocab": [b"b", b"a"],
                # No pair occurs twice: an empty vocabulary holds a
                # placeholder, which no text's terms may match.
                "bigrams_vocab": [b"-1"],
                # Floats print in shortest form: 1.0 is class "1".
                "score_label_vocab": [b"1", b"4.5"],
                "recommended_ind_label_vocab": [b"0", b"1"],
            },
        )

    def test_bigrams_stay_inside_a_text(self):
        config = features.PreprocessingConfig(
            text_columns=["text"], label_columns=["label"]
        )
        input_metadata = _metadata(
            {
                "text": tf.io.FixedLenFeature([1], tf.string),
                "label": tf.io.FixedLenFeature([1], tf.string),
            }
        )
        texts = ["a b", "a b", "b", "a", "a a b"]
        input_data = [{"text": [t], "label": ["x"]} for t in texts]
        # Unigrams: a 5 (id 1), b 4 (id 2). Within texts, "a b" occurs 3
        # times (id 3) and "a a" once (under the minimum count of 2). Across
        # neighbouring texts "b a" would occur twice and "b b" once: a pair
        # that spanned two texts would enter the vocabulary.
        expected_data = [
            {"term_ids": [1, 3, 2], "term_counts": [1, 1, 1]},
            {"term_ids": [1, 3, 2], "term_counts": [1, 1, 1]},
            {"term_ids": [2], "term_counts": [1]},
            {"term_ids": [1], "term_counts": [1]},
            {"term_ids": [1, 3, 2], "term_counts": [2, 1, 1]},
        ]

        def terms_only(inputs):
            outputs = _preprocessing_fn(config)(inputs)
            return {k: outputs[k] for k in ("term_ids", "term_counts")}

        self.assertAnalyzeAndTransformResults(
            input_data,
            input_metadata,
            terms_only,
            expected_data=expected_data,
            expected_vocab_file_contents={
                "terms_vocab": [b"a", b"b"],
                "bigrams_vocab": [str(0 * 2**32 + 1).encode()],
            },
        )

    def test_missing_column_is_an_error(self):
        config = features.PreprocessingConfig(["text"], ["label"])
        inputs = {"text": tf.constant([["a"]])}
        with self.assertRaisesRegex(ValueError, "'label'"):
            preprocessing.preprocessing_fn(inputs, config.to_dict())


class NormalizeAndTokenizeTest(tf.test.TestCase):
    def test_normalizes_and_splits_punctuation(self):
        tokens = preprocessing.normalize_and_tokenize(
            tf.constant(["Ｆｕｌｌ-width Straße, DON'T! ﬁne Ⅻ", "", "  "])
        )
        # NFKC: full-width letters, the "fi" ligature and the Roman numeral
        # twelve become plain letters; case folding: "ß" becomes "ss".
        self.assertEqual(
            tokens.to_list(),
            [
                [b"full", b"-", b"width", b"strasse", b",", b"don", b"'"]
                + [b"t", b"!", b"fine", b"xii"],
                [],
                [],
            ],
        )

    def test_cuts_bytes_without_breaking_utf8(self):
        # "é" is 2 bytes; a cut after its first byte leaves no garbage.
        text = tf.constant(["abc déf"])
        cut_before = preprocessing.normalize_and_tokenize(text, 5)
        cut_inside = preprocessing.normalize_and_tokenize(text, 6)
        cut_after = preprocessing.normalize_and_tokenize(text, 7)
        self.assertEqual(cut_before.to_list(), [[b"abc", b"d"]])
        self.assertEqual(cut_inside.to_list(), [[b"abc", b"d"]])
        self.assertEqual(cut_after.to_list(), [[b"abc", "dé".encode()]])

    def test_invalid_utf8_separates_tokens(self):
        tokens = preprocessing.normalize_and_tokenize(
            tf.constant([b"caf\xe9au\xff\xfe lait"])
        )
        self.assertEqual(tokens.to_list(), [[b"caf", b"au", b"lait"]])

    def test_ill_formed_utf8_in_a_batch_of_valid_rows(self):
        # Overlong "/", a surrogate, a code point past U+10FFFF: each byte
        # becomes a space; the valid rows around them are untouched.
        tokens = preprocessing.normalize_and_tokenize(
            tf.constant(
                [
                    "Déjà vu".encode(),
                    b"a\xc0\xafb",
                    b"c\xed\xa0\x80d",
                    "x😀y".encode(),
                    b"e\xf4\x90\x80\x80f",
                ]
            )
        )
        self.assertEqual(
            tokens.to_list(),
            [
                ["déjà".encode(), b"vu"],
                [b"a", b"b"],
                [b"c", b"d"],
                [b"x", "😀".encode(), b"y"],
                [b"e", b"f"],
            ],
        )

    def test_control_characters(self):
        # Vertical tab separates like any ASCII space; text after a NUL is
        # still read (a NUL is a symbol token, like other controls).
        tokens = preprocessing.normalize_and_tokenize(
            tf.constant([b"one\vtwo", b"three\x00four\x0efive"])
        )
        self.assertEqual(
            tokens.to_list(),
            [
                [b"one", b"two"],
                [b"three", b"\x00", b"four", b"\x0e", b"five"],
            ],
        )


class FeaturesTest(tf.test.TestCase):
    def test_task_name(self):
        self.assertEqual(
            features.task_name("Recommended IND"), "recommended_ind"
        )
        self.assertEqual(
            features.task_name("Department Name"), "department_name"
        )
        self.assertEqual(features.task_name("  Rating (1-5)!"), "rating_1_5")
        with self.assertRaisesRegex(ValueError, "column='--'"):
            features.task_name("--")

    def test_keys(self):
        self.assertEqual(features.label_key("rating"), "rating_label")
        self.assertEqual(
            features.label_vocabulary_name("rating"), "rating_label_vocab"
        )

    def test_config_json_round_trip(self):
        config = features.PreprocessingConfig(
            text_columns=["Title", "Review Text"],
            label_columns=["Rating", "Recommended IND"],
            max_length=64,
            vocabulary_size=500,
            num_oov_buckets=2,
        )
        restored = features.PreprocessingConfig.from_json(config.to_json())
        self.assertEqual(restored, config)
        self.assertEqual(
            features.PreprocessingConfig.from_dict(config.to_dict()), config
        )
        self.assertEqual(restored.tasks, ["rating", "recommended_ind"])

    def test_config_validation(self):
        with self.assertRaisesRegex(ValueError, "max_length=0"):
            features.PreprocessingConfig(["t"], ["l"], max_length=0)
        with self.assertRaisesRegex(ValueError, "text_columns=\\[\\]"):
            features.PreprocessingConfig([], ["l"])
        with self.assertRaisesRegex(ValueError, "text_columns='t'"):
            features.PreprocessingConfig("t", ["l"])
        with self.assertRaisesRegex(ValueError, "distinct task names"):
            features.PreprocessingConfig(["t"], ["A b", "a-b"])


if __name__ == "__main__":
    tf.test.main()
