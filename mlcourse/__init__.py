"""mlcourse."""
