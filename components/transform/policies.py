"""Preprocessing choices shared by the config (no TensorFlow import) and the Transform ops."""

# How an image whose aspect ratio differs from the module's input reaches it: "squash" resizes each side
# independently (shapes distort), "crop" takes the largest centred box of the target's aspect ratio (edges are
# lost), "pad" fits the whole image and fills the rest with black (resolution is lost).
ASPECT_POLICIES = ("squash", "crop", "pad")
