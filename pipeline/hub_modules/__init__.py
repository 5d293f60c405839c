"""The backbone: resolving a `hub_handle` to a vetted local module (module_resolution, integrity, vetting) and
building the bundled EfficientNet-Lite0 modules offline (builder, efficientnet_lite, export, torch_pickle)."""
