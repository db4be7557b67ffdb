"""The former name of `mwnet_tf.label_audit`, which README.md once
documented: importing it gives that module itself (not a copy), so code
that patches or reads its names sees the library's own."""

import sys

from mwnet_tf import label_audit

# Python binds `mwnet_tf.audit.label_audit` to whatever sys.modules holds
# under this name once this file has run: the library module.
sys.modules[__name__] = label_audit
