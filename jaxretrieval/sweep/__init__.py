"""`jaxretrieval sweep`: a grid of ordinary runs, resumable cell by cell, and its stability report."""
