"""The Trainer's linear part: a TF-IDF logistic regression per task.

The model's `TfidfLinear` layer holds, for every task, a logistic
regression over the L2-normalized sublinear TF-IDF vector of a text's word
unigrams and bigrams. It is fit here with scikit-learn, its inverse
regularization `C` chosen per task on the validation split, and then blended
with the network's logits with a weight also chosen on validation
(`keras_mmoe.LogitBlend`): each task gets the network, the linear model, or
a mix, whichever its validation metric prefers.
"""

import dataclasses
import warnings

import numpy as np
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

# Inverse L2 strengths tried per task, ascending (each fit starts from the
# previous one's solution); the search stops after C_PATIENCE in a row that
# do not beat the best so far (weaker regularization costs more iterations).
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
C_PATIENCE = 2
# With no labelled validation row there is nothing to choose on.
DEFAULT_C = 1.0
# SAGA suits L2-normalized sparse rows and resumes well from the previous
# C's solution; lbfgs and newton-cg at their default tolerance often stop at
# once on such a warm start, repeating the smaller C's model
# (benchmarks/README.md, "Quality on data the defaults never saw").
SOLVER = {"solver": "saga", "tol": 1e-3, "max_iter": 1000}
# Weights of the linear model's logits tried per task; the network gets one
# minus it.
BLEND_GRID = tuple(i / 10 for i in range(11))


@dataclasses.dataclass
class LinearFit:
    """One task's fitted logistic regression, as the layer's columns."""

    kernel: np.ndarray  # (terms, output units)
    bias: np.ndarray  # (output units,)
    c: float
    validation_metric: float | None
    validation_logits: np.ndarray  # (validation rows, output units)


def main_metric(labels: np.ndarray, logits: np.ndarray) -> float | None:
    """AUC of a binary task's `(n, 1)` logits, else accuracy, on the
    labelled rows (label >= 0); None when the rows do not define it."""
    keep = labels >= 0
    y, z = labels[keep], np.asarray(logits)[keep]
    if z.shape[1] == 1:
        if len(np.unique(y)) < 2:
            return None
        return float(roc_auc_score(y, z[:, 0]))
    if not len(y):
        return None
    return float(np.mean(z.argmax(axis=1) == y))


def fit_task(
    x_train: scipy.sparse.csr_matrix,
    y_train: np.ndarray,
    x_validation: scipy.sparse.csr_matrix,
    y_validation: np.ndarray,
    num_classes: int,
    c_grid=C_GRID,
    seed: int | None = 0,
    patience: int | None = C_PATIENCE,
) -> LinearFit:
    """Fits one task's logistic regression, C chosen on validation.

    Args:
        x_train, x_validation: TF-IDF rows `(n, terms)`.
        y_train, y_validation: class indices `(n,)`, -1 for a missing label.
        num_classes: int. Classes of the task (a class absent from the
            training labels gets a large negative bias).
        c_grid: inverse regularization strengths, tried in ascending order.
        patience: optional int. Stop after this many C in a row that do not
            beat the best validation metric so far; None tries them all.
        seed: the solver's shuffling seed.

    Returns:
        A `LinearFit` whose kernel has one column for a binary task (the
        logit of class 1) and `num_classes` otherwise.
    """
    keep = y_train >= 0
    # Rows without a label are dropped (a copy); when every row has one,
    # the matrix is used as given.
    x, y = (x_train, y_train) if keep.all() else (x_train[keep], y_train[keep])
    classes = np.unique(y)
    units = 1 if num_classes == 2 else num_classes
    terms = x_train.shape[1]
    if len(classes) < 2:
        raise ValueError(
            f"The linear model needs two classes among the training labels. "
            f"Received: classes={classes.tolist()}"
        )
    model = LogisticRegression(warm_start=True, random_state=seed, **SOLVER)
    if main_metric(y_validation, np.zeros((len(y_validation), units))) is None:
        c_grid = (DEFAULT_C,)  # Nothing on validation to choose by.
    best, worse = None, 0
    for c in sorted(c_grid):
        if patience is not None and worse >= patience:
            break
        model.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        kernel = np.zeros((terms, units), np.float32)
        bias = np.zeros((units,), np.float32)
        if units == 1:
            kernel[:, 0] = model.coef_[0]
            bias[0] = model.intercept_[0]
        else:
            bias[:] = -30.0  # Classes never seen in training.
            coef = model.coef_ if len(classes) > 2 else None
            for k, cls in enumerate(classes):
                if coef is None:  # Two of several classes: one logit.
                    sign = 1.0 if k == 1 else -1.0
                    kernel[:, cls] = sign * model.coef_[0] / 2
                    bias[cls] = sign * model.intercept_[0] / 2
                else:
                    kernel[:, cls] = coef[k]
                    bias[cls] = model.intercept_[k]
        logits = np.asarray(x_validation @ kernel + bias)
        score = main_metric(y_validation, logits)
        candidate = LinearFit(kernel, bias, float(c), score, logits)
        if best is None or (
            score is not None
            and (
                best.validation_metric is None or score > best.validation_metric
            )
        ):
            best, worse = candidate, 0
        else:
            worse += 1
    return best


def choose_blend(
    labels: np.ndarray,
    deep_logits: np.ndarray,
    linear_logits: np.ndarray,
    grid=BLEND_GRID,
) -> tuple[float, float | None]:
    """The linear weight `w` of `(1 - w) * deep + w * linear` that scores
    best on these (validation) rows, and its score.

    Ties go to the weight nearest 0.5: a mix of two models that score the
    same tends to generalize better than either.
    """
    best_w, best_score = None, None
    for w in sorted(grid, key=lambda w: abs(w - 0.5)):
        score = main_metric(labels, (1 - w) * deep_logits + w * linear_logits)
        if score is None:
            continue
        if best_score is None or score > best_score + 1e-12:
            best_w, best_score = w, score
    return (0.0 if best_w is None else float(best_w)), best_score


def logits_to_probabilities(logits: np.ndarray) -> np.ndarray:
    """`(n, 1)` logits -> sigmoid, `(n, C)` -> softmax."""
    z = np.asarray(logits, np.float64)
    if z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def probabilities_to_logits(p: np.ndarray) -> np.ndarray:
    """A sigmoid `(n, 1)` or softmax `(n, C)` output back to logits (up to a
    per-row constant for a softmax, which no metric sees)."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    if p.shape[1] == 1:
        return np.log(p) - np.log1p(-p)
    return np.log(p)
