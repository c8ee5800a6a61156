import shutil

import pytest

from serving import predict
from serving import testing as serving_testing


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A TF Serving model dir: version 1 good, version 2 with a truncated
    graph, version 3 written only partly (no variables)."""
    base = tmp_path_factory.mktemp("serving") / "mmoe"
    serving_testing.export_tiny_model(str(base / "1"))
    shutil.copytree(base / "1", base / "2")
    graph = base / "2" / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[:1000])
    shutil.copytree(base / "1", base / "3")
    shutil.rmtree(base / "3" / "variables")
    return base


def test_the_newest_version_that_loads_is_used(base):
    warnings = []
    rows = predict.predict_texts(
        str(base), ["Lovely dress", ""], warn=warnings.append
    )
    assert len(rows) == 2 and set(rows[0]) == {"text", *serving_testing.TASKS}
    assert [w.split(",")[0] for w in warnings] == [
        f"skipping {base / '3'}",
        f"skipping {base / '2'}",
    ]


def test_no_version_that_loads_is_one_error(base, tmp_path):
    broken = tmp_path / "mmoe"
    shutil.copytree(base / "2", broken / "2")
    with pytest.raises(predict.ModelError, match=r"No SavedModel under .*/2:"):
        predict.predict_texts(str(broken), ["x"])
    with pytest.raises(predict.ModelError):
        predict.predict_texts(str(broken / "2"), ["x"])
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        predict.predict_texts(str(tmp_path / "nothing"), ["x"])
