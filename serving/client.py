"""A client for the model served by TF Serving, over REST or gRPC.

Both transports send what TF Serving's APIs document and give back the same
thing: per text, per task, the predicted label and the class probabilities.

- REST: `POST http://HOST:8501/v1/models/NAME[/versions/N]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format). For
  `predict_text` an instance is the raw text; for `serving_default` it is a
  serialized tf.Example as `{"b64": "<base64>"}`, TF Serving's encoding of
  binary strings. The reply is `{"predictions": [{output: value}, ...]}`.
- gRPC: `tensorflow.serving.PredictionService/Predict` on HOST:8500 with a
  `PredictRequest` (model spec, signature name, a string tensor input).

Retries: a server that is not up yet or is overloaded (gRPC `UNAVAILABLE`,
HTTP 502/503/504, connection refused or reset) is retried with exponential
backoff, `retries` times. Any other error (gRPC `INVALID_ARGUMENT`, HTTP
4xx, ...) is raised at once as a `ServingError` naming the server, the
model, the status and the server's message.

Example:
>>> client = ServingClient("localhost", protocol="grpc")
>>> client.predict(["Lovely dress, runs small."])[0]["rating"]["label"]
'5'
"""

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

PROTOCOLS = ("rest", "grpc")
SIGNATURES = ("predict_text", "serving_default")
# Inputs of the exported signatures (serving/export.py).
_INPUT_NAMES = {"predict_text": "text", "serving_default": "examples"}
_RETRY_HTTP = (502, 503, 504)
_PROBABILITIES = "_probabilities"
_LABEL = "_label"


class ServingError(RuntimeError):
    """A request the server refused or could not be reached for."""


def _as_bytes(text) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def text_example(column: str, text) -> bytes:
    """A serialized tf.Example holding `text` in the bytes feature `column`,
    as `serving_default` parses it."""
    from tensorflow.core.example import example_pb2, feature_pb2

    feature = feature_pb2.Feature(
        bytes_list=feature_pb2.BytesList(value=[_as_bytes(text)])
    )
    return example_pb2.Example(
        features=feature_pb2.Features(feature={column: feature})
    ).SerializeToString()


def rows_from_outputs(outputs: dict, n: int) -> list[dict]:
    """`{T_probabilities: (n, C), T_label: (n,)}` -> per row
    `{T: {"label": str, "probabilities": [float] * C}}`."""
    tasks = sorted(
        k[: -len(_PROBABILITIES)] for k in outputs if k.endswith(_PROBABILITIES)
    )
    rows = [{} for _ in range(n)]
    for task in tasks:
        probabilities = outputs[task + _PROBABILITIES]
        labels = outputs[task + _LABEL]
        if len(probabilities) != n or len(labels) != n:
            raise ServingError(
                f"The server returned {len(probabilities)} rows of "
                f"{task + _PROBABILITIES!r} for {n} inputs."
            )
        for row, p, label in zip(rows, probabilities, labels, strict=True):
            if isinstance(label, bytes):
                label = label.decode("utf-8", errors="replace")
            row[task] = {
                "label": label,
                "probabilities": [float(v) for v in p],
            }
    return rows


