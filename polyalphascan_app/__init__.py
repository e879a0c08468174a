"""polyalphascan, the application: CLI, demo and monitoring server on top of the flow."""
