"""The backbone: resolving a `hub_handle` to a vetted local module, returned as a `ResolvedModule`
(module_resolution, resolved_module, integrity, vetting), and building the bundled EfficientNet-Lite0 modules
offline (builder, efficientnet_lite, export, torch_pickle)."""
