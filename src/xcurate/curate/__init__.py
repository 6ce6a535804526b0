"""xcurate.curate."""
