"""File input/output shared by every stage: tables with clear errors, atomic writes."""
