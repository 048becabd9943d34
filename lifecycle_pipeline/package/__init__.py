"""The deployment-package format: build, sign, verify, load and predict."""
