"""``stemtf import spleeter``: bring a Spleeter model (folder, release archive or release name) into stemtf."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly

import_app = typer.Typer(
    help="Import models trained elsewhere as stemtf models (see `stemtf import spleeter --help`).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(import_app, name="import")


@import_app.command("spleeter")
def import_spleeter_command(
    source: str = typer.Argument(
        ..., help="A Spleeter model folder (checkpoint + model.*), a release archive (.tar.gz), or spleeter:2stems|4stems|5stems "
        "(and -16kHz), downloaded once from Spleeter's GitHub release ($STEMTF_SPLEETER_URL overrides it).", metavar="SOURCE",
        show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the stemtf model (default: spleeter-RELEASE).", show_default=False),
    output_dir: Optional[pathlib.Path] = typer.Option(
        None, "--output-dir", "-o", help="Model folder to write (default: the user model store, ~/.cache/stemtf/models/NAME).",
        show_default=False),
    release: Optional[str] = typer.Option(
        None, "--release", help="Which Spleeter config the checkpoint is (2stems, 4stems-16kHz, ...; default: from the source's "
        "name or its number of U-Nets).", show_default=False),
    spleeter_config: Optional[pathlib.Path] = typer.Option(
        None, "--spleeter-config", help="The Spleeter JSON config of a model you trained with Spleeter.", show_default=False),
    mask_extension: str = typer.Option(
        "zeros", "--mask-extension", help="zeros: Spleeter-exact (nothing above 11 kHz); average or edge: stemtf's full band."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Convert a Spleeter model into a stemtf model folder (then: stemtf separate -m spleeter-4stems ...)."""
    import_tensorflow_quietly()
    from stemtf.spleeter_import import import_spleeter

    def status(line: str) -> None:
        if not quiet:
            typer.echo(line, err=True)

    target = import_spleeter(source, name=name, output_dir=output_dir, release=release, spleeter_config=spleeter_config,
                             mask_extension=mask_extension, overwrite=overwrite, on_status=status)
    if not quiet:
        typer.echo(f"{target} (use it with -m {target.name if output_dir is None else target})")
