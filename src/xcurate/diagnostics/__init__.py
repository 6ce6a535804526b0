"""xcurate.diagnostics."""
