"""The `fedseg` command line."""

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def version() -> None:
    """Print the fedseg version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("fedseg"))


def main() -> None:
    app()
