"""The Trainer's `FnArgs` on the tiny Transform output of `serving.testing`,
for the trainer tests."""

import os

from serving.testing import TinyTransform


def trainer_fn_args(
    tiny: TinyTransform,
    output_dir: str,
    custom_config: dict,
    train_split: str = "train",
    eval_split: str = "validation",
):
    """`FnArgs` as the Trainer's GenericExecutor builds them, on `tiny`."""
    import json

    from tfx.components.trainer import fn_args_utils
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = tiny.examples
    examples.split_names = artifact_utils.encode_split_names(
        list(tiny.raw_rows)
    )
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = tiny.transform_graph
    fn_args = fn_args_utils.get_common_fn_args(
        {"examples": [examples], "transform_graph": [transform_graph]},
        {
            "train_args": json.dumps({"splits": [train_split]}),
            "eval_args": json.dumps({"splits": [eval_split]}),
            "custom_config": json.dumps(custom_config),
        },
        working_dir=os.path.join(output_dir, "working"),
    )
    fn_args.serving_model_dir = os.path.join(output_dir, "serving_model")
    fn_args.model_run_dir = os.path.join(output_dir, "model_run")
    return fn_args
