"""Plain-numpy references of the layers' equations and shared test checks.

The references loop over experts one by one, the way the papers write the
equations, so the fused layers are checked against an independent reading.
"""

import numpy as np


def relu(x):
    return np.maximum(x, 0.0)


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def weights_of(layer):
    """{weight path relative to the layer: numpy value}."""
    prefix = layer.path + "/"
    return {
        w.path.removeprefix(prefix): np.asarray(w.numpy())
        for w in layer.weights
    }


def randomize(layer, seed=0):
    """Sets every weight of a built layer to distinct random values."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights]
    )


def experts(w, x, prefix="experts/", activation=relu):
    """Per-expert loop. x: (batch, in), or a list of per-group inputs.

    Returns a list of (batch, units) per expert.
    """
    # The first layer in blocks b = 0, 1, ...: kernel_0_<b> (parts, in,
    # per_part, units0), or (in, per_part * units0) for one part; bias_0_<b>
    # (parts * per_part, units0). A part is a group, or a column block that
    # reads the one input.
    b0 = _numbered(w, f"{prefix}bias_0_")
    k0 = np.concatenate(
        [
            k.reshape(-1, k.shape[-2], *b.shape) if k.ndim == 2 else k
            for k, b in zip(_numbered(w, f"{prefix}kernel_0_"), b0, strict=True)
        ]
    )
    b0 = np.concatenate(b0)
    num_parts, _, per_part, _ = k0.shape
    depth = 1 + sum(
        1
        for name in w
        if name.startswith(f"{prefix}kernel_")
        and not name.startswith(f"{prefix}kernel_0_")
    )
    inputs = x if isinstance(x, list) else [x] * num_parts
    out = []
    for g in range(num_parts):
        for j in range(per_part):
            e = g * per_part + j
            h = activation(inputs[g] @ k0[g, :, j] + b0[e])
            for i in range(1, depth):
                h = activation(
                    h @ w[f"{prefix}kernel_{i}"][e] + w[f"{prefix}bias_{i}"][e]
                )
            out.append(h)
    return out


def _numbered(w, stem):
    """w[stem + "0"], w[stem + "1"], ... as a list."""
    values = []
    while f"{stem}{len(values)}" in w:
        values.append(w[f"{stem}{len(values)}"])
    return values


def gate(w, x, prefix, temperature=1.0):
    return softmax(
        (x @ w[f"{prefix}kernel"] + w[f"{prefix}bias"]) / temperature
    )


def mix(g, expert_outputs):
    return sum(g[:, i : i + 1] * h for i, h in enumerate(expert_outputs))


def mmoe(w, x, num_tasks):
    hs = experts(w, x)
    return [mix(gate(w, x, f"gate_{k}/"), hs) for k in range(num_tasks)]


def cgc(w, x, num_tasks, shared_output=False, prefix=""):
    task_x, shared_x = (
        (x[:-1], x[-1])
        if isinstance(x, list)
        else (
            [x] * num_tasks,
            x,
        )
    )
    task_h = experts(w, task_x, f"{prefix}task_experts/")
    shared_h = experts(w, shared_x, f"{prefix}shared_experts/")
    per_task = len(task_h) // num_tasks
    out = [
        mix(
            gate(w, task_x[k], f"{prefix}gate_{k}/"),
            task_h[k * per_task : (k + 1) * per_task] + shared_h,
        )
        for k in range(num_tasks)
    ]
    if shared_output:
        out.append(
            mix(gate(w, shared_x, f"{prefix}shared_gate/"), task_h + shared_h)
        )
    return out


def ple(w, x, num_tasks, num_levels):
    h = x
    for level in range(num_levels):
        h = cgc(
            w,
            h,
            num_tasks,
            shared_output=level < num_levels - 1,
            prefix=f"level_{level}/",
        )
    return h


def layer_norm(x, gamma, beta, epsilon=1e-3):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def transformer_block(w, x, num_heads, prefix=""):
    """Post-norm encoder block over the tokens of one text, head by head.

    x: (tokens, width), padding left out. Returns (tokens, width).
    """
    heads = []
    for h in range(num_heads):
        q, k, v = (
            x @ w[f"{prefix}attention/{n}/kernel"][:, h]
            + w[f"{prefix}attention/{n}/bias"][h]
            for n in ("query", "key", "value")
        )
        scores = softmax(q @ k.T / np.sqrt(q.shape[-1]))
        heads.append(scores @ v)  # (tokens, key_dim)
    attended = (
        np.einsum(
            "thk,hkd->td",
            np.stack(heads, 1),
            w[f"{prefix}attention/attention_output/kernel"],
        )
        + w[f"{prefix}attention/attention_output/bias"]
    )
    x = layer_norm(
        x + attended,
        w[f"{prefix}attention_norm/gamma"],
        w[f"{prefix}attention_norm/beta"],
    )
    hidden = relu(
        x @ w[f"{prefix}feedforward_hidden/kernel"]
        + w[f"{prefix}feedforward_hidden/bias"]
    )
    ff = (
        hidden @ w[f"{prefix}feedforward_output/kernel"]
        + w[f"{prefix}feedforward_output/bias"]
    )
    return layer_norm(
        x + ff,
        w[f"{prefix}feedforward_norm/gamma"],
        w[f"{prefix}feedforward_norm/beta"],
    )


def assert_saves_and_loads(layer_factory, x, tmp_path):
    """Config round trip, and identical outputs after a `.keras` save/load."""
    import keras

    layer = layer_factory()
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert restored.get_config() == layer.get_config()

    inputs = keras.Input(x.shape[1:], dtype=str(x.dtype))
    outputs = layer_factory()(inputs)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    expected = keras.tree.flatten(model(x))
    actual = keras.tree.flatten(loaded(x))
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(e),
            rtol=1e-6,
        )


def value_and_gradient(fn, x):
    """`(fn(x), d fn(x) / dx)` as numpy, by the running backend's autodiff.

    `fn` maps a float32 tensor to a scalar tensor.
    """
    import keras

    x = np.asarray(x, dtype="float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(variable)
        grad = tape.gradient(value, variable)
    elif backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(x)
    elif backend == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        value = fn(tensor)
        value.backward()
        value, grad = value.detach(), tensor.grad
    else:
        raise NotImplementedError(f"No gradient for backend {backend!r}")
    return float(keras.ops.convert_to_numpy(value)), np.asarray(
        keras.ops.convert_to_numpy(grad)
    )
