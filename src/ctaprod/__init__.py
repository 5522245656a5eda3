"""ctaprod: the production system for CTAO's large-scale data processing."""

__version__ = "0.1.0"
