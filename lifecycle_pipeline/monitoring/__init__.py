"""Production monitoring: data and prediction drift against a model's training reference."""
