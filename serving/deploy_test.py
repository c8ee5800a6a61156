"""The deployment kit parses as TF Serving and Docker/Kubernetes read it."""

import pathlib
import re

import tensorflow as tf
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

DEPLOY = pathlib.Path(__file__).parent / "deploy"
# Our TensorFlow's major.minor: the tensorflow/serving image to match.
TF_MINOR = ".".join(tf.__version__.split(".")[:2])
FLAG_FILES = {
    "--model_config_file": "models.config",
    "--batching_parameters_file": "batching_parameters.txt",
    "--monitoring_config_file": "monitoring.config",
}


def _fields(path):
    """`name { value: X }` / `name: X` lines of a flat text proto."""
    text = re.sub(r"#.*", "", (DEPLOY / path).read_text())
    return dict(re.findall(r"(\w+)\s*(?:\{\s*value:|:)\s*([^\s}]+)", text))


def test_models_config_is_a_model_server_config():
    config = text_format.Parse(
        (DEPLOY / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    (model,) = config.model_config_list.config
    assert model.name == "mmoe"  # pipeline.configs.MODEL_NAME
    assert model.base_path == "/models/mmoe"
    assert model.model_platform == "tensorflow"


def test_batching_and_monitoring_fields():
    batching = _fields("batching_parameters.txt")
    # The fields of TF Serving's BatchingParameters proto.
    assert set(batching) <= {
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "allowed_batch_sizes",
        "pad_variable_length_inputs",
    }
    assert int(batching["max_batch_size"]) == 256
    assert 0 < int(batching["batch_timeout_micros"]) <= 10_000
    monitoring = _fields("monitoring.config")
    assert monitoring["enable"] == "true"
    assert monitoring["path"] == '"/monitoring/prometheus/metrics"'


def _check_server(image, args):
    assert image == f"tensorflow/serving:{TF_MINOR}.1", image
    flags = dict(a.split("=", 1) for a in args)
    assert flags["--port"] == "8500" and flags["--rest_api_port"] == "8501"
    assert flags["--enable_batching"] == "true"
    for flag, name in FLAG_FILES.items():
        assert flags[flag] == f"/config/{name}"


def test_compose_publishes_on_loopback_only():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    _check_server(service["image"], service["command"])
    assert sorted(service["ports"]) == [
        "127.0.0.1:8500:8500",
        "127.0.0.1:8501:8501",
    ]
    # source:target:ro, and the source may hold ${VAR:-default}.
    mounts = {
        target: source
        for source, target, _ in (v.rsplit(":", 2) for v in service["volumes"])
    }
    assert mounts["/models/mmoe"].endswith("output/demo/serving/mmoe}")
    for name in FLAG_FILES.values():
        assert (DEPLOY / mounts[f"/config/{name}"]).exists()
    assert all(v.endswith(":ro") for v in service["volumes"])


def test_compose_runs_unprivileged_with_limits():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    user = service["user"].split(":")
    assert user[0] != "0" and user[0] != "root"
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    assert float(service["cpus"]) > 0 and service["mem_limit"]
    assert service["pids_limit"] > 0


def test_kubernetes_manifest():
    deployment, service, policy = yaml.safe_load_all(
        (DEPLOY / "kubernetes.yaml").read_text()
    )
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    _check_server(container["image"], container["args"])
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": "/v1/models/mmoe", "port": 8501}
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    # Only labelled clients reach the ports.
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["podSelector"] == {
        "matchLabels": deployment["spec"]["selector"]["matchLabels"]
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"mmoe-serving-client": "true"}}}
    ]
    assert {p["port"] for p in rule["ports"]} == {8500, 8501}
