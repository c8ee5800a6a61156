"""The client against stand-ins for TF Serving's gRPC and REST APIs.

No TF Serving binary runs on our machines. The stand-ins speak the
documented protocols (PredictionService/Predict with tensorflow-serving-api's
generated stubs; `POST /v1/models/NAME[/versions/N]:predict` in row format)
and answer from the real exported SavedModel, with TF Serving's status codes
and messages for what the client must handle (UNAVAILABLE while loading or
overloaded, NOT_FOUND, INVALID_ARGUMENT, a batch over `max_batch_size`), so
the client is checked end to end against what TF Serving would receive and
send.
"""

import argparse
import base64
import http.server
import io
import json
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from concurrent import futures

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import client as serving_client
from serving import features
from serving import testing as serving_testing

TEXTS = ["lovely dress", "", "awful top, returned it", "lovely dress"]
TEXT_COLUMN = serving_testing.TEXT_COLUMNS[0]
MODEL_NAME = "mmoe"
VERSION = 1


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    export_dir = str(tmp_path_factory.mktemp("model") / str(VERSION))
    serving_testing.export_tiny_model(export_dir)
    return tf.saved_model.load(export_dir)


def run_signature(model, signature, inputs: dict) -> dict:
    """Calls a signature of the loaded SavedModel on string inputs."""
    import tensorflow as tf

    out = model.signatures[signature](
        **{k: tf.constant(v, tf.string) for k, v in inputs.items()}
    )
    return {k: v.numpy() for k, v in out.items()}


# === What TF Serving does with a Predict request ===


class _Status(Exception):
    """A TF Serving error: a canonical status code name and a message."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


# TF Serving's http_server.cc ToHTTPStatusCode, for the codes used here.
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503}


class _Peer:
    """One model server: the model, its failures, and what it was sent.

    Args:
        unavailable_times: the first requests answered UNAVAILABLE (a model
            still loading, a full batch queue).
        delay: seconds each request takes before it is answered.
        max_batch_size: most rows per request, as `--enable_batching` with
            `max_batch_size` enforces.
    """

    def __init__(self, model, unavailable_times=0, delay=0.0, max_batch_size=0):
        self.model = model
        self.unavailable_times = unavailable_times
        self.delay = delay
        self.max_batch_size = max_batch_size
        self.calls = 0
        self.requests = []  # gRPC PredictRequests, REST (path, JSON body)
        self._lock = threading.Lock()

    def predict(self, name, version, signature, inputs) -> tuple[str, dict]:
        """Returns (signature run, outputs) or raises `_Status`."""
        with self._lock:
            self.calls += 1
            calls = self.calls
        if self.delay:
            time.sleep(self.delay)
        if calls <= self.unavailable_times:
            raise _Status("UNAVAILABLE", "Model mmoe is still loading")
        if name != MODEL_NAME or version not in (None, VERSION):
            wanted = (
                f"Latest({name})"
                if version is None
                else f"Specific({name}, {version})"
            )
            raise _Status(
                "NOT_FOUND", f"Servable not found for request: {wanted}"
            )
        signature = signature or "serving_default"
        if signature not in self.model.signatures:
            raise _Status(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{signature}" not found in '
                "signature def",
            )
        expected = set(
            self.model.signatures[signature].structured_input_signature[1]
        )
        if set(inputs) != expected:
            raise _Status(
                "INVALID_ARGUMENT",
                "input tensor alias not found in signature: "
                f"{', '.join(sorted(set(inputs) - expected))}. Inputs "
                f"expected to be in the set {{{', '.join(sorted(expected))}}}.",
            )
        rows = max(len(v) for v in inputs.values())
        if self.max_batch_size and rows > self.max_batch_size:
            raise _Status(
                "INVALID_ARGUMENT",
                f"Task size {rows} is larger than maximum input batch size "
                f"{self.max_batch_size}",
            )
        return signature, run_signature(self.model, signature, inputs)


# === Stand-in gRPC PredictionService ===


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, peer: _Peer):
        self.peer = peer

    def Predict(self, request, context):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self.peer.requests.append(request)
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        try:
            signature, outputs = self.peer.predict(
                spec.name, version, spec.signature_name, inputs
            )
        except _Status as e:
            context.abort(grpc.StatusCode[e.code], e.message)
        # TF Serving echoes the model spec with what it resolved.
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        response.model_spec.version.value = VERSION
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


def _start_grpc(peer: _Peer, tls=None):
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _Servicer(peer), server
    )
    if tls:
        cert, key = tls
        credentials = grpc.ssl_server_credentials(
            [(pathlib.Path(key).read_bytes(), pathlib.Path(cert).read_bytes())]
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return port, lambda: server.stop(0)


# === Stand-in REST API ===

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")


def _decode(value) -> bytes:
    """A string instance: JSON text, or binary as {"b64": ...}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _Status(
        "INVALID_ARGUMENT", f"JSON Value: {json.dumps(value)} not a string"
    )


