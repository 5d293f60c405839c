"""FailOnDivergence: a NaN, infinite or absurd training loss fails training with advice instead of stopping quietly."""
import numpy as np
import pytest
import tensorflow as tf

from components.trainer import model, stages


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), stages.DIVERGED_LOSS + 1])
def test_a_diverged_batch_loss_raises_with_the_stage_epoch_and_flag(loss):
    callback = stages.FailOnDivergence("stage 2", "--stage2-learning-rate", 0.5)
    callback.on_epoch_begin(3)
    with pytest.raises(stages.TrainingDivergedError,
                       match=r"in stage 2 at epoch 4, batch 7: .*\(--stage2-learning-rate, now 0.5\)"):
        callback.on_train_batch_end(6, {"loss": loss})


def test_a_healthy_loss_passes():
    stages.FailOnDivergence("stage 1", "--stage1-learning-rate", 1e-3).on_train_batch_end(0, {"loss": 2.3})


def test_adam_at_learning_rate_1e3_is_caught_even_without_a_nan():
    head = model.build_head(5, 0.0)
    model.compile_classifier(head, 1e3)
    rng = np.random.default_rng(0)
    batches = tf.data.Dataset.from_tensor_slices(
        (rng.random((64, 16), dtype=np.float32), rng.integers(0, 5, 64))).batch(8)
    with pytest.raises(stages.TrainingDivergedError, match="in stage 1 at epoch 1"):
        head.fit(batches, epochs=3, verbose=0,
                 callbacks=[stages.FailOnDivergence("stage 1", "--stage1-learning-rate", 1e3)])
