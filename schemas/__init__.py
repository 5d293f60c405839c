"""Curated schemas, shipped with the package so that the container image and the local run read the same file."""
import os

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