def _json_value(value):
    """An output value as TF Serving writes it: text as a JSON string."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.tolist() if hasattr(value, "tolist") else value


def _rest_handler(peer: _Peer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, payload):
            body = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # The client gave up (a timeout test).

        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            match = _PREDICT_PATH.fullmatch(self.path)
            if not match:
                return self.reply(
                    404, {"error": f"Malformed request: POST {self.path}"}
                )
            name, version = match.group(1), match.group(2)
            try:
                body = json.loads(raw)
                peer.requests.append((self.path, body))
                if "instances" not in body:
                    raise _Status(
                        "INVALID_ARGUMENT",
                        "Missing 'inputs' or 'instances' key",
                    )
                signature = body.get("signature_name", "")
                values = [_decode(v) for v in body["instances"]]
                # Row format: each instance is the value of the one input.
                fn = peer.model.signatures.get(signature or "serving_default")
                input_names = (
                    list(fn.structured_input_signature[1]) if fn else ["?"]
                )
                signature, out = peer.predict(
                    name,
                    int(version) if version else None,
                    signature,
                    {input_names[0]: values},
                )
            except _Status as e:
                return self.reply(_HTTP_STATUS[e.code], {"error": e.message})
            except ValueError as e:
                return self.reply(400, {"error": f"JSON Parse error: {e}"})
            rows = [
                {k: _json_value(v[i]) for k, v in out.items()}
                for i in range(len(values))
            ]
            return self.reply(200, {"predictions": rows})

    return Handler


def _start_rest(peer: _Peer, tls=None):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), _rest_handler(peer)
    )
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(
        target=server.serve_forever, args=(0.05,), daemon=True
    ).start()

    def stop():
        server.shutdown()
        server.server_close()

    return server.server_address[1], stop


@pytest.fixture
def serve(model):
    """`serve(protocol, **peer_knobs)` -> (port, peer), stopped at the end."""
    stops = []

    def start(protocol, tls=None, **knobs):
        peer = _Peer(model, **knobs)
        starter = _start_rest if protocol == "rest" else _start_grpc
        port, stop = starter(peer, tls=tls)
        stops.append(stop)
        return port, peer

    yield start
    for stop in stops:
        stop()


def _client(protocol, port, **kwargs):
    ports = {"rest_port": port} if protocol == "rest" else {"grpc_port": port}
    kwargs.setdefault("backoff", 0.01)
    return serving_client.ServingClient(
        "127.0.0.1", protocol=protocol, **ports, **kwargs
    )


def _direct(model, texts):
    out = run_signature(
        model,
        "predict_text",
        {"text": [serving_client._as_bytes(t) for t in texts]},
    )
    return serving_client.rows_from_outputs(out, len(texts))


def _assert_rows_equal(rows, expected):
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert set(row) == set(serving_testing.TASKS)
        for task, n in serving_testing.TASKS.items():
            assert row[task]["label"] == want[task]["label"]
            assert len(row[task]["probabilities"]) == n
            np.testing.assert_allclose(
                row[task]["probabilities"],
                want[task]["probabilities"],
                rtol=1e-5,
            )


def _free_port() -> int:
    """A port nobody listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROTOCOLS = pytest.mark.parametrize("protocol", ["rest", "grpc"])


# === Predictions ===


@PROTOCOLS
@pytest.mark.parametrize("signature", ["predict_text", "serving_default"])
def test_predictions_equal_the_saved_model(model, serve, protocol, signature):
    port, _ = serve(protocol)
    rows = _client(protocol, port).predict(
        TEXTS, signature=signature, text_column=TEXT_COLUMN
    )
    # tf.Example mode and text mode both equal predict_text run directly.
    _assert_rows_equal(rows, _direct(model, TEXTS))
    assert rows[0] == rows[3]  # The same text twice, the same answer.
    assert rows[0] != rows[2]  # The tiny model tells texts apart.
    for row in rows:
        for task in serving_testing.TASKS:
            assert sum(row[task]["probabilities"]) == pytest.approx(1, 1e-5)


