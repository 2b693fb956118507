"""Reading built splits back for people: sample grids (``show``), statistics (``stats``), the palette."""
