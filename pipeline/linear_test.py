import numpy as np
import pytest
import scipy.sparse

from pipeline import linear


def _data(rng, n, noise):
    """Two informative columns among 30; labels flipped with `noise`."""
    x = rng.random((n, 30)) * (rng.random((n, 30)) < 0.2)
    y = (x[:, 0] > x[:, 1]).astype(int)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    return scipy.sparse.csr_matrix(x), y


def test_fit_task_keeps_the_c_with_the_best_validation_metric():
    rng = np.random.default_rng(0)
    x_train, y_train = _data(rng, 400, 0.1)
    x_val, y_val = _data(rng, 200, 0.0)
    fit = linear.fit_task(x_train, y_train, x_val, y_val, 2, c_grid=(1e-4, 10))
    assert fit.kernel.shape == (30, 1) and fit.bias.shape == (1,)
    # C = 1e-4 leaves almost nothing to rank by; C = 10 learns the rule.
    assert fit.c == 10
    logits = x_val @ fit.kernel + fit.bias
    assert fit.validation_metric == linear.main_metric(y_val, logits)
    np.testing.assert_allclose(fit.validation_logits, logits, rtol=1e-6)
    assert fit.validation_metric > 0.9


def test_fit_task_skips_missing_labels_and_fills_absent_classes():
    rng = np.random.default_rng(1)
    x_train, y_train = _data(rng, 300, 0.0)
    y_train = y_train * 2  # Classes 0 and 2 of 4; class 1 and 3 absent.
    y_train[:50] = -1
    x_val, y_val = _data(rng, 100, 0.0)
    fit = linear.fit_task(x_train, y_train, x_val, y_val * 2, 4, c_grid=(10,))
    assert fit.kernel.shape == (30, 4)
    np.testing.assert_array_equal(fit.kernel[:, [1, 3]], 0.0)
    assert (fit.bias[[1, 3]] < -20).all()
    # Two classes of several: their logits are +-half the binary logit.
    np.testing.assert_allclose(fit.kernel[:, 0], -fit.kernel[:, 2])
    assert fit.validation_metric > 0.9


def test_fit_task_stops_the_c_search_when_validation_stops_improving(
    monkeypatch,
):
    rng = np.random.default_rng(2)
    x_train, y_train = _data(rng, 300, 0.0)
    x_val, y_val = _data(rng, 100, 0.0)
    # The first call checks that validation can score at all; then one
    # score per C: best at the 2nd C, then two worse ones end the search.
    scores = iter([0.0, 0.5, 0.7, 0.6, 0.65, 0.99, 0.99])
    calls = []

    def scripted(labels, logits):
        calls.append(1)
        return next(scores)

    monkeypatch.setattr(linear, "main_metric", scripted)
    grid = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    fit = linear.fit_task(x_train, y_train, x_val, y_val, 2, c_grid=grid)
    assert fit.c == 0.1 and fit.validation_metric == 0.7
    assert len(calls) == 1 + 4


def test_fit_task_without_validation_labels_takes_the_default_c():
    rng = np.random.default_rng(3)
    x_train, y_train = _data(rng, 300, 0.0)
    x_val, _ = _data(rng, 100, 0.0)
    fit = linear.fit_task(x_train, y_train, x_val, np.full(100, -1), 2)
    assert fit.c == linear.DEFAULT_C and fit.validation_metric is None


def test_fit_task_needs_two_classes():
    x = scipy.sparse.csr_matrix(np.ones((4, 3)))
    with pytest.raises(ValueError, match="two classes"):
        linear.fit_task(x, np.array([1, 1, -1, 1]), x, np.zeros(4), 2)


def test_main_metric_is_auc_for_one_logit_and_accuracy_otherwise():
    labels = np.array([0, 1, 1, -1])
    assert linear.main_metric(labels, np.array([[0.1], [0.9], [0.2], [5]])) == 1
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 9.0]])
    assert linear.main_metric(labels, logits) == pytest.approx(2 / 3)
    assert linear.main_metric(np.array([1, 1]), np.ones((2, 1))) is None
    assert linear.main_metric(np.array([-1]), np.ones((1, 3))) is None


def test_choose_blend_takes_the_best_weight_and_ties_go_to_the_middle():
    labels = np.array([0, 1, 0, 1])
    right = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    wrong = -3 * right
    weight, score = linear.choose_blend(labels, right, wrong)
    # AUC is 1 while the right model outweighs the wrong one 3 to 1.
    assert weight == 0.2 and score == 1.0
    weight, _ = linear.choose_blend(labels, right, right)
    assert weight == 0.5


def test_probabilities_to_logits_inverts_sigmoid_and_softmax():
    logits = np.array([[-2.0], [0.5]])
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(linear.probabilities_to_logits(p), logits)
    z = np.array([[1.0, 2.0, 0.0]])
    p = np.exp(z) / np.exp(z).sum()
    back = linear.probabilities_to_logits(p)
    np.testing.assert_allclose(back - back[:, :1], z - z[:, :1], atol=1e-9)
