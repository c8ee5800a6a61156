"""Runs a function in a process of its own, and that process's peak memory.

The processes are forked from a server that imports the cost benchmarks
once, before any fork: TensorFlow's slow import is paid once, and no
TensorFlow runtime exists yet to be copied into the children. Each child's
peak resident memory is its own.
"""

import multiprocessing
import os
import resource
import sys
import traceback

# What the fork server imports: the cost benchmarks' runner, and with it
# every part, TensorFlow, Keras and keras_mmoe.
PRELOAD = ["benchmarks.cost"]


def run_forked(fn, *args):
    """`fn(*args)` in a process of its own, forked from the server; returns
    its value or raises its error."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_forked, args=(send, fn, args))
    process.start()
    send.close()  # Only the child's end is open: EOF if it dies.
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "error", "the process died without a result"
    process.join()
    if status == "error":
        raise RuntimeError(
            f"{fn.__name__} failed in its process (exit code "
            f"{process.exitcode}):\n{value}"
        )
    return value


def start_forkserver():
    """Starts the fork server (its imports) and waits until it is ready."""
    run_forked(os.getpid)


def _forked(send, fn, args):
    try:
        send.send(("ok", fn(*args)))
    except BaseException:
        send.send(("error", traceback.format_exc()))
    finally:
        send.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
