"""Small shared utilities (atomic file writes, logging, seeding)."""
