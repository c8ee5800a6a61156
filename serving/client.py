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

Batches: with `--enable_batching`, TF Serving refuses a request of more rows
than `max_batch_size` (INVALID_ARGUMENT "Task size N is larger than maximum
input batch size"), so the client sends at most `batch_size` texts per
request (256, as `deploy/batching_parameters.txt`) and joins the replies.

Retries: a server that is not up yet or is overloaded (gRPC `UNAVAILABLE`,
HTTP 502/503/504, connection refused or reset) is retried with exponential
backoff, `retries` times. Any other error (gRPC `INVALID_ARGUMENT`, HTTP
4xx, a request that outlives `timeout`, ...) is raised at once as a
`ServingError` naming the server, the model, the status and the server's
message.

Example:
>>> client = ServingClient("localhost", protocol="grpc")
>>> client.predict(["Lovely dress, runs small."])[0]["rating"]["label"]
'5'
"""

import argparse
import base64
import http.client
import json
import os
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence

from serving import features

PROTOCOLS = ("rest", "grpc")
# The signatures that serve predictions.
SIGNATURES = (features.PREDICT_TEXT, features.SERVING_DEFAULT)
# TF Serving answers 503 for UNAVAILABLE; proxies in front say 502 or 504.
_RETRY_HTTP = (502, 503, 504)


class ServingError(RuntimeError):
    """A request the server refused, or could not be reached for.

    Attributes:
        target: str. `host:port` asked.
        model_name: str. The model asked for.
        status: str. gRPC status name (`"INVALID_ARGUMENT"`) or
            `"HTTP 400"`; `"UNAVAILABLE"` when nobody answered.
        message: str. The server's message, or what went wrong.
    """

    def __init__(self, protocol, target, model_name, status, message):
        self.protocol = protocol
        self.target = target
        self.model_name = model_name
        self.status = status
        self.message = str(message)
        super().__init__(
            f"{protocol.upper()} {target} model {model_name!r}: {status}: "
            f"{self.message}"
        )


class _Retryable(Exception):
    """A failure worth another attempt: the server is not (yet) there."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = str(message)


def _check_integer(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(
            f"`{name}` expected an integer >= {least}. "
            f"Received: {name}={value!r}"
        )


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
    tasks = features.output_tasks(outputs)
    if not tasks:
        raise ValueError(
            f"No `{features.probabilities_key('T')}` output in the reply; its "
            f"outputs: {sorted(outputs)}"
        )
    rows = [{} for _ in range(n)]
    for task in tasks:
        probabilities_key = features.probabilities_key(task)
        label_key = features.predicted_label_key(task)
        probabilities = _as_list(outputs[probabilities_key])
        labels = _as_list(outputs.get(label_key, []))
        if not (
            isinstance(probabilities, list)
            and isinstance(labels, list)
            and len(probabilities) == len(labels) == n
        ):
            raise ValueError(
                f"The reply's {probabilities_key!r} and {label_key!r} are "
                f"not {n} rows each"
            )
        for row, p, label in zip(rows, probabilities, labels, strict=True):
            if isinstance(label, bytes):
                label = label.decode("utf-8", errors="replace")
            if not (
                isinstance(label, str)
                and isinstance(p, list)
                and p
                and all(_is_number(v) for v in p)
            ):
                raise ValueError(
                    f"The reply's {task!r} row is not a label and a list of "
                    f"probabilities: {label!r}, {str(p)[:100]}"
                )
            row[task] = {
                "label": label,
                "probabilities": [float(v) for v in p],
            }
    return rows


def _as_list(value):
    """A numpy array (a signature's output) as nested lists."""
    return value.tolist() if hasattr(value, "tolist") else value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ServingClient:
    """Predictions from a TF Serving model server.

    Args:
        host: str. Server host name or address.
        model_name: str. The model's name in the server's models.config.
        protocol: `"rest"` or `"grpc"`.
        rest_port: int. REST API port (TF Serving's `--rest_api_port`).
        grpc_port: int. gRPC port (TF Serving's `--port`).
        version: optional int. A model version; the newest when None.
        timeout: float. Seconds per request, connecting and reading the
            whole reply included; a request that takes longer fails with
            `DEADLINE_EXCEEDED` and is not retried.
        retries: int >= 0. Further attempts after an UNAVAILABLE error.
        backoff: float. Seconds before the first retry, doubled each time.
        batch_size: int. Most texts per request: the server's
            `max_batch_size` when it batches.
        tls: bool. HTTPS and a TLS gRPC channel (e.g. through a TLS proxy
            in front of TF Serving), the server's certificate verified.
        ca_cert: optional str. A PEM file of the certificate authorities to
            trust with `tls`; the system's roots when None.

    Example:
    >>> with ServingClient("localhost", protocol="rest") as client:
    ...     rows = client.predict(["Runs small.", ""])
    >>> sorted(rows[0]["department_name"])
    ['label', 'probabilities']
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
        batch_size: int = 256,
        tls: bool = False,
        ca_cert: str | None = None,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"`protocol` expected one of {PROTOCOLS}. "
                f"Received: protocol={protocol!r}"
            )
        _check_integer("retries", retries, least=0)
        _check_integer("batch_size", batch_size, least=1)
        if isinstance(timeout, bool) or not (
            isinstance(timeout, (int, float)) and timeout > 0
        ):
            raise ValueError(
                "`timeout` expected a positive number of seconds. "
                f"Received: timeout={timeout!r}"
            )
        if isinstance(backoff, bool) or not (
            isinstance(backoff, (int, float)) and backoff >= 0
        ):
            raise ValueError(
                "`backoff` expected a number of seconds >= 0. "
                f"Received: backoff={backoff!r}"
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
        if ca_cert is not None and not tls:
            raise ValueError(
                "`ca_cert` is used with `tls=True` only. "
                f"Received: ca_cert={ca_cert!r}, tls={tls!r}"
            )
        if ca_cert is not None and not os.path.isfile(ca_cert):
            raise ValueError(
                f"`ca_cert` file not found. Received: ca_cert={ca_cert!r}"
            )
        self.batch_size = batch_size
        self.tls = bool(tls)
        self.ca_cert = ca_cert
        self._channel = None
        self._stub = None

    # === Public API ===

    def predict(
        self,
        texts: Sequence,
        signature: str = features.PREDICT_TEXT,
        text_column: str = "Title",
    ) -> list[dict]:
        """Per text: `{task: {"label": str, "probabilities": [float]}}`.

        `probabilities[i]` is the probability of class `i`, line `i` of
        the model's `assets/T_label_vocab`.

        Args:
            texts: list of str (or bytes, sent as they are, UTF-8 or not).
            signature: `"predict_text"` (raw text) or `"serving_default"`
                (each text sent as a tf.Example with it in `text_column`).
            text_column: the text column of the model's data, for
                `serving_default`.

        Raises:
            ServingError: the server refused a request or could not be
                reached, after the retries.
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
        if signature == features.SERVING_DEFAULT:
            values = [text_example(text_column, t) for t in texts]
        else:
            values = [_as_bytes(t) for t in texts]
        send = self._rest if self.protocol == "rest" else self._grpc
        rows = []
        for start in range(0, len(values), self.batch_size):
            chunk = values[start : start + self.batch_size]
            outputs = self._with_retries(lambda c=chunk: send(signature, c))
            try:
                rows += rows_from_outputs(outputs, len(chunk))
            except ValueError as e:
                raise self._error("bad reply", e) from None
        return rows

    @property
    def target(self) -> str:
        port = self.rest_port if self.protocol == "rest" else self.grpc_port
        return f"{self.host}:{port}"

    def close(self) -> None:
        """Closes the gRPC channel, if one was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # === Retries ===

    def _with_retries(self, attempt):
        delay = self.backoff
        for tries_left in range(self.retries, -1, -1):
            try:
                return attempt()
            except _Retryable as e:
                if not tries_left:
                    attempts = self.retries + 1
                    raise self._error(
                        f"{e.status} after {attempts} "
                        f"attempt{'s' if attempts > 1 else ''}",
                        e.message,
                    ) from None
            # Jitter, so that clients turned away together do not all come
            # back at the same moment.
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay *= 2

    def _error(self, status, message) -> ServingError:
        return ServingError(
            self.protocol, self.target, self.model_name, status, message
        )

    # === REST ===

    def _path(self) -> str:
        version = (
            f"/versions/{self.version}" if self.version is not None else ""
        )
        return f"/v1/models/{self.model_name}{version}:predict"

    def _rest(self, signature, values) -> dict:
        if signature == features.SERVING_DEFAULT:
            instances = [_b64(v) for v in values]
        else:
            # JSON carries text; bytes that are not UTF-8 go as b64, which
            # TF Serving accepts for any string input.
            instances = []
            for v in values:
                try:
                    instances.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    instances.append(_b64(v))
        body = json.dumps(
            {"signature_name": signature, "instances": instances}
        ).encode()
        status, data = self._post(body)
        if status != 200:
            message = _rest_error_message(data, status)
            if status in _RETRY_HTTP:
                raise _Retryable(f"HTTP {status}", message)
            raise self._error(f"HTTP {status}", message)
        try:
            reply = json.loads(data)
        except ValueError as e:
            raise self._error("bad reply", f"not JSON: {e}") from None
        if not isinstance(reply, dict) or "predictions" not in reply:
            raise self._error(
                "bad reply", f"no 'predictions' in {str(reply)[:200]}"
            )
        try:
            return _columns(reply["predictions"])
        except ValueError as e:
            raise self._error("bad reply", e) from None

    def _post(self, body: bytes) -> tuple[int, bytes]:
        """POSTs `body`; returns the HTTP status and the whole reply body,
        all within `timeout` seconds (a watchdog closes the connection at
        the deadline, however slowly the server sends)."""
        if self.tls:
            connection = http.client.HTTPSConnection(
                self.host,
                self.rest_port,
                timeout=self.timeout,
                context=self._ssl_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                self.host, self.rest_port, timeout=self.timeout
            )
        expired = threading.Event()

        def expire():
            expired.set()
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(self.timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(
                "POST",
                self._path(),
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            data = response.read()
            if expired.is_set():
                raise TimeoutError
            return response.status, data
        except (OSError, http.client.HTTPException) as e:
            if expired.is_set() or isinstance(e, TimeoutError):
                raise self._error(
                    "DEADLINE_EXCEEDED", f"no reply within {self.timeout} s"
                ) from None
            if isinstance(e, ssl.SSLError):
                raise self._error("TLS error", e) from None
            if isinstance(e, OSError):
                # Connection refused or reset: the server is not up (yet).
                raise _Retryable("UNAVAILABLE", e) from None
            raise self._error("bad reply", f"{type(e).__name__}: {e}") from None
        finally:
            watchdog.cancel()
            connection.close()

    def _ssl_context(self) -> ssl.SSLContext:
        """Verifies the server against `ca_cert` (a PEM file), else the
        system's trusted roots."""
        return ssl.create_default_context(cafile=self.ca_cert)

    # === gRPC ===

    def _grpc(self, signature, values) -> dict:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        if self._stub is None:
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            if self.tls:
                root = None
                if self.ca_cert:
                    with open(self.ca_cert, "rb") as f:
                        root = f.read()
                self._channel = grpc.secure_channel(
                    self.target,
                    grpc.ssl_channel_credentials(root_certificates=root),
                )
            else:
                self._channel = grpc.insecure_channel(self.target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
                self._channel
            )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        request.inputs[features.SIGNATURE_INPUTS[signature]].CopyFrom(
            tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])
        )
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise _Retryable(code.name, e.details()) from None
            raise self._error(code.name, e.details()) from None
        return {
            name: tf.make_ndarray(tensor).tolist()
            for name, tensor in response.outputs.items()
        }


