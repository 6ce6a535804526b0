"""xcurate.policy."""
