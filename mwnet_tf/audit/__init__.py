"""The label audit: which training labels are likely wrong.

`label_audit` is the library (score every training example with the
classifier and V, describe V's shape over the losses seen, rank, write
audit.csv and the gallery, and measure how well the weights find known
corrupted labels); `command` is `python -m mwnet_tf.audit`, which audits a
finished run's work directory. Importing this package imports neither.
"""