class ServingClient:
    """Predictions from a TF Serving model server.

    Args:
        host: str. Server host name or address.
        model_name: str. The model's name in the server's models.config.
        protocol: `"rest"` or `"grpc"`.
        rest_port: int. REST API port (TF Serving's `--rest_api_port`).
        grpc_port: int. gRPC port (TF Serving's `--port`).
        version: optional int. A model version; the newest when None.
        timeout: float. Seconds per attempt.
        retries: int >= 0. Further attempts after an UNAVAILABLE error.
        backoff: float. Seconds before the first retry, doubled each time.
    """

    def __init__(
        self,
        host: str = "localhost",
        model_name: str = "mmoe",
        protocol: str = "rest",
        rest_port: int = 8501,
        grpc_port: int = 8500,
        version: int | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"`protocol` expected one of {PROTOCOLS}. "
                f"Received: protocol={protocol!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise ValueError(
                f"`retries` expected an integer >= 0. Received: {retries!r}"
            )
        if retries < 0:
            raise ValueError(
                f"`retries` expected an integer >= 0. Received: {retries!r}"
            )
        if not timeout or timeout <= 0:
            raise ValueError(
                f"`timeout` expected a positive number. Received: {timeout!r}"
            )
        self.host = host
        self.model_name = model_name
        self.protocol = protocol
        self.rest_port = rest_port
        self.grpc_port = grpc_port
        self.version = version
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self._stub = None

    # === Public API ===

    def predict(
        self,
        texts: Sequence,
        signature: str = "predict_text",
        text_column: str = "Title",
    ) -> list[dict]:
        """Per text: `{task: {"label": str, "probabilities": [float]}}`.

        Args:
            texts: list of str (or UTF-8 bytes).
            signature: `"predict_text"` (raw text) or `"serving_default"`
                (each text sent as a tf.Example with it in `text_column`).
            text_column: the text column of the model's data, for
                `serving_default`.
        """
        if signature not in SIGNATURES:
            raise ValueError(
                f"`signature` expected one of {SIGNATURES}. "
                f"Received: signature={signature!r}"
            )
        if isinstance(texts, (str, bytes)):
            raise ValueError(
                "`texts` expected a list of texts, not one string. Received: "
                f"{texts[:50]!r}"
            )
        texts = list(texts)
        if not texts:
            return []
        if signature == "serving_default":
            values = [text_example(text_column, t) for t in texts]
        else:
            values = [_as_bytes(t) for t in texts]
        send = self._rest if self.protocol == "rest" else self._grpc
        outputs = self._with_retries(lambda: send(signature, values))
        return rows_from_outputs(outputs, len(texts))

    @property
    def target(self) -> str:
        port = self.rest_port if self.protocol == "rest" else self.grpc_port
        return f"{self.host}:{port}"

    # === Retries ===

    def _with_retries(self, attempt):
        delay = self.backoff
        for tries_left in range(self.retries, -1, -1):
            try:
                return attempt()
            except _Unavailable as e:
                if not tries_left:
                    raise ServingError(
                        f"{self.protocol.upper()} {self.target} model "
                        f"{self.model_name!r}: UNAVAILABLE after "
                        f"{self.retries + 1} attempts: {e}"
                    ) from None
                time.sleep(delay)
                delay *= 2

    def _error(self, status, message) -> ServingError:
        return ServingError(
            f"{self.protocol.upper()} {self.target} model "
            f"{self.model_name!r}: {status}: {message}"
        )

    # === REST ===

    def _url(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return (
            f"http://{self.host}:{self.rest_port}/v1/models/"
            f"{self.model_name}{version}:predict"
        )

    def _rest(self, signature, values) -> dict:
        if signature == "serving_default":
            instances = [{"b64": base64.b64encode(v).decode()} for v in values]
        else:
            # JSON carries text; bytes that are not UTF-8 go as b64.
            instances = []
            for v in values:
                try:
                    instances.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    instances.append({"b64": base64.b64encode(v).decode()})
        body = json.dumps(
            {"signature_name": signature, "instances": instances}
        ).encode()
        request = urllib.request.Request(
            self._url(),
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                reply = json.loads(r.read())
        except urllib.error.HTTPError as e:
            message = _rest_error_message(e)
            if e.code in _RETRY_HTTP:
                raise _Unavailable(f"HTTP {e.code}: {message}") from None
            raise self._error(f"HTTP {e.code}", message) from None
        except (ConnectionError, TimeoutError) as e:
            raise _Unavailable(str(e) or type(e).__name__) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (ConnectionError, TimeoutError, OSError)):
                raise _Unavailable(str(reason)) from None
            raise self._error("URL error", reason) from None
        if "predictions" not in reply:
            raise self._error("bad reply", f"no 'predictions' in {reply!r}")
        return _columns(reply["predictions"])

    # === gRPC ===

    def _grpc(self, signature, values) -> dict:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        if self._stub is None:
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            channel = grpc.insecure_channel(self.target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
                channel
            )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version:
            request.model_spec.version.value = self.version
        request.inputs[_INPUT_NAMES.get(signature, "text")].CopyFrom(
            tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])
        )
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise _Unavailable(f"{code.name}: {e.details()}") from None
            raise self._error(code.name, e.details()) from None
        return {
            name: tf.make_ndarray(tensor).tolist()
            for name, tensor in response.outputs.items()
        }


class _Unavailable(Exception):
    """A failure worth retrying."""


def _rest_error_message(error) -> str:
    try:
        return json.loads(error.read()).get("error", "") or error.reason
    except (ValueError, AttributeError, OSError):
        return str(error.reason)


def _columns(predictions: list) -> dict:
    """Row format `[{output: value}, ...]` -> `{output: [value, ...]}`."""
    columns = {}
    for row in predictions:
        for name, value in row.items():
            if isinstance(value, dict) and "b64" in value:
                value = base64.b64decode(value["b64"])
            columns.setdefault(name, []).append(value)
    return columns


# === The `mmoe query` command ===


def add_query_command(subparsers) -> None:
    """Registers `mmoe query TEXT ...` on an argparse subparsers object."""
    query = subparsers.add_parser(
        "query", help="ask a running TF Serving for predictions"
    )
    query.add_argument("texts", nargs="+")
    query.add_argument("--host", default="localhost")
    query.add_argument("--protocol", choices=PROTOCOLS, default="rest")
    query.add_argument("--rest-port", type=int, default=8501)
    query.add_argument("--grpc-port", type=int, default=8500)
    query.add_argument("--model-name", default="mmoe")
    query.add_argument("--model-version", type=int)
    query.add_argument("--signature", choices=SIGNATURES, default=SIGNATURES[0])
    query.add_argument(
        "--text-column",
        default="Title",
        help="the text column of the tf.Examples (serving_default)",
    )
    query.add_argument("--timeout", type=float, default=10.0)
    query.add_argument("--retries", type=int, default=3)
    query.set_defaults(func=cmd_query)


def cmd_query(args, out=None, err=None) -> int:
    import sys

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        client = ServingClient(
            host=args.host,
            model_name=args.model_name,
            protocol=args.protocol,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
            version=args.model_version,
            timeout=args.timeout,
            retries=args.retries,
        )
        rows = client.predict(
            args.texts, signature=args.signature, text_column=args.text_column
        )
    except (ServingError, ValueError) as e:
        print(f"mmoe: {e}".splitlines()[0], file=err)
        return 2
    results = [
        {"text": t, **row} for t, row in zip(args.texts, rows, strict=True)
    ]
    print(json.dumps(results, indent=2), file=out)
    return 0
