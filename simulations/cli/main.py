"""fedseg: federated customer segmentation with differential privacy (docs/contract.md).

Every command has --help; bad input ends with one line naming the flag or file, exit 2.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)

Opt = typer.Option
RESEARCH, MERCHANT, OPERATOR = "Simulate and research", "Merchants", "Operators"


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"fedseg {version('fedseg')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        Opt("--version", callback=_show_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    pass


@app.command(rich_help_panel=RESEARCH)
def generate(
    out: Annotated[Path, Opt(help="Directory to write the federation to")],
    users: Annotated[int, Opt(help="Customers in total")] = 20_000,
    merchants: Annotated[int, Opt(help="Merchants (client nodes)")] = 10,
    segments: Annotated[int, Opt(help="Planted personas")] = 5,
    alpha: Annotated[
        float, Opt(help="Dirichlet α of each merchant's persona mix (small = non-IID)")
    ] = 1.0,
    kind: Annotated[str, Opt(help="events or features")] = "events",
    seed: Annotated[int, Opt(help="Random seed")] = 0,
) -> None:
    """Write a synthetic federation (merchants/, items.csv, truth.csv)."""
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation

    fed = generate_federation(
        users=users, merchants=merchants, segments=segments, alpha=alpha, kind=kind, seed=seed
    )
    path = write_federation(fed, out)
    typer.echo(f"wrote {len(fed.merchants)} merchants, {fed.n_users} customers to {path}")


@app.command(rich_help_panel=RESEARCH)
def simulate(
    data: Annotated[Path | None, Opt(help="A federation directory (see `fedseg generate`)")] = None,
    dataset: Annotated[str | None, Opt(help="synthetic, cdnow or ml-100k")] = None,
    k: Annotated[str, Opt(help="Segments, or a range 2-10 / list 2,4,8 to choose k")] = "5",
    epsilon: Annotated[str, Opt(help="Total user-level ε of the run, or inf")] = "1",
    delta: Annotated[float, Opt(help="δ of the run")] = 1e-6,
    rounds: Annotated[int, Opt(help="DP Lloyd rounds")] = 2,
    features: Annotated[
        str | None,
        Opt(
            help="The feature schema: a TOML file or ecommerce/cdnow/movielens "
            "(default: the federation's, docs/segmentation.md)"
        ),
    ] = None,
    noise: Annotated[str, Opt(help="local or distributed")] = "local",
    secure_agg: Annotated[bool, Opt("--secure-agg", help="Secure aggregation")] = False,
    aggregation: Annotated[
        str, Opt(help="sum, or median/trimmed to bound each merchant's influence")
    ] = "sum",
    dropout: Annotated[
        float, Opt(help="Probability that a merchant fails to answer any one message")
    ] = 0.0,
    backend: Annotated[str, Opt(help="inprocess or ray")] = "inprocess",
    workers: Annotated[
        int,
        Opt(
            help="In-process: forked processes the merchants are split over (0: one per core "
            "from 50 merchants on); the model is the same for any number"
        ),
    ] = 0,
    seed: Annotated[int, Opt(help="Random seed (simulations are reproducible)")] = 0,
    as_of: Annotated[
        str | None,
        Opt(help="Public time recency is measured from (ISO 8601; default: the federation's)"),
    ] = None,
    trace: Annotated[
        Path | None, Opt(help="Write every message clients send to this directory")
    ] = None,
    warm_start: Annotated[Path | None, Opt(help="Start from an earlier model.json")] = None,
    state_dir: Annotated[Path | None, Opt(help="Keep merchants' ledgers here across runs")] = None,
    epsilon_cap: Annotated[
        str | None, Opt(help="Each merchant's own lifetime ε cap (default: --epsilon)")
    ] = None,
    recommender: Annotated[
        bool, Opt("--recommender", help="Also fit the DP recommender (same --epsilon)")
    ] = False,
    recommender_model: Annotated[
        str,
        Opt(
            help="ease (DP-EASE, default) or dpsgd (opacus DP-SGD, FedAvg rounds). Do not use "
            "dpsgd with few customers per merchant (hundreds, as MovieLens-100k's ~94 per "
            "region): its per-step noise swamps them and it ranks below DP per-segment "
            "popularity even at ε = 8 (docs/recommender.md)"
        ),
    ] = "ease",
    lifetime_value: Annotated[
        bool,
        Opt(
            "--lifetime-value",
            help="Also fit BG/NBD + Gamma-Gamma lifetime value per segment "
            "(same --epsilon; docs/lifetime_value.md)",
        ),
    ] = False,
    out: Annotated[Path, Opt(help="Output directory")] = Path("fedseg-out"),
    strict: Annotated[
        bool,
        Opt(
            "--strict", help="Refuse a merchant table with any bad row (e.g. an unknown event name)"
        ),
    ] = False,
    as_json: Annotated[
        bool, Opt("--json", help="Print metrics.json's figures as JSON instead of the tables")
    ] = False,
) -> None:
    """Fit segments over a federation; print them and the privacy report."""
    from fedseg.server.config import SegmentationConfig
    from fedseg.simulations.cli import output
    from fedseg.simulations.cli.inputs import (
        check_dataset,
        check_k,
        inspect_federation,
        parse_epsilon,
    )
    from fedseg.simulations.experiments.choose_k import parse_k_range
    from fedseg.simulations.experiments.runner import simulate as run
    from fedseg.simulations.experiments.runner import write_report

    ks = parse_k_range(k)
    run_config = {
        "k": ks[0],
        "epsilon": parse_epsilon(epsilon),
        "delta": delta,
        "rounds": rounds,
        "noise": noise,
        "secure-agg": secure_agg,
        "aggregation": aggregation,
        "dropout": dropout,
        "seed": seed,
        "warm-start": str(warm_start or ""),
    }
    if as_of is not None:
        run_config["as-of"] = as_of
    if features is not None:
        from fedseg.privacy.protocol.schema import load_schema

        load_schema(features)  # a bad schema fails before any work
        run_config["features"] = features
    if recommender:
        if len(ks) > 1:
            raise ValueError("--recommender needs one --k (choosing k does not fit a recommender)")
        run_config["recommender"] = True
        run_config["recommender-model"] = recommender_model
    if lifetime_value:
        run_config["lifetime-value"] = True
    if epsilon_cap is not None:
        run_config["sim-epsilon-cap"] = parse_epsilon(epsilon_cap, flag="--epsilon-cap")
    SegmentationConfig.from_run_config(run_config)  # bad settings fail before any work
    if workers < 0:
        raise ValueError(f"--workers must be 0 (one per core) or more, got {workers}")
    if data is None:
        check_dataset(dataset or "synthetic")
    with tempfile.TemporaryDirectory(prefix="fedseg-data-") as scratch:
        data_dir = _federation_dir(data, dataset, Path(scratch), seed=seed)
        tables = inspect_federation(data_dir, as_of=as_of or "", strict=strict)
        check_k(ks, tables, where=str(data or f"the built-in {dataset or 'synthetic'} data"))
        output.err.print(output.load_table(tables))
        output.report_lines(tables)
        if len(ks) > 1:
            return _choose_k(data_dir, run_config, ks, out=out, backend=backend)
        result = run(
            data_dir, run_config, out_dir=out, backend=backend, trace_dir=trace,
            state_dir=state_dir, workers=workers or None,
        )  # fmt: skip
    write_report(result)
    files = [out / "model.json", out / "metrics.json", out / "report.md"]
    if as_json:
        typer.echo(json.dumps(result.metrics, indent=2))
        return
    _truth_notice(result.metrics, data)
    for table in (
        output.segment_table(result.model),
        output.run_table(result.model, result.metrics, target=run_config["epsilon"]),
        output.privacy_table(result.model.privacy),
    ):
        output.out.print(table)
    output.out.print(output.files_line(files), markup=False)


def _truth_notice(metrics: dict, data: Path | None) -> None:
    """One line when truth.csv does not list every customer (ARI/NMI cover the rest)."""
    missing = int(metrics.get("truth_missing", 0))
    if missing:
        where = data / "truth.csv" if data is not None else "the built-in truth"
        covered = metrics["n_users"] - missing
        typer.echo(f"{where}: {missing:,} of {metrics['n_users']:,} customers have no planted "
                   f"segment; ARI and NMI cover the other {covered:,}", err=True)  # fmt: skip


def _choose_k(data_dir: Path, run_config: dict, ks: tuple[int, ...], *, out: Path, backend: str):
    """One DP fit per k, all within the one --epsilon; print the noisy cost curve and a k."""
    from fedseg.simulations.experiments.choose_k import choose_k

    if run_config["warm-start"]:
        raise ValueError("--k with several values cannot be combined with --warm-start")
    eps = run_config["epsilon"]
    choice = choose_k(data_dir, run_config, ks, epsilon_total=eps, out_dir=out, backend=backend)
    typer.echo(choice.table())
    typer.echo(f"suggested k: {choice.suggested_k} (all {len(ks)} fits together spent "
               f"ε={choice.epsilon_spent:.3f} of {eps:g}; one model per k in {out}/k<k>)")  # fmt: skip


def _federation_dir(data: Path | None, dataset: str | None, scratch: Path, *, seed: int) -> Path:
    if data is not None and dataset is not None:
        raise ValueError("give --data or --dataset, not both")
    if data is not None:
        if not data.is_dir():
            raise ValueError(f"{data}: no such federation directory")
        return data
    from fedseg.simulations.data.datasets import load_dataset
    from fedseg.simulations.data.federation import write_federation

    name = dataset or "synthetic"
    typer.echo(f"preparing the {name} federation…", err=True)
    fed = load_dataset(name, seed=seed) if name == "synthetic" else load_dataset(name)
    return write_federation(fed, scratch / name)


@app.command(rich_help_panel=RESEARCH)
def sweep(
    data: Annotated[Path | None, Opt(help="A federation directory (see `fedseg generate`)")] = None,
    dataset: Annotated[str | None, Opt(help="synthetic, mixture, cdnow or ml-100k")] = None,
    epsilons: Annotated[
        str | None, Opt(help="Comma-separated total ε values, inf = no noise")
    ] = None,
    seeds: Annotated[int | None, Opt(help="Seeds 0..N-1 per point")] = None,
    scenario: Annotated[
        Path | None, Opt(help="TOML file with a 'scenario' table (flags override it)")
    ] = None,
    k: Annotated[int | None, Opt(help="Number of segments")] = None,
    rounds: Annotated[int | None, Opt(help="DP Lloyd rounds (at most)")] = None,
    delta: Annotated[float | None, Opt(help="δ of each run")] = None,
    users: Annotated[int | None, Opt(help="Customers (generated federations)")] = None,
    merchants: Annotated[int | None, Opt(help="Merchants")] = None,
    segments: Annotated[int | None, Opt(help="Planted segments (generated federations)")] = None,
    alpha: Annotated[
        float | None, Opt(help="Dirichlet α of merchant mixes (small = non-IID)")
    ] = None,
    feature_shift: Annotated[
        float | None, Opt(help="Regional feature shift (log-scale std)")
    ] = None,
    dropout: Annotated[float | None, Opt(help="Probability a merchant drops a message")] = None,
    noise: Annotated[str | None, Opt(help="Comma-separated: local,distributed")] = None,
    secure_agg: Annotated[str | None, Opt(help="Comma-separated: off,on")] = None,
    recommender: Annotated[bool | None, Opt("--recommender/--no-recommender")] = None,
    backend: Annotated[str | None, Opt(help="inprocess or ray")] = None,
    workers: Annotated[int, Opt(help="Parallel runs (processes); 0 = inline")] = 2,
    out: Annotated[Path, Opt(help="Output directory (resumable)")] = Path("fedseg-sweep"),
    as_json: Annotated[
        bool, Opt("--json", help="Print the medians over seeds as JSON records instead")
    ] = False,
) -> None:
    """Run an ε × seed grid: results.csv, plots and report.html (resumable)."""
    from fedseg.simulations.cli import output
    from fedseg.simulations.cli.inputs import check_k, inspect_federation
    from fedseg.simulations.experiments.scenario import load_scenario, scenario_from_mapping
    from fedseg.simulations.experiments.sweep import run_sweep
    from fedseg.simulations.reports.html_report import (
        SUMMARY_HEADINGS,
        summary_table,
        write_sweep_report,
    )

    if data is not None and dataset is not None:
        raise ValueError("give --data or --dataset, not both")
    base = load_scenario(scenario).to_dict() if scenario else {}
    flags = {
        "data": str(data) if data else None, "dataset": dataset, "epsilons": epsilons,
        "seeds": seeds, "k": k, "rounds": rounds, "delta": delta, "users": users,
        "merchants": merchants, "segments": segments, "alpha": alpha,
        "feature_shift": feature_shift, "dropout": dropout, "recommender": recommender,
        "noise": noise.split(",") if noise else None, "backend": backend,
        "secure_agg": secure_agg.split(",") if secure_agg else None,
    }  # fmt: skip
    values = {**base, **{key: v for key, v in flags.items() if v is not None}}
    plan = scenario_from_mapping(values, where=str(scenario or "flags"))
    if plan.data:  # a folder without merchants, or too few customers, fails here, not per run
        check_k((plan.k,), inspect_federation(Path(plan.data)), where=plan.data)
    result = run_sweep(plan, out, workers=workers, progress=not as_json)
    failed = result.results[result.results["status"] != "ok"]
    if len(failed) == len(result.results):
        raise ValueError(
            f"all {len(failed)} runs failed; the first: {failed['error'].iloc[0]} "
            f"(every error: {result.csv_path})"
        )
    paths = write_sweep_report(out, result.results)
    summary = summary_table(result.results)
    if as_json:  # ε = ∞ as "inf", as --epsilons takes it (JSON has no infinity)
        epsilon = summary["epsilon"].map(lambda e: "inf" if e == float("inf") else e)
        typer.echo(summary.assign(epsilon=epsilon).to_json(orient="records", indent=2))
        return
    output.out.print(output.sweep_table(summary, SUMMARY_HEADINGS))
    if len(failed):
        typer.echo(
            f"{len(failed)} run(s) failed; see the error column of {result.csv_path}", err=True
        )
    files = [result.csv_path, *(p for p in paths.values())]
    output.out.print(output.files_line(files), markup=False)


@app.command(rich_help_panel=MERCHANT)
def assign(
    model: Annotated[Path, Opt(help="model.json published by the server")],
    data: Annotated[Path, Opt(help="Your events or features: .csv, .parquet, .db or a SQL URL")],
    out: Annotated[Path, Opt(help="CSV to write: user_id, segment, segment_name")] = Path(
        "assignments.csv"
    ),
    strict: Annotated[
        bool, Opt("--strict", help="Refuse a table with any bad row (e.g. an unknown event name)")
    ] = False,
) -> None:
    """Label your own customers with a published model, locally."""
    from fedseg.client.assign import assign_with_report
    from fedseg.simulations.cli import output

    table, report = assign_with_report(model, data, strict=strict)
    typer.echo(report.summary(), err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    output.out.print(output.assignment_table(table))
    output.out.print(f"wrote {len(table):,} customers to {out}", markup=False)


ledger = typer.Typer(no_args_is_help=True, help="A merchant's own privacy ledger.")
app.add_typer(ledger, name="ledger", rich_help_panel=MERCHANT)


@ledger.command("show")
def ledger_show(
    state_dir: Annotated[Path, Opt(help="The merchant's state directory")],
) -> None:
    """Print what this merchant's ledger has recorded and spent."""
    from fedseg.privacy.ledger import PrivacyLedger

    path = state_dir / "ledger.json"
    report = PrivacyLedger(path, epsilon_cap=float("inf"), delta=_ledger_delta(path)).report()
    typer.echo(f"{path}: ε = {report['epsilon']:.4f} at δ = {report['delta']:g}")
    for entry in report["releases"]:
        typer.echo(f"  {entry['name']}: {entry['count']} × z = {entry['noise_multiplier']:.4g}")


