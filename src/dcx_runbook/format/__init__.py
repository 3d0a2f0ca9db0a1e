"""The runbook format: the model, reading YAML with every problem located, the rules no schema can
say, and resolving variables. Knows nothing of databases, journals or terminals."""
