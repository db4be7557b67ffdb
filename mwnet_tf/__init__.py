"""Meta-Weight-Net (Shu et al., NeurIPS 2019) for Keras 3 / TensorFlow.

    model = mwnet_tf.MetaWeightNet(classifier)
    model.compile()                       # the paper's optimisers and L2
    model.fit(mwnet_tf.with_meta(train_ds, meta_ds, meta_batch_size=100))
"""

from mwnet_tf.inputs import with_meta
from mwnet_tf.trainer import MetaWeightNet, lookahead_layers, weight_layers
from mwnet_tf.weighting_net import WeightingNet, load_weighting_net

__all__ = ["MetaWeightNet", "WeightingNet", "load_weighting_net",
           "lookahead_layers", "weight_layers", "with_meta"]
__version__ = "0.1.0"
