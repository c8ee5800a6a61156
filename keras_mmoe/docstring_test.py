"""Runs every docstring `>>>` example of keras_mmoe, so they cannot rot.

Each example sees its own module's names plus `np`, `keras` and the
package's public names, on whichever Keras backend the tests run.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_mmoe

MODULES = sorted(
    info.name
    for info in pkgutil.iter_modules(
        keras_mmoe.__path__, keras_mmoe.__name__ + "."
    )
    if not info.name.endswith("_test")
)


def _examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    globs = {
        **{name: getattr(keras_mmoe, name) for name in keras_mmoe.__all__},
        **vars(module),
        "np": np,
        "keras": keras,
    }
    return [
        test
        for test in finder.find(module, module_name, globs=globs)
        if test.examples and test.name.startswith(module_name)
    ]


EXAMPLES = [test for name in MODULES for test in _examples(name)]


def test_the_examples_are_found():
    names = {test.name.rsplit(".", 1)[-1] for test in EXAMPLES}
    assert {"MMoE", "PLE", "MultiTaskModel", "GateDiagnostics"} <= names


@pytest.mark.parametrize("test", EXAMPLES, ids=lambda test: test.name)
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Examples that write files write here.
    keras.utils.set_random_seed(0)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    output = []
    runner.run(test, out=output.append)
    failures = runner.summarize(verbose=False).failed
    assert failures == 0, "".join(output)
