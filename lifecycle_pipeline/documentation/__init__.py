"""The documentation bundle: model card, datasheet and technical documentation."""
