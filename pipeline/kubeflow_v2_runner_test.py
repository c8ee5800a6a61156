import json

from pipeline import kubeflow_v2_runner


def test_compiles_offline_with_every_component(tmp_path):
    out = kubeflow_v2_runner.compile_pipeline(
        output_file=str(tmp_path / "pipeline.json"),
        pipeline_root="gs://bucket/root",
        data_root="gs://bucket/data",
        serving_dir="gs://bucket/serving/mmoe",
        image="example.registry/keras-mmoe:0.1.0",
        text_columns=["Title", "Review Text"],
        label_columns=["Recommended IND", "Rating"],
        tasks={"recommended_ind": 2, "rating": 5},
        beam_args=["--runner=DataflowRunner"],
    )
    spec = json.loads(open(out).read())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    for name in (
        "CsvExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "ExampleValidator",
        "Transform",
        "Trainer",
        "Evaluator",
        "AtomicPusher",
    ):
        assert name in tasks, sorted(tasks)
    text = open(out).read()
    assert "example.registry/keras-mmoe:0.1.0" in text
    assert "pipeline.model.run_fn" in text
    assert "--runner=DataflowRunner" in text
