"""Runs the pipeline locally: paths, the metadata store and LocalDagRunner."""

import dataclasses
import os

from pipeline import code_version, configs, ingest
from serving import features


@dataclasses.dataclass
class RunPaths:
    """Where a run keeps its staged data, TFX artifacts and pushed models."""

    output: str

    @property
    def data_root(self) -> str:
        return os.path.join(self.output, "data")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output, "tfx")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output, "tfx", "metadata.db")

    @property
    def serving_root(self) -> str:
        return os.path.join(self.output, "serving")


def pushed_tasks(serving_model_dir: str) -> dict[str, int] | None:
    """{task: number of classes} of the newest pushed version, read from its
    label vocabularies; None when nothing was pushed."""
    versions = (
        [v for v in os.listdir(serving_model_dir) if v.isdigit()]
        if os.path.isdir(serving_model_dir)
        else []
    )
    if not versions:
        return None
    assets = os.path.join(serving_model_dir, max(versions, key=int), "assets")
    suffix = features.label_vocabulary_name("")
    tasks = {}
    for name in os.listdir(assets) if os.path.isdir(assets) else []:
        if name.endswith(suffix) and name != suffix:
            with open(os.path.join(assets, name), "rb") as f:
                tasks[name[: -len(suffix)]] = len(f.read().splitlines())
    return tasks


def run(
    data: str,
    text_columns: list[str],
    label_columns: list[str],
    output: str,
    trainer_config: dict | None = None,
    beam_args: list[str] | None = None,
    lower_bounds: dict[str, float] | None = None,
    model_name: str = configs.MODEL_NAME,
    enable_cache: bool = True,
    preprocessing_overrides: dict | None = None,
    summary: ingest.IngestSummary | None = None,
) -> tuple[RunPaths, ingest.IngestSummary]:
    """Checks and stages `data` (unless `summary` says it was), then runs
    the whole pipeline on it."""
    # Imported here so that bad input is reported before TFX loads.
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    preprocessing = features.PreprocessingConfig(
        text_columns, label_columns, **(preprocessing_overrides or {})
    )
    paths = RunPaths(os.path.abspath(output))
    if summary is None:
        summary = ingest.ingest(
            data,
            text_columns,
            label_columns,
            paths.data_root,
            beam_args=beam_args,
        )
    data_root = (
        paths.data_root
        if summary.split_column
        else os.path.join(paths.data_root, "all")
    )
    serving_model_dir = os.path.join(paths.serving_root, model_name)
    pushed = pushed_tasks(serving_model_dir)
    compare = pushed is None or pushed == summary.num_classes
    if not compare:
        summary.warnings.append(
            f"The last pushed model predicts other tasks ({pushed}); this "
            "run is evaluated without comparing to it."
        )
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=paths.pipeline_root,
        data_root=data_root,
        preprocessing_config=preprocessing.to_dict(),
        tasks=summary.num_classes,
        trainer_config={**configs.TRAINER_DEFAULTS, **(trainer_config or {})},
        code_version=code_version.fingerprint(),
        serving_model_dir=serving_model_dir,
        compare_with_blessed=compare,
        split_column=summary.split_column,
        input_format=summary.input_format,
        shuffled_input=True,
        lower_bounds=lower_bounds,
        beam_pipeline_args=[
            "--direct_running_mode=in_memory",
            "--direct_num_workers=1",
            *(beam_args or []),
        ],
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(
                paths.metadata_path
            )
        ),
        enable_cache=enable_cache,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return paths, summary
