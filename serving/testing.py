"""A tiny exported model for serving tests (client, scoring, export)."""

import keras

from pipeline import testing

TASKS = {"recommended_ind": 2, "department_name": 3}


def tiny_model(tft_output):
    """A small MMoE text model on the tiny Transform's token ids."""
    from keras_mmoe import MultiTaskModel, Task

    keras.utils.set_random_seed(3)
    vocabulary_size = (
        tft_output.vocabulary_size_by_name("tokens_vocab")
        + 1
        + testing.NUM_OOV_BUCKETS
    )
    return MultiTaskModel(
        tasks=[Task(t, n) for t, n in TASKS.items()],
        body="mmoe",
        body_config={"num_experts": 2, "expert_units": 8},
        text_encoder={
            "vocabulary_size": vocabulary_size,
            "embedding_dim": 8,
            # Random embeddings far from 0 so outputs differ between texts.
            "embeddings_initializer": keras.initializers.RandomNormal(
                stddev=1.0, seed=3
            ),
        },
        sequence_length=testing.MAX_LENGTH,
    )


def export_tiny_model(export_dir: str, warmup_texts=None):
    """Exports `tiny_model` (untrained) to `export_dir`.

    Returns (tiny transform, tft output, keras model, export_dir).
    """
    import tensorflow_transform as tft

    from serving import export

    tiny = testing.tiny_transform()
    tft_output = tft.TFTransformOutput(tiny.transform_graph)
    model = tiny_model(tft_output)
    export.export_serving_model(
        model,
        tft_output,
        export_dir,
        text_columns=testing.TEXT_COLUMNS,
        label_columns=testing.LABEL_COLUMNS,
        warmup_texts=warmup_texts,
    )
    return tiny, tft_output, model, export_dir
