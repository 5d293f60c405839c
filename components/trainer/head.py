"""Stage 1: the new classification head as a linear probe, solved to convergence on the cached features.

The backbone is frozen, so stage 1 is multinomial logistic regression on fixed features: a convex problem. It is
solved with scikit-learn's `LogisticRegressionCV` (L-BFGS, standardised features), which also chooses the L2
strength by stratified k-fold cross-validation on the *training* features only. Where the module offers feature
levels (pooled intermediate blocks, see ModuleContract.feature_levels), the same cross-validation chooses between
the final feature vector alone and all levels concatenated. The fit becomes a fixed standardisation layer and one
Dense layer (model.build_head), so the exported model needs nothing from scikit-learn.

C and the level set are chosen by *temperature-calibrated* out-of-fold log loss: for each C, one temperature T
(served probabilities = softmax(T * logits)) is fitted to the pooled out-of-fold logits, and the C whose calibrated
log loss is lowest wins; the final head keeps that C and that T (temperature scaling: Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017). Plain log loss conflates two things, the direction of the weights (what
decides the class) and their scale (how confident); the penalty shrinks both, so plain log loss favours weak
penalties that buy confidence at the price of direction. With the scale fitted separately, strong penalties, whose
direction approaches the class means', can win where they classify better: on 384-d MiniLM text embeddings they do
(the "MiniLM probe" anchor of benchmarks/text_quality.py chose C = 1e-4 by CV accuracy where plain log loss chose
1; see README "Text"). T only scales the logits, so it never changes a predicted class; it is applied where
probabilities are served (export.export_serving_model), while the Keras head keeps stage 1's objective unscaled.

Why the standardisation stays a layer instead of being folded into the Dense weights: stage 2 continues from these
weights and keeps stage 1's objective, the cross-validated L2 penalty on the kernel (HeadFit.l2_per_example), which
is only the same penalty in the standardised space it was chosen in.

"""
import dataclasses
import logging
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# Inverse L2 strengths tried by cross-validation (scikit-learn's C: the objective is
# C * sum(cross-entropy) + ||W||^2 / 2 on standardised features), in half-decade steps. Chosen on the text
# benchmark's dev split (12 runs): 1e-4 to 3.2e-3, the grid's lower end in one; below it the calibrated loss
# flattens, because as C -> 0 the weights' direction converges (to the class means', on standardised features).
# The upper end is reached too: in 7 of the image re-check's 24 runs (benchmarks/results/
# quality_recheck_calibrated.json) and at 2,400 training images of the scaling benchmark's set, so the optimum
# may lie above 10 there; extending the grid changes those choices and awaits a quality re-run.
C_GRID = tuple(float(10.0 ** (e / 2)) for e in range(-8, 3))  # 1e-4, 3.16e-4, ..., 10
# Temperatures the calibration may choose from (a bounded scalar search on log T): the strongest penalty in C_GRID
# gives logits of order 1e-2 on standardised features, which need T of order 1e2..1e3.
TEMPERATURE_RANGE = (1e-2, 1e5)
# Rows fitted by one level set's cross-validation, summed over the folds ((folds - 1) x n), above which fewer folds
# are used: 5 folds up to 2,000 training examples, 4 up to 2,666, 3 up to 4,000, 2 above. The cost is linear in
# those rows, and with thousands of examples held out per fold the extra folds buy nothing measurable. Measured ad hoc on the frozen
# EfficientNet-Lite0 features of animal-mnist (7,773 training, 1,943 held-out images; scaling benchmark's set):
# 5 / 3 / 2 folds took 89 / 46 / 25 s and chose C 3.2 / 1 / 1, held-out accuracy 0.983 / 0.987 / 0.987; at 2,400
# training images 31 / 13 / 6 s, C 3.2 / 3.2 / 10, accuracy 0.970 / 0.970 / 0.969 (4 folds here).
CV_ROW_BUDGET = 8000
# L-BFGS iterations; at the largest C a 2128-d, 10-class fit converges in a few hundred.
MAX_ITERATIONS = 2000
# Feature standard deviations below this are treated as 1: dead (constant) channels carry no information.
MIN_STD = 1e-6
# Standard deviations are floored at this multiple of the median one, so no channel is scaled up more than a
# typical one. A channel that is almost always zero on the training images (common among pooled ReLU6 outputs)
# would otherwise be scaled up a thousandfold, and one new image that activates it would get an absurd logit.
# Measured on the dev half of scikit-learn's digits (k = 5 / 10 / 20 per class, 3 seeds; the benchmark reports on
# other images): floor 0 gave accuracy 0.733 / 0.797 / 0.873 with held-out log loss 2.50 / 1.03 / 0.95; floor 1
# gave 0.795 / 0.848 / 0.917 with 0.67 / 0.48 / 0.27 (0.1: 0.781 / 0.844 / 0.904; 3: 0.798 / 0.857 / 0.920;
# 100, i.e. no per-channel scaling: 0.717 / 0.804 / 0.889).
STD_FLOOR = 1.0


