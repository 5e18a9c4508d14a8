"""A test kit for extenders: contract test classes a backend or technique author subclasses (like optuna.testing)."""
