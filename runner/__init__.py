"""ftbot's runner: jobs, data, training, evaluation and the model registry (no Slack framework here)."""
