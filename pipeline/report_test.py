from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import report


def _store(path):
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def _type(store, kind, name):
    put = getattr(store, f"put_{kind}_type")
    return put(getattr(mlmd, f"{kind.capitalize()}Type")(name=name))


def _record(store, types, run, node, state, outputs):
    """One execution of `node` in `run`, with OUTPUT events to `outputs`."""
    execution = mlmd.Execution(
        type_id=types["execution"], last_known_state=state
    )
    [execution_id] = store.put_executions([execution])
    for key, artifact_id in outputs.items():
        event = mlmd.Event(
            artifact_id=artifact_id,
            execution_id=execution_id,
            type=mlmd.Event.OUTPUT,
        )
        event.path.steps.add().key = key
        store.put_events([event])
    for context_id in (run, node):
        store.put_attributions_and_associations(
            [],
            [
                mlmd.Association(
                    execution_id=execution_id, context_id=context_id
                )
            ],
        )


def test_a_cached_trainer_gives_the_model_it_reused(tmp_path):
    """Run 1 trains model/1, run 2 (other config) model/2, run 3 (run 1's
    config again) hits the cache: its model is model/1, not the newest."""
    store = _store(tmp_path / "metadata.db")
    types = {
        "execution": _type(store, "execution", "Trainer"),
        "artifact": _type(store, "artifact", "Model"),
        "run": _type(store, "context", "pipeline_run"),
        "node": _type(store, "context", "node"),
    }
    [trainer, pusher] = store.put_contexts(
        [
            mlmd.Context(type_id=types["node"], name="p.Trainer"),
            mlmd.Context(type_id=types["node"], name="p.AtomicPusher"),
        ]
    )
    models = store.put_artifacts(
        [
            mlmd.Artifact(type_id=types["artifact"], uri=f"/tfx/model/{i}")
            for i in (1, 2)
        ]
    )
    pushed = mlmd.Artifact(type_id=types["artifact"], uri="/tfx/pushed/9")
    pushed.custom_properties["pushed_destination"].string_value = "/s/m/7"
    [pushed_id] = store.put_artifacts([pushed])
    runs = store.put_contexts(
        [mlmd.Context(type_id=types["run"], name=f"run-{i}") for i in range(3)]
    )
    done, cached = mlmd.Execution.COMPLETE, mlmd.Execution.CACHED
    _record(store, types, runs[0], trainer, done, {"model": models[0]})
    _record(store, types, runs[1], trainer, done, {"model": models[1]})
    _record(store, types, runs[2], trainer, cached, {"model": models[0]})
    _record(store, types, runs[2], pusher, done, {"pushed_model": pushed_id})
    del store

    outputs = report.run_outputs(str(tmp_path / "metadata.db"))
    assert outputs == {
        "Trainer": {"model": "/tfx/model/1"},
        "AtomicPusher": {"pushed_model": "/s/m/7"},
    }


def test_an_empty_store_gives_nothing(tmp_path):
    _store(tmp_path / "metadata.db")
    assert report.run_outputs(str(tmp_path / "metadata.db")) == {}
