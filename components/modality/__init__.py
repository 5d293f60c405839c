"""Modalities: one object per kind of input (image, ...), which each stage asks how to handle its inputs.

`base.Modality` is the interface, `registry` finds the modality a module contract or an exported model names,
and each implementation (`image.ImageModality`) has a module of its own. Adding a kind of input means adding an
implementation (and its tests) and its name in `registry._built_in`, not editing the stages.
"""
