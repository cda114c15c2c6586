"""Fault tests: real processes, real signals, real restarts of servers of their own."""
