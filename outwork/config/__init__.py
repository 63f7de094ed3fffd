"""Config schema, validation and the compiled read-only configuration."""