def test_rest_request_body_is_tf_serving_row_format(serve):
    port, peer = serve("rest")
    c = _client("rest", port, version=VERSION)
    c.predict(["nice", b"caf\xe9"], signature="predict_text")
    c.predict(["nice"], signature="serving_default", text_column=TEXT_COLUMN)
    (text_path, text_body), (_, example_body) = peer.requests
    assert text_path == f"/v1/models/mmoe/versions/{VERSION}:predict"
    # Text as JSON strings; bytes that are not UTF-8 as {"b64": ...}.
    assert text_body == {
        "signature_name": "predict_text",
        "instances": ["nice", {"b64": base64.b64encode(b"caf\xe9").decode()}],
    }
    assert example_body["signature_name"] == "serving_default"
    (instance,) = example_body["instances"]
    assert set(instance) == {"b64"}
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(base64.b64decode(instance["b64"]))
    assert example.features.feature[TEXT_COLUMN].bytes_list.value == [b"nice"]


def test_grpc_request_is_a_predict_request(serve):
    import tensorflow as tf

    port, peer = serve("grpc")
    _client("grpc", port).predict(["nice", "day"])
    _client("grpc", port, version=VERSION).predict(
        ["nice"], signature="serving_default", text_column=TEXT_COLUMN
    )
    text_request, example_request = peer.requests
    assert text_request.model_spec.name == "mmoe"
    assert text_request.model_spec.signature_name == "predict_text"
    assert not text_request.model_spec.HasField("version")  # the newest
    (tensor,) = text_request.inputs.values()
    assert list(text_request.inputs) == ["text"]
    assert tensor.dtype == tf.string.as_datatype_enum
    assert tf.make_ndarray(tensor).tolist() == [b"nice", b"day"]
    assert example_request.model_spec.version.value == VERSION
    assert list(example_request.inputs) == ["examples"]


@PROTOCOLS
def test_batches_over_the_servers_limit_are_split(model, serve, protocol):
    texts = [f"lovely dress {i}" for i in range(5)]
    port, peer = serve(protocol, max_batch_size=2)
    # One request of 5 is refused as TF Serving refuses it, not retried.
    with pytest.raises(serving_client.ServingError, match="Task size 5"):
        _client(protocol, port).predict(texts)
    assert peer.calls == 1
    rows = _client(protocol, port, batch_size=2).predict(texts)
    assert peer.calls == 1 + 3  # 2 + 2 + 1
    _assert_rows_equal(rows, _direct(model, texts))


@PROTOCOLS
def test_bad_text_gives_valid_outputs(serve, protocol):
    port, peer = serve(protocol)
    texts = [b"", b"caf\xe9 \xff broken", "x" * 1_000_000, "日本語 ✓"]
    rows = _client(protocol, port).predict(texts)
    assert len(rows) == len(texts)
    for row in rows:
        for task, n in serving_testing.TASKS.items():
            p = row[task]["probabilities"]
            assert len(p) == n and abs(sum(p) - 1) < 1e-4
            assert np.all(np.isfinite(p))
    # No texts, no request.
    assert _client(protocol, port).predict([]) == []
    assert peer.calls == 1


# === Errors and retries ===


@PROTOCOLS
def test_unavailable_is_retried_then_succeeds(serve, protocol):
    port, peer = serve(protocol, unavailable_times=2)
    rows = _client(protocol, port, retries=3).predict(["fine"])
    assert len(rows) == 1 and set(rows[0]) == set(serving_testing.TASKS)
    assert peer.calls == 3


def test_retries_back_off_exponentially(serve, monkeypatch):
    port, peer = serve("rest", unavailable_times=3)
    slept = []
    monkeypatch.setattr(serving_client.time, "sleep", slept.append)
    _client("rest", port, retries=3, backoff=1.0).predict(["x"])
    assert peer.calls == 4 and len(slept) == 3
    # Doubling, with jitter down to half.
    for delay, most in zip(slept, [1.0, 2.0, 4.0], strict=True):
        assert most / 2 <= delay <= most