@dataclasses.dataclass
class Features:
    """Frozen backbone features of one split, per level (each float32 [n, channels]), and labels int64 [n]."""

    levels: Dict[str, np.ndarray]
    labels: np.ndarray

    def matrix(self, names: Sequence[str], rows: Optional[np.ndarray] = None) -> np.ndarray:
        """The named levels concatenated in the given order: float32 [n, sum of channels]."""
        parts = [self.levels[name] if rows is None else self.levels[name][rows] for name in names]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class HeadFit:
    """A fitted linear head: logits = ((features[levels] - mean) / std) @ kernel + bias.

    mean and std float32 [features] are the training features' standardisation (std floored, see STD_FLOOR);
    kernel float32 [features, classes] and bias float32 [classes] act on standardised features. temperature: the
    calibration of those logits, probabilities = softmax(temperature * logits) (1.0 without cross-validation).
    cv_log_loss (calibrated) and cv_accuracy are the out-of-fold scores at the chosen C (None without
    cross-validation), unweighted even with class_weight (which weighs the fits only); candidates holds every level
    set tried with its scores.
    """

    levels: Tuple[str, ...]
    c: float
    mean: np.ndarray
    std: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray
    folds: int
    cv_log_loss: Optional[float] = None
    cv_accuracy: Optional[float] = None
    candidates: List[Dict] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    temperature: float = 1.0

    def logits(self, features: Features, rows: Optional[np.ndarray] = None) -> np.ndarray:
        return ((features.matrix(self.levels, rows) - self.mean) / self.std) @ self.kernel + self.bias

    def l2_per_example(self, examples: int) -> float:
        """The fit's L2 penalty as Keras writes it on a mean loss over `examples` examples: scikit-learn minimises
        C * sum(cross-entropy) + ||kernel||^2 / 2, i.e. mean(cross-entropy) + ||kernel||^2 / (2 * C * examples)."""
        return 1.0 / (2.0 * self.c * max(examples, 1))

    def summary(self) -> Dict:
        """The choices made, for training_history.json, the run summary and the report."""
        return {"levels": list(self.levels), "c": self.c, "folds": self.folds,
                "temperature": self.temperature, "cv_log_loss": self.cv_log_loss, "cv_accuracy": self.cv_accuracy,
                "candidates": self.candidates, "seconds": round(self.seconds, 3)}


def level_candidates(available: Sequence[str]) -> List[Tuple[str, ...]]:
    """The level sets cross-validation chooses from: the feature vector alone, and every level with it."""
    from hubtfx.components.common.contract import DEFAULT_LEVEL  # pylint: disable=import-outside-toplevel

    extra = tuple(name for name in available if name != DEFAULT_LEVEL)
    return [(DEFAULT_LEVEL,), (*extra, DEFAULT_LEVEL)] if extra else [(DEFAULT_LEVEL,)]


