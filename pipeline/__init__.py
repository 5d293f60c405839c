"""hubtfx pipeline: configuration, composition, runners and the command line."""
import os

# hub.KerasLayer is a Keras-2 layer: every process (Beam workers included, which inherit the environment)
# must use tf_keras. This only helps if it runs before TensorFlow is first imported; the Makefile and the
# container image set it too.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
