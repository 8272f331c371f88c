"""Configuration, metrics and error responses of the HTTP service."""
