"""Reading the measurements: aggregation over seeds, tables, the blog's numbers, claim verdicts."""