def cv_folds(labels: np.ndarray, wanted: int) -> int:
    """The number of stratified folds for `labels` (int [n]): at most `wanted`, at most the smallest class count,
    and at most what keeps the rows fitted within CV_ROW_BUDGET (never fewer than 2, so large sets are still
    cross-validated). k folds fit k - 1 times the n rows in all, once per C."""
    if not len(labels):
        return 0
    affordable = max(2, 1 + CV_ROW_BUDGET // len(labels))
    return int(min(wanted, affordable, np.bincount(labels).min()))


def fit_head(features: Features, num_classes: int, candidates: Sequence[Tuple[str, ...]], folds: int,
             class_weight: Optional[str], seed: int, fixed: Optional["HeadFit"] = None,
             rows: Optional[np.ndarray] = None) -> HeadFit:
    """Fits the head on `features` (optionally only `rows` of them).

    With `fixed`, the levels, C and temperature of an earlier fit are reused (no cross-validation): stage 2 refits
    the head on its fitting slice that way. Otherwise each candidate level set is cross-validated over C_GRID and
    the set with the lowest calibrated out-of-fold log loss wins (ties: the smaller set).

    Raises:
      ValueError: a class has no training example (its logit could not be learnt).
    """
    started = time.monotonic()
    labels = features.labels if rows is None else features.labels[rows]
    present = np.bincount(labels, minlength=num_classes)
    if (present == 0).any():
        missing = [int(i) for i in np.flatnonzero(present == 0)]
        raise ValueError(f"Classes {missing} have no training examples; every class needs some in the train split.")
    if fixed is not None:
        mean, std, kernel, bias = _fit(features.matrix(fixed.levels, rows), labels, num_classes, fixed.c,
                                       class_weight)
        return dataclasses.replace(fixed, mean=mean, std=std, kernel=kernel, bias=bias, cv_log_loss=None,
                                   cv_accuracy=None, folds=0, seconds=time.monotonic() - started)
    folds = cv_folds(labels, folds)
    if folds < 2:
        logging.warning("[stage 1] a class has a single training example: no cross-validation possible; using "
                        "C = 1 and the feature vector alone.")
        levels = tuple(candidates[0])
        mean, std, kernel, bias = _fit(features.matrix(levels, rows), labels, num_classes, 1.0, class_weight)
        return HeadFit(levels, 1.0, mean, std, kernel, bias, folds=0, seconds=time.monotonic() - started)
    results = []
    for levels in candidates:
        result = {"levels": list(levels),
                  **_cross_validate(features.matrix(levels, rows), labels, folds, class_weight, seed)}
        results.append(result)
        logging.info("[stage 1] levels %s: C %g, temperature %.3g, %d-fold CV log loss %.4f, accuracy %.4f",
                     "+".join(levels), result["c"], result["temperature"], folds, result["cv_log_loss"],
                     result["cv_accuracy"])
    best = min(range(len(results)), key=lambda i: (round(results[i]["cv_log_loss"], 6), i))
    chosen = results[best]
    levels = tuple(chosen["levels"])
    mean, std, kernel, bias = _fit(features.matrix(levels, rows), labels, num_classes, chosen["c"], class_weight)
    return HeadFit(levels, chosen["c"], mean, std, kernel, bias, folds, chosen["cv_log_loss"], chosen["cv_accuracy"],
                   results, time.monotonic() - started, chosen["temperature"])


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(T, log loss of softmax(T * logits)): the T in TEMPERATURE_RANGE that fits held-out `logits` best.

    logits float [n, classes], labels int [n] in [0, classes). T minimises the cross-entropy against Platt's
    smoothed targets, (n + 1) / (n + 2) on the label and the rest spread over the other classes (Platt, "Probabilistic
    Outputs for Support Vector Machines", 1999, section 2.2; temperature scaling: Guo et al. 2017, section 4.2):
    with plain one-hot targets, held-out logits that are all classified right would drive T to the end of the range
    and serve probabilities of exactly 1. The loss is convex in T, so a bounded scalar search on log T finds the
    optimum. The log loss returned is the plain one (one-hot targets) at that T.
    """
    from scipy.optimize import minimize_scalar  # pylint: disable=import-outside-toplevel

    logits = np.asarray(logits, dtype=np.float64)
    n, classes = logits.shape
    rows = np.arange(n)
    on_label = (n + 1.0) / (n + 2.0)
    targets = np.full((n, classes), (1.0 - on_label) / max(classes - 1, 1))
    targets[rows, labels] = on_label

    def smoothed_loss(log_t: float) -> float:
        return float(-(targets * _log_softmax(np.exp(log_t) * logits)).sum(axis=1).mean())

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    found = minimize_scalar(smoothed_loss, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    temperature = float(np.exp(found.x))
    return temperature, float(-_log_softmax(temperature * logits)[rows, labels].mean())


def _standardisation(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.maximum(std, STD_FLOOR * np.median(std))
    return mean, np.where(std < MIN_STD, 1.0, std)


def _row_space(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis [d, r] of a space that holds x's rows (r = min(n, d)).

    With an L2 penalty the logistic-regression weights always lie in the span of the training rows (the
    representer theorem; Hastie, Tibshirani & Friedman, The Elements of Statistical Learning, 2nd ed., 18.3.5),
    so fitting on the coordinates x @ basis gives exactly the same model, with r <= n unknowns per class instead
    of d: 240 instead of 2128 for 30 images of 10 classes, which makes the solver about ten times faster. The
    basis is the Q of a QR decomposition of x's transpose, cheaper than an SVD (measured ad hoc: 0.04 against 0.24
    CPU s for a 240 x 2128 float64 matrix; the whole fit on 300 x 2128 features 1.5 instead of 2.0 CPU s). Where
    the rows are linearly dependent (standardised rows are: they sum to zero) it has a direction more than their
    span; the data has no component along it, so the penalty keeps that weight at zero and the model is unchanged.
    """
    if x.shape[0] >= x.shape[1]:
        return np.eye(x.shape[1])
    basis, _ = np.linalg.qr(x.T)
    return basis


def _logistic_regression(c: float, class_weight: Optional[str]):
    from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel

    return LogisticRegression(C=c, max_iter=MAX_ITERATIONS, class_weight=class_weight, warm_start=True)


def _cross_validate(x: np.ndarray, labels: np.ndarray, folds: int, class_weight: Optional[str],
                    seed: int) -> Dict[str, float]:
    """The best C over C_GRID by calibrated out-of-fold log loss: {"c", "temperature", "cv_log_loss",
    "cv_accuracy", "cv_log_loss_uncalibrated"}.

    Standardisation and the row-space basis are fitted inside each fold, so nothing of the held-out fold leaks
    in; along C_GRID each fit starts from the previous C's solution (a regularisation path). Each C's out-of-fold
    logits are pooled over the folds and given one temperature (fit_temperature).
    """
    from sklearn.model_selection import StratifiedKFold  # pylint: disable=import-outside-toplevel

    num_classes = int(labels.max()) + 1
    out_of_fold = np.zeros((len(C_GRID), len(labels), num_classes))
    for fit_rows, held_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
        mean, std = _standardisation(x[fit_rows])
        fitted, held = (x[fit_rows] - mean) / std, (x[held_rows] - mean) / std
        basis = _row_space(fitted)
        fitted, held = fitted @ basis, held @ basis
        classifier = _logistic_regression(C_GRID[0], class_weight)
        for column, c in enumerate(C_GRID):
            classifier.set_params(C=c)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings at the largest C are expected and harmless
                classifier.fit(fitted, labels[fit_rows])
            out_of_fold[column][np.ix_(held_rows, classifier.classes_)] = _logits(classifier, held)
    rows = np.arange(len(labels))
    scores = []
    for column, c in enumerate(C_GRID):
        temperature, calibrated = fit_temperature(out_of_fold[column], labels)
        uncalibrated = -_log_softmax(out_of_fold[column])[rows, labels].mean()
        accuracy = float((out_of_fold[column].argmax(axis=1) == labels).mean())
        scores.append({"c": c, "temperature": temperature, "cv_log_loss": calibrated, "cv_accuracy": accuracy,
                       "cv_log_loss_uncalibrated": float(uncalibrated)})
    return min(scores, key=lambda score: round(score["cv_log_loss"], 6))


def _logits(classifier, x: np.ndarray) -> np.ndarray:
    """[n, fitted classes] logits whose softmax is classifier.predict_proba(x) (scikit-learn keeps one logit for
    two classes: softmax([0, z]) == sigmoid(z))."""
    scores = classifier.decision_function(x)
    return np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import log_softmax  # pylint: disable=import-outside-toplevel

    return log_softmax(logits, axis=1)


def _fit(x: np.ndarray, labels: np.ndarray, num_classes: int, c: float,
         class_weight: Optional[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean [d], std [d], kernel [d, classes], bias [classes]), float32: the L2 logistic regression on x
    standardised with mean and std."""
    mean, std = _standardisation(x)
    standardised = (x - mean) / std
    basis = _row_space(standardised)
    classifier = _logistic_regression(c, class_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classifier.fit(standardised @ basis, labels)
    coef = np.zeros((num_classes, basis.shape[1]))
    intercept = np.zeros(num_classes)
    if len(classifier.classes_) == 2:  # scikit-learn keeps one logit for two classes: softmax([0, z]) == sigmoid(z)
        coef[classifier.classes_[1]], intercept[classifier.classes_[1]] = classifier.coef_[0], classifier.intercept_[0]
    else:
        coef[classifier.classes_], intercept[classifier.classes_] = classifier.coef_, classifier.intercept_
    kernel = basis @ coef.T
    return (mean.astype(np.float32), std.astype(np.float32), kernel.astype(np.float32),
            intercept.astype(np.float32))
