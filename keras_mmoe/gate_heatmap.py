"""Gate heatmap: the mean gate weight of every task on every expert.

`render_gate_heatmap` draws it with matplotlib (an optional dependency,
imported when drawing) and returns the pixels; `plot_gate_heatmap` writes
them to a PNG file.
"""

import contextlib
import io
import os
import uuid
from collections.abc import Mapping

import numpy as np

from keras_mmoe.gate_weights import gate_statistics


def _mean_weight_rows(gate_weights_or_stats) -> tuple[list, list]:
    """Task names and mean-weight vectors from weights or statistics."""
    if not isinstance(gate_weights_or_stats, Mapping):
        raise ValueError(
            "`gate_weights_or_stats` expected a mapping (gate weights by task, "
            "or `gate_statistics` output). Received type "
            f"{type(gate_weights_or_stats)}"
        )
    stats = gate_weights_or_stats
    if not isinstance(stats.get("tasks"), Mapping):
        stats = gate_statistics(stats)
    if not stats["tasks"]:
        raise ValueError("The statistics hold no tasks: `tasks` is empty.")
    names, rows = [], []
    for task, task_stats in stats["tasks"].items():
        row = np.asarray(task_stats["mean_weights"], dtype=np.float64)
        if row.ndim != 1 or row.size == 0:
            raise ValueError(
                f"`mean_weights` of task {task!r} must be a non-empty 1-D "
                f"list. Received shape {row.shape}"
            )
        names.append(str(task))
        rows.append(row)
    return names, rows


def render_gate_heatmap(
    gate_weights_or_stats, title: str | None = None
) -> np.ndarray:
    """Draws the tasks x experts heatmap of the mean gate weights.

    Rows are tasks, columns expert indices, and each cell is annotated with
    its value. Tasks with fewer experts (CGC/PLE gates see their own plus
    the shared experts) leave their extra cells blank.

    Args:
        gate_weights_or_stats: gate weights by task (as for
            `gate_statistics`) or the output of `gate_statistics` (or an
            entry of `GateDiagnostics.history`).
        title: optional str. Figure title.

    Returns:
        The image, a uint8 numpy array `(height, width, 4)` (RGBA).

    Example:
    >>> image = render_gate_heatmap({"a": np.full((3, 4), 0.25)})
    >>> image.dtype, image.shape[-1]
    (dtype('uint8'), 4)
    """
    names, rows = _mean_weight_rows(gate_weights_or_stats)
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plotting gate heatmaps needs matplotlib: pip install matplotlib"
        ) from e

    num_tasks = len(rows)
    num_columns = max(len(r) for r in rows)
    # Ragged tasks (CGC/PLE) leave NaN cells, drawn blank.
    grid = np.full((num_tasks, num_columns), np.nan)
    for i, row in enumerate(rows):
        grid[i, : len(row)] = row
    vmax = max(float(np.nanmax(grid)), 1e-12)

    # A bare Figure on the Agg canvas: no pyplot global state or backend.
    fig = Figure(
        figsize=(
            max(4.0, 0.6 * num_columns + 2.5),
            max(2.2, 0.5 * num_tasks + 1.6),
        ),
        dpi=100,
        layout="constrained",
    )
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    fontsize = 9 if num_columns <= 12 else 6
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if value < 0.6 * vmax else "black",
            )
    ax.set_xticks(range(num_columns), [str(j) for j in range(num_columns)])
    ax.set_yticks(range(num_tasks), names)
    ax.set_xlabel("expert")
    ax.set_ylabel("task")
    ax.set_title(title or "Mean gate weight per expert")
    fig.colorbar(image, ax=ax, label="mean gate weight")
    canvas.draw()
    return np.array(canvas.buffer_rgba())  # (height, width, 4)


def _png(image: np.ndarray) -> bytes:
    """An RGBA image array encoded as PNG (by matplotlib, through Pillow)."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, format="png")
    return buffer.getvalue()


def _atomic_write(path: str, data: bytes) -> None:
    """Writes beside `path` then renames, so readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
    )
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def plot_gate_heatmap(
    gate_weights_or_stats, path, title: str | None = None
) -> str:
    """Writes a tasks x experts heatmap PNG of the mean gate weights.

    The image is `render_gate_heatmap`'s, written to a temporary name beside
    `path` and renamed, so the file is never seen half-written.

    Args:
        gate_weights_or_stats: gate weights by task (as for
            `gate_statistics`) or the output of `gate_statistics` (or an
            entry of `GateDiagnostics.history`).
        path: str or path-like. Destination PNG; parent folders are made.
        title: optional str. Figure title.

    Returns:
        The path written, as a str.

    Example:
    >>> plot_gate_heatmap({"a": np.full((3, 4), 0.25)}, "/tmp/gates.png")
    '/tmp/gates.png'
    """
    path = os.fspath(path)
    _atomic_write(path, _png(render_gate_heatmap(gate_weights_or_stats, title)))
    return path
