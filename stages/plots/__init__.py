"""The report's figures: ``render.render_all`` writes them all (names in ``render.FIGURE_FILES``)."""
