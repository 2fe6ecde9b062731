"""Training engines: pre-training (and, later, fine-tuning and evaluation)."""
