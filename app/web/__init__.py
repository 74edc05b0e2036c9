"""The HTTP layer: dependencies, errors, rate limits, routes."""