@PROTOCOLS
def test_always_unavailable_gives_up_after_the_retries(serve, protocol):
    port, peer = serve(protocol, unavailable_times=100)
    with pytest.raises(serving_client.ServingError) as e:
        _client(protocol, port, retries=2).predict(["fine"])
    assert peer.calls == 3
    status = "HTTP 503" if protocol == "rest" else "UNAVAILABLE"
    assert e.value.status == f"{status} after 3 attempts"
    assert e.value.message == "Model mmoe is still loading"
    assert str(e.value) == (
        f"{protocol.upper()} 127.0.0.1:{port} model 'mmoe': "
        f"{status} after 3 attempts: Model mmoe is still loading"
    )


@PROTOCOLS
def test_invalid_argument_is_not_retried_and_is_surfaced(
    serve, protocol, monkeypatch
):
    port, peer = serve(protocol)
    monkeypatch.setitem(features.SIGNATURE_INPUTS, "no_such_signature", "x")
    c = _client(protocol, port, retries=3)
    # A signature the model does not have, sent past the client's own check.
    send = c._rest if protocol == "rest" else c._grpc
    with pytest.raises(serving_client.ServingError) as e:
        c._with_retries(lambda: send("no_such_signature", [b"x"]))
    assert peer.calls == 1
    assert e.value.status == (
        "HTTP 400" if protocol == "rest" else "INVALID_ARGUMENT"
    )
    assert e.value.message == (
        'Serving signature name: "no_such_signature" not found in signature def'
    )


def test_grpc_missing_input_is_invalid_argument(serve, monkeypatch):
    port, peer = serve("grpc")
    monkeypatch.setitem(features.SIGNATURE_INPUTS, "predict_text", "examples")
    with pytest.raises(
        serving_client.ServingError,
        match="INVALID_ARGUMENT: input tensor alias not found in signature: "
        r"examples. Inputs expected to be in the set \{text\}",
    ):
        _client("grpc", port).predict(["x"])
    assert peer.calls == 1


@PROTOCOLS
def test_unknown_model_or_version_is_not_found(serve, protocol):
    port, peer = serve(protocol)
    assert len(_client(protocol, port, version=VERSION).predict(["x"])) == 1
    with pytest.raises(serving_client.ServingError) as e:
        _client(protocol, port, model_name="tiny").predict(["x"])
    assert e.value.model_name == "tiny" and "model 'tiny'" in str(e.value)
    assert e.value.status == ("HTTP 404" if protocol == "rest" else "NOT_FOUND")
    assert e.value.message == "Servable not found for request: Latest(tiny)"
    with pytest.raises(
        serving_client.ServingError, match=r"Specific\(mmoe, 7\)"
    ):
        _client(protocol, port, version=7).predict(["x"])
    assert peer.calls == 3


@PROTOCOLS
def test_nobody_listening_is_a_clear_error(protocol):
    port = _free_port()
    c = _client(protocol, port, retries=1, timeout=2.0)
    with pytest.raises(serving_client.ServingError) as e:
        c.predict(["x"])
    assert e.value.target == f"127.0.0.1:{port}"
    assert e.value.status == "UNAVAILABLE after 2 attempts"
    assert str(e.value).startswith(
        f"{protocol.upper()} 127.0.0.1:{port} model 'mmoe': UNAVAILABLE"
    )


@PROTOCOLS
def test_a_slow_server_times_out_without_retries(serve, protocol):
    port, peer = serve(protocol, delay=1.0)
    started = time.perf_counter()
    with pytest.raises(serving_client.ServingError) as e:
        _client(protocol, port, timeout=0.2, retries=2).predict(["x"])
    assert e.value.status == "DEADLINE_EXCEEDED"
    assert peer.calls == 1
    assert time.perf_counter() - started < 1.0


