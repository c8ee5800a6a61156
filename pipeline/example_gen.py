"""ExampleGen executors whose memory does not grow with the data.

TFX's CsvExampleGen and ImportExampleGen shuffle each split with a Beam
`Reshuffle` before writing it, and CsvExampleGen feeds every parsed CSV line
both to the column-type inference and, once the types are known, to the
conversion. On Beam's local runners both hold a whole split in memory.
These executors write the same tf.Examples without either:

- the rows arrive shuffled (`pipeline.ingest` stages the rows that train in
  a seeded random order), so the records are written in the order read;
- CSV column types are inferred as CsvExampleGen infers them, on a read of
  the files of their own, so the conversion streams.

Everything else (splits, hash partitioning, the output files and artifact
properties, the component's name and outputs) is ExampleGen's own.
"""

import os

import apache_beam as beam
from tfx import v1 as tfx
from tfx.components.example_gen import (
    base_example_gen_executor,
    utils,
    write_split,
)
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder


class _StreamingExecutor(base_example_gen_executor.BaseExampleGenExecutor):
    """Writes each split's records in the order they come."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
            input_config,
        )
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
            output_config,
        )
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(examples)
        artifact.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config)
        )
        with self._make_beam_pipeline() as pipeline:
            splits = self.GenerateExamplesByBeam(pipeline, exec_properties)
            for name, records in splits.items():
                prefix = os.path.join(
                    artifact_utils.get_split_uri(examples, name),
                    write_split.DEFAULT_FILE_NAME,
                )
                _ = (
                    records
                    | f"Serialize[{name}]"
                    >> beam.ParDo(write_split.MaybeSerialize())
                    | f"Write[{name}]"
                    >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")
                )
        payload = exec_properties.get(
            standard_component_specs.OUTPUT_DATA_FORMAT_KEY
        )
        if payload:
            examples_utils.set_payload_format(artifact, payload)
        file_format = exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY
        )
        if file_format:
            examples_utils.set_file_format(
                artifact, write_split.to_file_format_str(file_format)
            )


def _csv_files(pattern: str) -> tuple[list[str], list[str]]:
    """The files of a split and their common header."""
    files = sorted(fileio.glob(pattern))
    if not files:
        raise RuntimeError(f"Split pattern {pattern} does not match any files.")
    columns = io_utils.load_csv_column_names(files[0])
    for path in files[1:]:
        if io_utils.load_csv_column_names(path) != columns:
            raise RuntimeError(
                f"Files in split {pattern} have different headers."
            )
    return files, columns


@beam.ptransform_fn
def _ParsedCsv(pipeline, files: list[str]):
    """Each record of `files`, in order, as its list of cells."""
    return (
        pipeline
        | "Files" >> beam.Create(files)
        | "Records" >> beam.ParDo(csv_executor._ReadCsvRecordsFromTextFile())
        | "Parse" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
        | "Cells" >> beam.Keys()
    )


class _SplitSource(beam.PTransform):
    """The files of one input split: `split_pattern` under the input base,
    as ExampleGen hands them to its input transform."""

    def __init__(self, exec_properties, split_pattern: str):
        super().__init__()
        self._pattern = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY],
            split_pattern,
        )


class _CsvToExample(_SplitSource):
    """A split's CSV files -> tf.Examples, typed as CsvExampleGen types
    them; the types come from a read of the files of their own."""

    def expand(self, pipeline):
        files, columns = _csv_files(self._pattern)
        types = beam.pvalue.AsSingleton(
            pipeline
            | "ReadForTypes" >> _ParsedCsv(files)
            | "InferColumnTypes"
            >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(columns, skip_blank_lines=True)
            )
        )
        return (
            pipeline
            | "Read" >> _ParsedCsv(files)
            | "ToTFExample"
            >> beam.ParDo(csv_executor._ParsedCsvToTfExample(), types)
        )


class _TfRecordToExample(_SplitSource):
    """A split's TFRecord files of serialized tf.Examples, in order."""

    def expand(self, pipeline):
        return pipeline | "Read" >> beam.io.ReadFromTFRecord(self._pattern)


class CsvExecutor(_StreamingExecutor):
    """CsvExampleGen's executor: the same examples, streamed."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToExample


class TfRecordExecutor(_StreamingExecutor):
    """ImportExampleGen's executor for TFRecords of tf.Examples, streamed."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _TfRecordToExample


class CsvExampleGen(tfx.components.CsvExampleGen):
    """TFX's CsvExampleGen with `CsvExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(CsvExecutor)


class ImportExampleGen(tfx.components.ImportExampleGen):
    """TFX's ImportExampleGen with `TfRecordExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TfRecordExecutor)
