"""Kubeflow Pipelines / Vertex AI Pipelines runner for hubtfx."""
