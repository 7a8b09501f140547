"""Key maps from official checkpoint layouts to psa_zoo models (pure functions, no file I/O)."""
