"""Training engines: pre-training, fine-tuning and evaluation, linear probes, weight drift."""
