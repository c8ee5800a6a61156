"""The client against stand-ins for TF Serving's gRPC and REST APIs.

No TF Serving binary runs on our machines. The stand-ins speak the
documented protocols (PredictionService/Predict with tensorflow-serving-api's
generated stubs; `POST /v1/models/NAME:predict` in row format) and answer
from the real exported SavedModel, so the client is checked end to end
against what TF Serving would receive and send.
"""

import base64
import http.server
import json
import threading
from concurrent import futures

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from pipeline import testing
from serving import client as serving_client
from serving import testing as serving_testing

TEXTS = ["lovely dress", "", "awful top, returned it", "lovely dress"]
TEXT_COLUMN = testing.TEXT_COLUMNS[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    export_dir = str(tmp_path_factory.mktemp("model") / "1")
    serving_testing.export_tiny_model(export_dir)
    return tf.saved_model.load(export_dir)


def run_signature(model, signature, inputs: dict) -> dict:
    """What TF Serving does with a request: call the signature."""
    import tensorflow as tf

    fn = model.signatures[signature]
    expected = set(fn.structured_input_signature[1])
    if set(inputs) != expected:
        raise ValueError(
            f"signature {signature!r} takes inputs {sorted(expected)}, "
            f"got {sorted(inputs)}"
        )
    out = fn(**{k: tf.constant(v, tf.string) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


# === Stand-in gRPC PredictionService ===


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model, unavailable_times=0):
        self.model = model
        self.unavailable_times = unavailable_times
        self.calls = 0

    def Predict(self, request, context):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self.calls += 1
        if self.calls <= self.unavailable_times:
            context.abort(grpc.StatusCode.UNAVAILABLE, "model is loading")
        if request.model_spec.name != "mmoe":
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest("
                f"{request.model_spec.name})",
            )
        signature = request.model_spec.signature_name or "serving_default"
        if signature not in self.model.signatures:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'Serving signature name: "{signature}" not found in '
                "signature def",
            )
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        try:
            outputs = run_signature(self.model, signature, inputs)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        response.model_spec.version.value = 1
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


@pytest.fixture
def grpc_server(model):
    import grpc

    servers = []

    def start(unavailable_times=0):
        servicer = _Servicer(model, unavailable_times)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            servicer, server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port, servicer

    yield start
    for server in servers:
        server.stop(0)


# === Stand-in REST API ===


def _decode(value):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise ValueError("an object instance must be {'b64': ...}")
        return base64.b64decode(value["b64"])
    if not isinstance(value, str):
        raise ValueError(f"expected a string instance, got {value!r}")
    return value.encode("utf-8")


def _json_value(value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return value.tolist() if hasattr(value, "tolist") else value


@pytest.fixture
def rest_server(model):
    servers = []

    def start(unavailable_times=0):
        state = {"calls": 0, "bodies": []}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, payload):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                state["calls"] += 1
                length = int(self.headers["Content-Length"])
                raw = self.rfile.read(length)
                state["bodies"].append(raw)
                if state["calls"] <= unavailable_times:
                    return self.reply(503, {"error": "model is loading"})
                path = self.path
                if not path.startswith("/v1/models/") or not path.endswith(
                    ":predict"
                ):
                    return self.reply(404, {"error": f"Malformed {path}"})
                name = path[len("/v1/models/") : -len(":predict")]
                if name.split("/versions/")[0] != "mmoe":
                    return self.reply(
                        404, {"error": f"Servable not found: {name}"}
                    )
                try:
                    body = json.loads(raw)
                    signature = body.get("signature_name", "serving_default")
                    if signature not in model.signatures:
                        raise ValueError(
                            f'Serving signature name: "{signature}" not found'
                        )
                    input_name = serving_client._INPUT_NAMES[signature]
                    values = [_decode(v) for v in body["instances"]]
                    out = run_signature(model, signature, {input_name: values})
                except (ValueError, KeyError) as e:
                    return self.reply(400, {"error": str(e)})
                rows = [
                    {k: _json_value(v[i]) for k, v in out.items()}
                    for i in range(len(values))
                ]
                return self.reply(200, {"predictions": rows})

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _client(protocol, port, **kwargs):
    ports = {"rest_port": port} if protocol == "rest" else {"grpc_port": port}
    return serving_client.ServingClient(
        "127.0.0.1", protocol=protocol, backoff=0.01, **ports, **kwargs
    )


def _start(protocol, grpc_server, rest_server, **kwargs):
    return (rest_server if protocol == "rest" else grpc_server)(**kwargs)


def _direct(model, texts):
    out = run_signature(model, "predict_text", {"text": texts})
    return serving_client.rows_from_outputs(out, len(texts))


# === Tests ===


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("signature", ["predict_text", "serving_default"])
def test_predictions_equal_the_saved_model(
    model, grpc_server, rest_server, protocol, signature
):
    port, _ = _start(protocol, grpc_server, rest_server)
    rows = _client(protocol, port).predict(
        TEXTS, signature=signature, text_column=TEXT_COLUMN
    )
    expected = _direct(model, [t.encode() for t in TEXTS])
    assert len(rows) == len(TEXTS)
    assert set(rows[0]) == set(serving_testing.TASKS)
    for row, want in zip(rows, expected, strict=True):
        for task, n in serving_testing.TASKS.items():
            assert row[task]["label"] == want[task]["label"]
            assert len(row[task]["probabilities"]) == n
            np.testing.assert_allclose(
                row[task]["probabilities"],
                want[task]["probabilities"],
                rtol=1e-5,
            )
    # The same text twice gives the same answer.
    assert rows[0] == rows[3]


def test_rest_request_body_is_tf_serving_row_format(rest_server):
    port, state = rest_server()
    _client("rest", port).predict(["nice"], signature="predict_text")
    _client("rest", port).predict(
        ["nice"], signature="serving_default", text_column=TEXT_COLUMN
    )
    text_body, example_body = (json.loads(b) for b in state["bodies"])
    assert text_body == {
        "signature_name": "predict_text",
        "instances": ["nice"],
    }
    assert example_body["signature_name"] == "serving_default"
    (instance,) = example_body["instances"]
    assert set(instance) == {"b64"}
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(base64.b64decode(instance["b64"]))
    assert example.features.feature[TEXT_COLUMN].bytes_list.value == [b"nice"]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_unavailable_is_retried_then_succeeds(
    grpc_server, rest_server, protocol
):
    port, state = _start(
        protocol, grpc_server, rest_server, unavailable_times=2
    )
    rows = _client(protocol, port, retries=3).predict(["fine"])
    assert len(rows) == 1
    calls = state["calls"] if protocol == "rest" else state.calls
    assert calls == 3


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_always_unavailable_gives_up_after_the_retries(
    grpc_server, rest_server, protocol
):
    port, state = _start(
        protocol, grpc_server, rest_server, unavailable_times=100
    )
    with pytest.raises(serving_client.ServingError, match="3 attempts"):
        _client(protocol, port, retries=2).predict(["fine"])
    calls = state["calls"] if protocol == "rest" else state.calls
    assert calls == 3


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_invalid_argument_is_not_retried_and_is_surfaced(
    grpc_server, rest_server, protocol
):
    port, state = _start(protocol, grpc_server, rest_server)
    c = _client(protocol, port, retries=3)
    # A signature the model does not have, sent past the client's own check.
    c_predict = c._rest if protocol == "rest" else c._grpc
    with pytest.raises(serving_client.ServingError, match="not found") as e:
        c._with_retries(lambda: c_predict("no_such_signature", [b"x"]))
    assert ("HTTP 400" if protocol == "rest" else "INVALID_ARGUMENT") in str(
        e.value
    )
    calls = state["calls"] if protocol == "rest" else state.calls
    assert calls == 1


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_unknown_model_names_the_model(grpc_server, rest_server, protocol):
    port, _ = _start(protocol, grpc_server, rest_server)
    with pytest.raises(serving_client.ServingError, match="'tiny'"):
        _client(protocol, port, model_name="tiny", retries=0).predict(["x"])


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_nobody_listening_is_a_clear_error(protocol):
    import socket

    with socket.socket() as s:  # A port that was free a moment ago.
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = _client(protocol, port, retries=1, timeout=2.0)
    with pytest.raises(serving_client.ServingError, match="UNAVAILABLE"):
        c.predict(["x"])


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_bad_text_gives_valid_outputs(
    model, grpc_server, rest_server, protocol
):
    port, _ = _start(protocol, grpc_server, rest_server)
    texts = [b"", b"caf\xe9 \xff broken", "x" * 1_000_000]
    rows = _client(protocol, port).predict(texts)
    assert len(rows) == 3
    for row in rows:
        for task, n in serving_testing.TASKS.items():
            p = row[task]["probabilities"]
            assert len(p) == n and abs(sum(p) - 1) < 1e-4
            assert np.all(np.isfinite(p))
    assert _client(protocol, port).predict([]) == []


def test_client_rejects_bad_arguments():
    with pytest.raises(ValueError, match="protocol='http'"):
        serving_client.ServingClient(protocol="http")
    with pytest.raises(ValueError, match="retries"):
        serving_client.ServingClient(retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        serving_client.ServingClient(timeout=0)
    c = serving_client.ServingClient()
    with pytest.raises(ValueError, match="signature='classify'"):
        c.predict(["x"], signature="classify")
    with pytest.raises(ValueError, match="not one string"):
        c.predict("just one string")


def _query(argv):
    import argparse
    import io

    parser = argparse.ArgumentParser()
    serving_client.add_query_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["query", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.func(args, out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_query_command(grpc_server, rest_server, protocol):
    port, _ = _start(protocol, grpc_server, rest_server)
    code, out, err = _query(
        [
            "lovely dress",
            "--host",
            "127.0.0.1",
            "--protocol",
            protocol,
            f"--{protocol}-port",
            str(port),
        ]
    )
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["text"] == "lovely dress"
    assert set(row) == {"text", *serving_testing.TASKS}


def test_query_command_exit_code_2_names_the_problem():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = _query(
        ["x", "--host", "127.0.0.1", "--rest-port", str(port), "--retries", "0"]
    )
    assert code == 2 and not out
    assert (
        err.startswith("mmoe: REST 127.0.0.1:") and len(err.splitlines()) == 1
    )
