"""End-to-end behaviour: MW-Net learns to down-weight corrupted labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf

NUM_CLASSES = 4
FEATURES = 10


def _noisy_blobs(seed, n_train=400, n_meta=40, n_test=2000, rate=0.4):
    """Gaussian blobs; 40% of training labels flipped to the next class."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(NUM_CLASSES, FEATURES))

    def sample(n):
        labels = rng.integers(0, NUM_CLASSES, n)
        points = centers[labels] + rng.normal(size=(n, FEATURES))
        return points.astype("float32"), labels

    x, y = sample(n_train)
    corrupted = rng.random(n_train) < rate
    noisy = np.where(corrupted, (y + 1) % NUM_CLASSES, y)
    return ((x, noisy, corrupted.astype("float32")), sample(n_meta),
            sample(n_test))


def _fit(method, train, meta, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(128, activation="relu")(inputs)
    hidden = keras.layers.Dense(128, activation="relu")(hidden)
    classifier = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(hidden))
    model = mwnet_tf.MetaWeightNet(classifier,
                                   mwnet_tf.WeightingNet(seed=seed),
                                   method=method)
    # The paper's optimisers; a larger meta learning rate because this run
    # has 200 steps where the paper has tens of thousands.
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9,
                                                 nesterov=True),
                  meta_optimizer=keras.optimizers.Adam(1e-2), weight_decay=0.0)
    batches = (tf.data.Dataset.from_tensor_slices(train)
               .shuffle(400, seed=seed).batch(40, drop_remainder=True))
    dataset = mwnet_tf.with_meta(
        batches, tf.data.Dataset.from_tensor_slices(meta), meta_batch_size=40,
        seed=seed)
    history = model.fit(dataset, epochs=20, verbose=0)
    return model, history.history


@pytest.mark.parametrize("seed", [1, 2])
def test_mwnet_down_weights_corrupted_labels_and_beats_ce(seed):
    train, meta, (x_test, y_test) = _noisy_blobs(seed)
    ce_model, _ = _fit("ce", train, meta, seed)
    mwnet_model, logs = _fit("mwnet", train, meta, seed)

    assert logs["corrupted_weight"][-1] < 0.5 * logs["clean_weight"][-1]
    # The learned weighting function decreases with the loss.
    curve = mwnet_model.weighting_function(np.linspace(0, 5, 11)).numpy()
    assert curve[0] > curve[-1] + 0.3
    ce_accuracy = ce_model.evaluate(x_test, y_test, verbose=0,
                                    return_dict=True)["accuracy"]
    mwnet_accuracy = mwnet_model.evaluate(x_test, y_test, verbose=0,
                                          return_dict=True)["accuracy"]
    assert mwnet_accuracy > ce_accuracy + 0.1
