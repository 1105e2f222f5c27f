"""Redo docs/separate-plot.png: `stemtf separate --plot` on the bundled excerpt with the shipped 4stems model.

The picture is what the CLI writes, scaled to 800 pixels wide and reduced to a dithered 64-colour palette so
that it stays under 200 kB in the repository (the CLI's own PNG is full colour, 1000 pixels wide).

    .venv/bin/python docs/separate_plot.py
"""

import pathlib
import sys
import tempfile

from PIL import Image

from stemtf.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "separate-plot.png"

with tempfile.TemporaryDirectory() as work:
    code = main(["separate", str(ROOT / "examples" / "caesium_excerpt.ogg"), "-o", work, "--plot", "--duration", "10", "-q"])
    if code:
        sys.exit(code)
    (written,) = pathlib.Path(work).rglob("*_spectrograms.png")
    with Image.open(written) as image:
        small = image.convert("RGB").resize((800, round(image.height * 800 / image.width)), Image.Resampling.LANCZOS)
        palette = small.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        # Dithered against the palette: no visible bands in the smooth colour scale.
        small.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(TARGET, optimize=True)
print(f"{TARGET} ({TARGET.stat().st_size // 1000} kB)")