def _b64(value: bytes) -> dict:
    return {"b64": base64.b64encode(value).decode("ascii")}


def _rest_error_message(body: bytes, status: int) -> str:
    """TF Serving's `{"error": message}` body, else the HTTP status."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP status {status}"


def _columns(predictions) -> dict:
    """Row format `[{output: value}, ...]` -> `{output: [value, ...]}`."""
    if not isinstance(predictions, list):
        raise ValueError(
            f"expected a list of predictions, got {str(predictions)[:100]}"
        )
    columns = {}
    for row in predictions:
        if not isinstance(row, dict):
            # A model of one output gets bare values; ours has several.
            raise ValueError(f"expected rows keyed by output, got {row!r}")
        for name, value in row.items():
            if isinstance(value, dict) and "b64" in value:
                value = base64.b64decode(value["b64"])
            columns.setdefault(name, []).append(value)
    return columns


# === The `mmoe query` command ===


def add_query_command(subparsers) -> argparse.ArgumentParser:
    """Registers `mmoe query TEXT ...` on an argparse subparsers object."""
    query = subparsers.add_parser(
        "query",
        help="ask a running TF Serving for predictions",
        description="Sends texts to TF Serving and prints, per text and "
        "task, the label and the class probabilities as JSON. Exit code 2 "
        "when the server refuses or cannot be reached.",
    )
    query.add_argument("texts", nargs="+", metavar="TEXT")
    query.add_argument("--host", default="localhost")
    query.add_argument("--protocol", choices=PROTOCOLS, default="rest")
    query.add_argument("--rest-port", type=int, default=8501)
    query.add_argument("--grpc-port", type=int, default=8500)
    query.add_argument("--model-name", default="mmoe")
    query.add_argument(
        "--model-version", type=int, help="a version; the newest if not set"
    )
    query.add_argument("--signature", choices=SIGNATURES, default=SIGNATURES[0])
    query.add_argument(
        "--text-column",
        default="Title",
        help="the text column of the tf.Examples (serving_default)",
    )
    query.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds per request, the whole reply included",
    )
    query.add_argument(
        "--tls",
        action="store_true",
        help="HTTPS / TLS gRPC, e.g. through a TLS proxy",
    )
    query.add_argument(
        "--ca-cert",
        metavar="PEM",
        help="certificate authorities to trust with --tls (default: the "
        "system's)",
    )
    query.add_argument(
        "--retries",
        type=int,
        default=3,
        help="further attempts while the server is UNAVAILABLE",
    )
    query.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="most texts per request (the server's max_batch_size)",
    )
    query.set_defaults(func=cmd_query)
    return query


def cmd_query(args, out=None, err=None) -> int:
    """Runs `mmoe query`: JSON on `out`, or one `mmoe: ...` line on `err`."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        with ServingClient(
            host=args.host,
            model_name=args.model_name,
            protocol=args.protocol,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
            version=args.model_version,
            timeout=args.timeout,
            retries=args.retries,
            batch_size=args.batch_size,
            tls=args.tls,
            ca_cert=args.ca_cert,
        ) as client:
            rows = client.predict(
                args.texts,
                signature=args.signature,
                text_column=args.text_column,
            )
    except (ServingError, ValueError) as e:
        # One line: a server message may hold a stack of them.
        print(" ".join(f"mmoe: {e}".split()), file=err)
        return features.EXIT_BAD_INPUT
    results = [
        {"text": t, **row} for t, row in zip(args.texts, rows, strict=True)
    ]
    print(json.dumps(results, indent=2), file=out)
    return 0
