"""Pairs training batches with batches of the clean meta set, and reads
the pairs back in the training step."""

import tensorflow as tf


def with_meta(train_ds, meta_ds, meta_batch_size=None, shuffle_buffer=10_000,
              seed=None):
    """Builds the `((x, y[, corrupted]), (x_meta, y_meta))` input of `fit`.

    The meta set is small, so it is repeated for as long as the training
    dataset lasts, reshuffled on every pass; the result has exactly as many
    elements as `train_ds`.

    Args:
        train_ds: Batched training dataset of `(x, y)` or `(x, y, corrupted)`.
        meta_ds: The clean meta set, either as single examples `(x, y)` (give
            `meta_batch_size`) or already batched (leave `meta_batch_size`
            None; it is then only repeated, so shuffle it yourself, e.g. with
            `reshuffle_each_iteration=True`).
        meta_batch_size: Meta batch size when `meta_ds` holds single examples.
            The paper uses the training batch size (100).
        shuffle_buffer: Shuffle buffer for single examples; the meta set is
            usually small enough to fit whole (the paper's has 1000 images).
        seed: Seed of the meta shuffle.

    Returns:
        A `tf.data.Dataset` for `MetaWeightNet.fit`.
    """
    if meta_batch_size is not None:
        if int(meta_batch_size) != meta_batch_size or meta_batch_size < 1:
            raise ValueError("meta_batch_size must be a positive integer; got "
                             f"{meta_batch_size!r}.")
        meta_ds = (meta_ds.shuffle(shuffle_buffer, seed=seed,
                                   reshuffle_each_iteration=True)
                   .repeat()
                   .batch(int(meta_batch_size), drop_remainder=True))
    else:
        meta_ds = meta_ds.repeat()
    paired = tf.data.Dataset.zip((train_ds, meta_ds))
    return paired.prefetch(tf.data.AUTOTUNE)


def unpack(data):
    """`((x, y, corrupted_or_None), (x_meta, y_meta))` from a `fit` element.

    Raises ValueError, naming `with_meta`, for elements of another shape.
    """
    if isinstance(data, tuple) and len(data) == 3 and data[1] is None \
            and data[2] is None:
        data = data[0]  # train_on_batch(x) packs (x, None, None).
    try:
        train, meta = data
        x, y = train[0], train[1]
        corrupted = train[2] if len(train) > 2 else None
        x_meta, y_meta = meta
    except (TypeError, ValueError) as error:
        raise ValueError(
            "MetaWeightNet.fit expects elements ((x, y), (x_meta, y_meta)) "
            "or ((x, y, corrupted), (x_meta, y_meta)); build them with "
            "mwnet_tf.with_meta(train_ds, meta_ds).") from error
    return (x, y, corrupted), (x_meta, y_meta)