def _raw_rest_server(respond):
    """A REST peer that answers every connection with `respond(conn)`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    respond(conn)
                except OSError:
                    pass  # The client hung up.

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_server_that_trickles_its_reply_meets_the_deadline():
    def trickle(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.1)

    listener = _raw_rest_server(trickle)
    started = time.perf_counter()
    with pytest.raises(serving_client.ServingError) as e:
        _client("rest", listener.getsockname()[1], timeout=1.0).predict(["x"])
    assert e.value.status == "DEADLINE_EXCEEDED"
    assert time.perf_counter() - started < 2.0
    listener.close()


@pytest.mark.parametrize(
    "reply",
    [
        {"predictions": None},
        {"predictions": [{"t_probabilities": 0.5, "t_label": "a"}]},
        {"predictions": [{"t_probabilities": ["x"], "t_label": "a"}]},
        {"predictions": [{"t_probabilities": [0.5], "t_label": 3}]},
        {"predictions": [1, 2]},
    ],
)
def test_json_of_the_wrong_shape_is_one_line_exit_2(reply):
    body = json.dumps(reply).encode()

    def answer(conn):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    listener = _raw_rest_server(answer)
    port = listener.getsockname()[1]
    code, out, err = _query(["x", "--host=127.0.0.1", f"--rest-port={port}"])
    assert code == 2 and not out
    assert err.startswith(f"mmoe: REST 127.0.0.1:{port} model 'mmoe': bad ")
    assert len(err.splitlines()) == 1
    listener.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"]
        + ["-keyout", key, "-out", cert, "-days", "1"]
        + ["-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@PROTOCOLS
def test_tls_with_the_servers_certificate(model, serve, protocol, certificate):
    port, _ = serve(protocol, tls=certificate)
    texts = ["Lovely dress", ""]
    client = _client(protocol, port, tls=True, ca_cert=certificate[0])
    _assert_rows_equal(client.predict(texts), _direct(model, texts))
    # Without the authority that signed it, the server is not trusted.
    with pytest.raises(serving_client.ServingError):
        _client(protocol, port, tls=True, retries=0, timeout=3).predict(["x"])


def test_client_rejects_bad_arguments():
    with pytest.raises(ValueError, match="protocol='http'"):
        serving_client.ServingClient(protocol="http")
    with pytest.raises(ValueError, match="retries=-1"):
        serving_client.ServingClient(retries=-1)
    with pytest.raises(ValueError, match="batch_size=0"):
        serving_client.ServingClient(batch_size=0)
    with pytest.raises(ValueError, match="timeout=0"):
        serving_client.ServingClient(timeout=0)
    with pytest.raises(ValueError, match="backoff=-1"):
        serving_client.ServingClient(backoff=-1)
    with pytest.raises(ValueError, match="tls=False"):
        serving_client.ServingClient(ca_cert=__file__)
    with pytest.raises(ValueError, match="ca_cert='nope.pem'"):
        serving_client.ServingClient(tls=True, ca_cert="nope.pem")
    c = serving_client.ServingClient()
    with pytest.raises(ValueError, match="signature='classify'"):
        c.predict(["x"], signature="classify")
    with pytest.raises(ValueError, match="not one string"):
        c.predict("just one string")


# === mmoe query ===


def _query(argv):
    parser = argparse.ArgumentParser(prog="mmoe")
    serving_client.add_query_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["query", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.func(args, out=out, err=err), out.getvalue(), err.getvalue()


@PROTOCOLS
@pytest.mark.parametrize("signature", ["predict_text", "serving_default"])
def test_query_command(model, serve, protocol, signature):
    port, _ = serve(protocol)
    code, out, err = _query(
        [
            "lovely dress",
            "awful top",
            "--host=127.0.0.1",
            f"--protocol={protocol}",
            f"--{protocol}-port={port}",
            f"--signature={signature}",
            f"--text-column={TEXT_COLUMN}",
        ]
    )
    assert (code, err) == (0, "")
    results = json.loads(out)
    assert [r.pop("text") for r in results] == ["lovely dress", "awful top"]
    _assert_rows_equal(results, _direct(model, ["lovely dress", "awful top"]))


def test_query_command_exit_code_2_names_the_problem(serve):
    port = _free_port()
    code, out, err = _query(
        ["x", "--host=127.0.0.1", f"--rest-port={port}", "--retries=0"]
    )
    assert code == 2 and not out
    assert err.startswith(
        f"mmoe: REST 127.0.0.1:{port} model 'mmoe': UNAVAILABLE after 1 "
        "attempt: "
    )
    assert len(err.splitlines()) == 1

    port, _ = serve("grpc")
    code, out, err = _query(
        [
            "x",
            "--host=127.0.0.1",
            "--protocol=grpc",
            f"--grpc-port={port}",
            "--model-name=tiny",
        ]
    )
    assert code == 2 and not out
    assert err == (
        f"mmoe: GRPC 127.0.0.1:{port} model 'tiny': NOT_FOUND: Servable not "
        "found for request: Latest(tiny)\n"
    )

    code, out, err = _query(["x", "--retries=-1"])
    assert code == 2 and err == (
        "mmoe: `retries` expected an integer >= 0. Received: retries=-1\n"
    )
