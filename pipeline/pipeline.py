"""The TFX pipeline definition: `create_pipeline` only builds it."""

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2, transform_pb2

from pipeline import configs
from pipeline import example_gen as streaming
from pipeline.atomic_pusher import AtomicPusher
from serving import features


def eval_config(
    tasks: dict[str, int],
    lower_bounds: dict[str, float] | None = None,
    change_threshold: float | None = configs.CHANGE_THRESHOLD,
) -> tfma.EvalConfig:
    """TFMA metrics per task, with blessing thresholds.

    Binary tasks: AUC (gated) and accuracy; multi-class: accuracy (gated) and
    macro one-vs-rest AUC. `lower_bounds` maps a task to the least value of
    its gated metric; a missing label (weight 0) counts nowhere.
    """
    lower_bounds = lower_bounds or {}
    metrics_specs = []
    for task, num_classes in tasks.items():
        binary = num_classes == 2
        # TFMA names an output by its key in the signature's outputs.
        output = features.probabilities_key(task)
        kind = "binary" if binary else "multiclass"
        bound = lower_bounds.get(task, configs.DEFAULT_LOWER_BOUND[kind])
        threshold = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                lower_bound={"value": bound}
            ),
            change_threshold=None
            if change_threshold is None
            else tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -change_threshold},
            ),
        )
        accuracy = tfma.MetricConfig(
            class_name="SparseCategoricalAccuracy",
            threshold=None if binary else threshold,
        )
        metrics_specs.append(
            tfma.MetricsSpec(
                output_names=[output],
                metrics=[
                    accuracy,
                    tfma.MetricConfig(class_name="ExampleCount"),
                ],
            )
        )
        # AUC of class 1 vs rest (binary), or macro one-vs-rest AUC.
        metrics_specs.append(
            tfma.MetricsSpec(
                output_names=[output],
                metrics=[
                    tfma.MetricConfig(
                        class_name="AUC",
                        threshold=threshold if binary else None,
                    )
                ],
                binarize=tfma.BinarizationOptions(
                    class_ids={
                        "values": [1] if binary else list(range(num_classes))
                    }
                ),
                aggregate=None
                if binary
                else tfma.AggregationOptions(
                    macro_average=True,
                    class_weights={i: 1.0 for i in range(num_classes)},
                ),
            )
        )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=features.SERVING_DEFAULT,
                preprocessing_function_names=[features.TRANSFORM_FEATURES],
                label_keys={
                    features.probabilities_key(t): features.label_key(t)
                    for t in tasks
                },
                example_weight_keys={
                    features.probabilities_key(t): features.weight_key(t)
                    for t in tasks
                },
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=metrics_specs,
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    preprocessing_config: dict,
    tasks: dict[str, int],
    trainer_config: dict,
    serving_model_dir: str,
    split_column: bool = True,
    lower_bounds: dict[str, float] | None = None,
    change_threshold: float | None = configs.CHANGE_THRESHOLD,
    beam_pipeline_args: list[str] | None = None,
    metadata_connection_config=None,
    enable_cache: bool = True,
    input_format: str = "csv",
    code_version: str = "",
    compare_with_blessed: bool = True,
    shuffled_input: bool = False,
) -> tfx.dsl.Pipeline:
    """ExampleGen -> Statistics/Schema/Validator -> Transform -> Trainer ->
    Evaluator (against the last blessed model) -> Pusher.

    Args:
        data_root: with `split_column`, folders `train/`, `validation/` and
            `test/` of CSV (or TFRecord) files; else files in `data_root`
            split by a deterministic hash.
        preprocessing_config: `serving.features.PreprocessingConfig` as a
            dict; Transform's custom_config.
        tasks: task name -> number of classes.
        trainer_config: the Trainer's custom_config (see `configs`).
        serving_model_dir: TF Serving base directory of this model.
        lower_bounds: task -> least value of its gated metric.
        change_threshold: the most a task's gated metric may drop against
            the last blessed model (None: no comparison).
        input_format: "csv" or "tfrecord" (of tf.Example).
        code_version: `pipeline.code_version.fingerprint()`, put in the
            Transform's and Trainer's custom_config so that a code change
            misses the cache.
        compare_with_blessed: False to evaluate without the last blessed
            model (e.g. it predicts other tasks): no baseline, no
            `change_threshold`.
        shuffled_input: the training rows under `data_root` are in a random
            order already (`pipeline.ingest` staged them): ExampleGen then
            streams them in that order (`pipeline.example_gen`) instead of
            shuffling them in a Beam `Reshuffle`.
    """
    if split_column:
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*")
                for split in ("train", "validation", "test")
            ]
        )
        output_config = None
    else:
        input_config = None
        output_config = example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(
                        name=name, hash_buckets=buckets
                    )
                    for name, buckets in configs.HASH_BUCKETS.items()
                ]
            )
        )
    if input_format == "csv":
        example_gen_class = (
            streaming.CsvExampleGen
            if shuffled_input
            else tfx.components.CsvExampleGen
        )
    else:
        example_gen_class = (
            streaming.ImportExampleGen
            if shuffled_input
            else tfx.components.ImportExampleGen
        )
    example_gen = example_gen_class(
        input_base=data_root,
        input_config=input_config,
        output_config=output_config,
    )
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]
    )
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"],
        infer_feature_shape=False,
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    # Only the train split feeds the analyzers: test rows never shape the
    # vocabularies or the model.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="serving.preprocessing.preprocessing_fn",
        custom_config={**preprocessing_config, "code_version": code_version},
        splits_config=transform_pb2.SplitsConfig(
            analyze=["train"], transform=["train", "validation", "test"]
        ),
        # No pre- and post-transform statistics: StatisticsGen describes the
        # input, nothing reads them, and on Beam's local runner they held
        # memory that grew with the rows (benchmarks/README.md, "The whole
        # pipeline at 1x, 10x and 40x").
        disable_statistics=True,
    )
    trainer = tfx.components.Trainer(
        run_fn="pipeline.model.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["validation"]),
        custom_config={
            **trainer_config,
            "preprocessing": preprocessing_config,
            "tasks": tasks,
            "code_version": code_version,
        },
    )
    baseline = []
    if compare_with_blessed:
        baseline.append(
            tfx.dsl.Resolver(
                strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
                model_blessing=tfx.dsl.Channel(
                    type=tfx.types.standard_artifacts.ModelBlessing
                ),
            ).with_id("latest_blessed_model_resolver")
        )
    else:
        change_threshold = None
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline[0].outputs["model"] if baseline else None,
        eval_config=eval_config(tasks, lower_bounds, change_threshold),
        example_splits=["test"],
    )
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=serving_model_dir
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            trainer,
            *baseline,
            evaluator,
            pusher,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
