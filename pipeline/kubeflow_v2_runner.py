"""Compiles the same pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

    python -m pipeline.kubeflow_v2_runner --output pipeline.json \\
        --pipeline-root gs://BUCKET/root --data-root gs://BUCKET/data \\
        --serving-dir gs://BUCKET/serving/mmoe --image IMAGE \\
        --text-column Title "Review Text" \\
        --label-columns "Recommended IND" Rating "Department Name" \\
        --tasks recommended_ind=2 rating=5 department_name=6

The image must hold this project installed (`pip install -c constraints.txt
.[pipeline]`): Transform and Trainer import `serving.preprocessing` and
`pipeline.model` by module path. Submit the JSON with the Vertex AI SDK or
the KFP UI. Nothing here talks to a cluster.
"""

import argparse

from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipeline import code_version, configs
from pipeline.pipeline import create_pipeline
from serving import features


def compile_pipeline(
    output_file: str,
    pipeline_root: str,
    data_root: str,
    serving_dir: str,
    image: str,
    text_columns: list[str],
    label_columns: list[str],
    tasks: dict[str, int],
    trainer_config: dict | None = None,
    beam_args: list[str] | None = None,
) -> str:
    """Writes the Kubeflow v2 pipeline spec JSON; returns its path."""
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=pipeline_root,
        data_root=data_root,
        preprocessing_config=features.PreprocessingConfig(
            text_columns, label_columns
        ).to_dict(),
        tasks=tasks,
        trainer_config={**configs.TRAINER_DEFAULTS, **(trainer_config or {})},
        code_version=code_version.fingerprint(),
        serving_model_dir=serving_dir,
        beam_pipeline_args=beam_args,
    )
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image
        ),
        output_filename=output_file,
    )
    runner.run(pipeline, write_out=True)
    return output_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--serving-dir", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--text-column", nargs="+", required=True)
    parser.add_argument("--label-columns", nargs="+", required=True)
    parser.add_argument(
        "--tasks", nargs="+", required=True, metavar="TASK=NUM_CLASSES"
    )
    parser.add_argument("--beam-arg", action="append", default=[])
    args = parser.parse_args(argv)
    tasks = {t.split("=")[0]: int(t.split("=")[1]) for t in args.tasks}
    print(
        compile_pipeline(
            args.output,
            args.pipeline_root,
            args.data_root,
            args.serving_dir,
            args.image,
            args.text_column,
            args.label_columns,
            tasks,
            beam_args=args.beam_arg,
        )
    )


if __name__ == "__main__":
    main()
