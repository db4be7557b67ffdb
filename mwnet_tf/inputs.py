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
        meta_ds: The clean meta set, either as single examples `(x, y)` (a
            dataset, or a tuple of arrays; give `meta_batch_size`) or
            already batched (leave `meta_batch_size` None; it is then only
            repeated, so shuffle it yourself, e.g. with
            `reshuffle_each_iteration=True`). Finite either way: it is
            repeated for as long as `train_ds` lasts.
        meta_batch_size: Meta batch size when `meta_ds` holds single examples.
            The paper uses the training batch size (100).
        shuffle_buffer: Shuffle buffer for single examples; the meta set is
            usually small enough to fit whole (the paper's has 1000 images).
        seed: Seed of the meta shuffle.

    Returns:
        A `tf.data.Dataset` for `MetaWeightNet.fit`.

    Raises:
        ValueError: In one line, for a missing meta set, a meta set whose
            batching does not match `meta_batch_size` (batched and given a
            size, or single examples without one), or an empty meta set.
    """
    if not isinstance(train_ds, tf.data.Dataset):
        raise ValueError(
            "train_ds must be a batched tf.data.Dataset of (x, y); got "
            f"{type(train_ds).__name__} (e.g. tf.data.Dataset."
            "from_tensor_slices((x, y)).shuffle(n).batch(100)).")
    meta_ds = _as_dataset(meta_ds, "meta_ds")
    train_rank = _image_rank(train_ds)
    meta_rank = _image_rank(meta_ds)
    if meta_batch_size is not None and meta_rank == train_rank:
        raise ValueError(
            "meta_ds is already batched (its images have the training "
            "batches' rank); drop meta_batch_size, or pass meta_ds unbatched.")
    if meta_batch_size is None and meta_rank is not None \
            and train_rank is not None and meta_rank < train_rank:
        raise ValueError(
            "meta_ds holds single examples; pass meta_batch_size= (e.g. the "
            "training batch size), or batch it yourself.")
    if meta_ds.cardinality() == 0:
        raise ValueError("meta_ds is empty: MW-Net needs a few clean "
                         "examples per class as its meta set.")
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


def integer_labels(y):
    """Class indices [B] from integer labels [B] or [B, 1], or from one-hot
    (or soft) labels [B, K] (their argmax)."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        y = tf.squeeze(y, axis=-1)
    elif y.shape.rank == 2:
        y = tf.argmax(y, axis=-1)
    if y.shape.rank != 1:
        raise ValueError(
            f"Labels must be class indices [batch] or one-hot [batch, "
            f"classes]; got a tensor of shape {y.shape}.")
    return tf.cast(y, tf.int32) if not y.dtype.is_integer else y


def _as_dataset(value, name):
    """A tf.data.Dataset from a dataset or a tuple of arrays (single
    examples)."""
    if isinstance(value, tf.data.Dataset):
        return value
    if value is None:
        raise ValueError(
            f"with_meta needs {name}; got None (method='ce' and 'fixed' "
            "train without meta data: pass the training dataset to fit).")
    if isinstance(value, (tuple, list)):
        return tf.data.Dataset.from_tensor_slices(tuple(value))
    raise ValueError(f"{name} must be a tf.data.Dataset or a tuple of arrays "
                     f"(x, y); got {type(value).__name__}.")


def _image_rank(dataset):
    """The rank of a dataset's first component (its images), if known."""
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    rank = getattr(first, "shape", None)
    return None if rank is None else rank.rank


def unpack(data, needs_meta=True):
    """`((x, y, corrupted_or_None), (x_meta, y_meta))` from a `fit` element.

    Labels come back as class indices (`integer_labels`). A method that
    takes no meta step (ce, fixed: `needs_meta=False`) also takes plain
    `(x, y)` or `(x, y, corrupted)` elements; its meta batch is then None.

    Raises ValueError, naming `with_meta`, for elements of another shape.
    """
    if isinstance(data, tuple) and len(data) == 3 and data[1] is None \
            and data[2] is None:
        data = data[0]  # train_on_batch(x) packs (x, None, None).
    paired = (isinstance(data, (tuple, list)) and len(data) == 2
              and isinstance(data[0], (tuple, list)))
    if not paired and not needs_meta and isinstance(data, (tuple, list)) \
            and len(data) in (2, 3) and tf.is_tensor(data[0]):
        x, y = data[0], integer_labels(data[1])
        corrupted = data[2] if len(data) > 2 and data[2] is not None else None
        return (x, y, corrupted), (None, None)
    try:
        train, meta = data
        x, y = train[0], train[1]
        corrupted = train[2] if len(train) > 2 else None
        x_meta, y_meta = meta
    except (TypeError, ValueError) as error:
        raise ValueError(
            "MetaWeightNet.fit expects elements ((x, y), (x_meta, y_meta)) "
            "or ((x, y, corrupted), (x_meta, y_meta)); build them with "
            "mwnet_tf.with_meta(train_ds, meta_ds) (method='ce' and "
            "'fixed' also take plain (x, y)).") from error
    return (x, integer_labels(y), corrupted), (x_meta, integer_labels(y_meta))


def check_labels_before_fit(x, y, num_classes):
    """Checks the labels `fit` is about to read, on the host, in one line.

    A dataset's first element is read once (training and meta labels
    alike); arrays are checked whole. Each set's labels must be class
    indices in 0 .. num_classes - 1, or one-hot / soft labels of
    `num_classes` columns; out of range they would end in a graph error
    deep in the step (or, for CE, in no error at all). Distributed
    datasets are not read here.

    Raises:
        ValueError: Naming the set (training or meta) and what was wrong.
    """
    if isinstance(x, tf.data.Dataset):
        element = next(iter(x.take(1)), None)
        if element is None:
            return
        try:
            (train, meta) = element if isinstance(element[0], tuple) else (
                element, None)
            sets = [("training", train[1])]
            if meta is not None:
                sets.append(("meta", meta[1]))
        except (TypeError, IndexError):
            return  # unpack() says what the elements should be.
    elif y is not None and not isinstance(x, tf.distribute.DistributedDataset):
        sets = [("training", y)]
    else:
        return
    for which, labels in sets:
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 2 and labels.shape[-1] not in (1, num_classes):
            raise ValueError(
                f"The {which} labels are {labels.shape[-1]}-column one-hot "
                f"(shape {labels.shape}), but the classifier has "
                f"{num_classes} outputs; give class indices or "
                f"{num_classes}-column one-hot labels.")
        values = integer_labels(labels).numpy()
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(
                f"The {which} labels must be class indices in "
                f"0..{num_classes - 1} (the classifier has {num_classes} "
                f"outputs); the first {which} batch holds "
                f"{int(values[bad][0])}.")
