"""The leaf every stage may use and that uses no stage: errors, atomic file writes, process
runtime (threads, MKL's code path), output capture and lazy module attributes."""
