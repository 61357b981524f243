"""mrcnn.train_state: the optimizer and sampling state saved beside a checkpoint and restored on resume."""

import keras
import numpy as np
import pytest

from mrcnn import train_state


def _model_and_optimizer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_momentum_iterations_and_random_state_round_trip(tmp_path):
    model, optimizer = _model_and_optimizer()
    for step in range(3):
        grads = [keras.ops.ones_like(v) * (step + 1) for v in model.trainable_variables]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    generator = keras.random.SeedGenerator(7)
    keras.random.uniform((2,), seed=generator)
    checkpoint = tmp_path / "mask_rcnn_x_0004.h5"
    path = train_state.save_train_state(checkpoint, optimizer, ".*", 10, 4, [generator.state])
    assert path == str(tmp_path / "mask_rcnn_x_0004.state.npz")

    fresh_model, fresh = _model_and_optimizer()
    fresh_generator = keras.random.SeedGenerator(7)
    assert train_state.restore_optimizer(fresh, fresh_model.trainable_variables, path, ".*", 10)
    assert train_state.restore_random_states([fresh_generator.state], path)
    assert int(fresh.iterations.numpy()) == 3
    for want, got in zip(optimizer.variables, fresh.variables):
        np.testing.assert_array_equal(np.asarray(want), np.asarray(got))
    # Momentum after three steps of gradients 1, 2, 3: -(0.1 * (0.81 * 1 + 0.9 * 2 + 3)) per value, by hand.
    momentum = [v for v in fresh.variables if "momentum" in v.path][0]
    np.testing.assert_allclose(np.asarray(momentum), -0.1 * (0.81 + 1.8 + 3.0), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(fresh_generator.state), np.asarray(generator.state))


def test_another_stage_starts_a_new_optimizer_and_a_damaged_file_is_named(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = train_state.save_train_state(tmp_path / "c_0002.h5", optimizer, "heads", 2, 2)
    other_model, other = _model_and_optimizer()
    assert not train_state.restore_optimizer(other, other_model.trainable_variables, path, ".*", 10)
    assert not train_state.restore_optimizer(other, other_model.trainable_variables, path, "heads", 3)
    bigger = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    big_optimizer = keras.optimizers.SGD(momentum=0.9)
    with pytest.raises(train_state.TrainStateError, match="shape"):
        train_state.restore_optimizer(big_optimizer, bigger.trainable_variables, path, "heads", 2)
    (tmp_path / "bad.state.npz").write_bytes(b"truncated")
    with pytest.raises(train_state.TrainStateError, match="bad.state.npz"):
        train_state.load_train_state(tmp_path / "bad.state.npz")
