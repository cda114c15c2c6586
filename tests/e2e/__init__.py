"""End-to-end tests: Callboard's real web, worker and scheduler processes."""
