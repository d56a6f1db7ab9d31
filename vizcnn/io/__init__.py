"""Files out and in: tensor <-> image, grids and sheets, PNG/JSON written atomically, video."""