@ledger.command("reset")
def ledger_reset(
    state_dir: Annotated[Path, Opt(help="The merchant's state directory")],
    yes: Annotated[bool, Opt("--yes", help="Confirm: forget everything this ledger spent")] = False,
) -> None:
    """Forget every release this merchant's ledger recorded (its spent budget starts at 0).

    Only for a merchant that knows its customers' earlier releases no longer matter (new
    customers, a new data set): the ledger is what holds the lifetime cap."""
    from fedseg.privacy.ledger import reset_ledger

    if not yes:
        raise ValueError("fedseg ledger reset forgets the spent budget: add --yes to confirm")
    existed = reset_ledger(state_dir / "ledger.json")
    typer.echo(f"{state_dir / 'ledger.json'}: {'reset' if existed else 'no ledger; mark cleared'}")


def _ledger_delta(path: Path) -> float:
    try:
        return float(json.loads(path.read_text()).get("delta", 1e-6))
    except (OSError, ValueError):
        return 1e-6


from fedseg.simulations.cli.deploy import register_deploy_commands  # noqa: E402

register_deploy_commands(app, merchant=MERCHANT, operator=OPERATOR)


def main() -> None:
    """Entry point: bad input ends with one line on stderr and exit code 2, no traceback."""
    from fedseg.privacy.ledger import BudgetExceeded
    from fedseg.server.aggregation import RoundFailed

    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (ValueError, OSError, RoundFailed, BudgetExceeded) as exc:
        typer.echo(f"fedseg: error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
