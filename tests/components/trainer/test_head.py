"""Stage 1's head: a converged, cross-validated L2 logistic regression on standardised features."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hubtfx.components.trainer import head


def _blobs(per_class: int, classes: int, dim: int, separation: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * separation
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _probabilities(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_a_separable_problem_is_solved_to_convergence():
    x, labels = _blobs(12, 4, 40, separation=3.0)
    fit = head.fit_head(head.Features({"default": x}, labels), 4, [("default",)], 4, "balanced", 0)
    assert (fit.logits(head.Features({"default": x}, labels)).argmax(1) == labels).all()
    assert fit.cv_accuracy == pytest.approx(1.0)


def test_the_kernel_equals_scikit_learn_on_standardised_features_more_dims_than_rows():
    # 30 rows, 200 dims: the fit runs in the rows' span; it must still be the full-space solution.
    x, labels = _blobs(10, 3, 200, separation=0.5, seed=1)
    mean, std, kernel, bias = head._fit(x, labels, 3, 0.05, None)
    np.testing.assert_allclose((mean, std), head._standardisation(x), rtol=1e-6)
    standardised = (x - mean) / std
    direct = LogisticRegression(C=0.05, max_iter=10000, tol=1e-10).fit(standardised, labels)
    np.testing.assert_allclose(_probabilities(standardised @ kernel + bias), direct.predict_proba(standardised),
                               atol=2e-3)


def test_stage_2_starts_at_the_optimum_of_stage_1s_objective_with_the_l2_penalty_per_example():
    # Keras minimises mean(cross-entropy) + l2 * ||kernel||^2; with l2 = l2_per_example(n) the fitted head must be
    # a stationary point of it, so stage 2 does not begin by drifting away from the cross-validated optimum.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from hubtfx.components.trainer import model  # pylint: disable=import-outside-toplevel

    x, labels = _blobs(10, 3, 6, separation=1.0, seed=6)
    fit = head.fit_head(head.Features({"default": x}, labels), 3, [("default",)], 5, None, 0)
    net = model.build_head(3, 0.0, fit.mean, fit.std, fit.l2_per_example(len(labels)))
    model.set_head_weights(net, fit.kernel, fit.bias)
    kernel = net.get_layer("logits").kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, net(x), from_logits=True))
        loss += tf.add_n(net.losses)
    gradient = tape.gradient(loss, kernel).numpy()
    assert np.abs(gradient).max() < 1e-3 * np.abs(fit.kernel).max()
    # A penalty ten times too strong is not a stationary point: the check above can fail.
    too_strong = model.build_head(3, 0.0, fit.mean, fit.std, 10 * fit.l2_per_example(len(labels)))
    model.set_head_weights(too_strong, fit.kernel, fit.bias)
    with tf.GradientTape() as tape:
        wrong = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, too_strong(x), from_logits=True))
        wrong += tf.add_n(too_strong.losses)
    assert np.abs(tape.gradient(wrong, too_strong.get_layer("logits").kernel).numpy()).max() > 1e-2 * np.abs(
        fit.kernel).max()


def test_two_classes_give_two_logits_with_the_right_order():
    x, labels = _blobs(8, 2, 5, separation=3.0, seed=2)
    mean, std, kernel, bias = head._fit(x, labels, 2, 1.0, None)
    assert kernel.shape == (5, 2) and bias.shape == (2,)
    assert ((((x - mean) / std) @ kernel + bias).argmax(1) == labels).mean() > 0.9


def test_cross_validation_picks_the_informative_levels_and_a_stronger_penalty_for_noise():
    rng = np.random.default_rng(3)
    x, labels = _blobs(15, 3, 10, separation=1.5, seed=3)
    noise = rng.normal(size=(len(labels), 300)).astype(np.float32)
    features = head.Features({"block_01": x, "default": noise}, labels)
    fit = head.fit_head(features, 3, head.level_candidates(["block_01"]), 5, None, 0)
    assert fit.levels == ("block_01", "default")  # the feature vector alone is noise here
    assert {tuple(c["levels"]) for c in fit.candidates} == {("default",), ("block_01", "default")}
    noise_only = head.fit_head(head.Features({"default": noise}, labels), 3, [("default",)], 5, None, 0)
    assert noise_only.c <= fit.c


def test_same_inputs_give_the_same_fit():
    x, labels = _blobs(10, 3, 30, separation=1.0, seed=4)
    features = head.Features({"default": x}, labels)
    first = head.fit_head(features, 3, [("default",)], 5, "balanced", 7)
    second = head.fit_head(features, 3, [("default",)], 5, "balanced", 7)
    assert (first.c, first.cv_log_loss) == (second.c, second.cv_log_loss)
    np.testing.assert_array_equal(first.kernel, second.kernel)


def test_balanced_class_weights_lift_the_rare_class():
    x, labels = _blobs(40, 2, 20, separation=0.4, seed=5)
    keep = np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)[:6]])
    features = head.Features({"default": x[keep]}, labels[keep])
    plain = head.fit_head(features, 2, [("default",)], 5, None, 0)
    balanced = head.fit_head(features, 2, [("default",)], 5, "balanced", 0)
    rare = labels[keep] == 1
    assert (balanced.logits(features).argmax(1)[rare] == 1).mean() >= (plain.logits(features).argmax(1)[rare] == 1).mean()
    assert balanced.bias[1] - balanced.bias[0] > plain.bias[1] - plain.bias[0]


def test_a_class_without_training_examples_is_a_clear_error():
    x, labels = _blobs(5, 2, 4, separation=1.0)
    with pytest.raises(ValueError, match=r"Classes \[2\] have no training examples"):
        head.fit_head(head.Features({"default": x}, labels), 3, [("default",)], 5, None, 0)


@pytest.mark.parametrize("examples, wanted, expected", [
    (2000, 5, 5), (2001, 5, 4), (2667, 5, 3), (4000, 5, 3), (4001, 5, 2), (8000, 5, 2), (100_000, 5, 2), (100_000, 10, 2), (300, 10, 10),
    (300, 3, 3)])
def test_cross_validation_uses_fewer_folds_where_the_set_is_large(examples, wanted, expected):
    labels = np.arange(examples) % 10
    assert head.cv_folds(labels, wanted) == expected
    assert (expected - 1) * examples <= max(head.CV_ROW_BUDGET, examples)


def test_folds_never_exceed_the_smallest_class():
    assert head.cv_folds(np.array([0] * 500 + [1] * 3), 5) == 3
    assert head.cv_folds(np.array([0, 0, 0, 1, 1, 1]), 5) == 3
    assert head.cv_folds(np.array([], dtype=np.int64), 5) == 0


def test_a_single_example_class_falls_back_to_a_fixed_penalty():
    x, labels = _blobs(5, 2, 4, separation=1.0)
    labels = labels.copy()
    labels[0] = 2
    fit = head.fit_head(head.Features({"default": x}, labels), 3, [("default",)], 5, None, 0)
    assert fit.folds == 0 and fit.c == 1.0 and fit.cv_accuracy is None


def _log_loss(logits, labels):
    return float(-np.log(_probabilities(logits)[np.arange(len(labels)), labels]).mean())


def test_the_temperature_recovers_how_sharp_the_labels_are():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in _probabilities(2.5 * logits)])
    temperature, loss = head.fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    assert loss == pytest.approx(_log_loss(temperature * logits, labels))
    assert loss < _log_loss(logits, labels)


def test_held_out_logits_without_an_error_get_a_finite_temperature():
    # Every held-out example right: plain log loss falls forever as T grows; Platt's targets stop it.
    rng = np.random.default_rng(7)
    labels = np.arange(40) % 4
    logits = rng.normal(size=(40, 4)) * 0.1
    logits[np.arange(40), labels] += 1.0
    temperature, loss = head.fit_temperature(logits, labels)
    served = _probabilities(np.float32(temperature) * logits.astype(np.float32))
    assert temperature < 100 and served.max() < 0.999 and loss > 0


def test_the_chosen_head_is_calibrated_on_examples_it_never_saw():
    # Few examples in many dimensions (like text embeddings): the penalty cross-validation picks leaves the logits
    # far too timid or too sharp; the fitted temperature must bring held-out log loss down, not just the CV's.
    x, labels = _blobs(25, 5, 300, separation=0.3, seed=8)
    train = np.concatenate([np.flatnonzero(labels == c)[:6] for c in range(5)])
    held = np.setdiff1d(np.arange(len(labels)), train)
    features = head.Features({"default": x}, labels)
    fit = head.fit_head(features, 5, [("default",)], 3, None, 0, rows=train)
    chosen = fit.candidates[0]
    assert fit.temperature == chosen["temperature"] and fit.c == chosen["c"]
    assert chosen["cv_log_loss"] <= chosen["cv_log_loss_uncalibrated"] + 1e-9
    raw = fit.logits(features, held)
    assert _log_loss(fit.temperature * raw, labels[held]) < _log_loss(raw, labels[held]) - 0.05
