"""``cdpulse evaluate churn|campaign|clv|reco|fairness|forecast --input FILE``: the
streaming models replayed over a file: their quality, and the fairness of their and the
trigger rules' decisions."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from cdpulse.cli.evaluate_forecast import register_forecast
from cdpulse.cli.main import CliError
from cdpulse.settings import get_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="replay an event file through the models in-process and report their quality",
    )
    models = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    churn = models.add_parser("churn", help="churn: ROC AUC and log loss vs recency alone")
    churn.add_argument("--input", required=True, type=Path, help="JSON Lines, in event time order")
    churn.add_argument("--json", action="store_true", help="print the result as JSON")
    churn.set_defaults(func=run_churn)
    campaign = models.add_parser(
        "campaign",
        help="campaign response: ROC AUC and log loss vs each exposure kind's response rate",
    )
    campaign.add_argument(
        "--input", required=True, type=Path, help="JSON Lines, in event time order"
    )
    campaign.add_argument("--json", action="store_true", help="print the result as JSON")
    campaign.set_defaults(func=run_campaign)
    clv = models.add_parser(
        "clv", help="lifetime value: purchases predicted in a holdout vs actual (MAE, RMSE)"
    )
    clv.add_argument("--input", required=True, type=Path, help="JSON Lines of events")
    clv.add_argument(
        "--holdout-days",
        type=float,
        default=None,
        help="days at the end held out for scoring (default: the last third)",
    )
    clv.add_argument("--json", action="store_true", help="print the result as JSON")
    clv.set_defaults(func=run_clv)
    reco = models.add_parser(
        "reco", help="recommendations: next-item hit@k and NDCG@k vs popularity"
    )
    reco.add_argument("--input", required=True, type=Path, help="JSON Lines, in event time order")
    reco.add_argument("--k", type=int, default=10, help="list length (default 10)")
    reco.add_argument("--json", action="store_true", help="print the result as JSON")
    reco.set_defaults(func=run_reco)
    fairness = models.add_parser(
        "fairness",
        help="selection rates, scores, calibration and error rates by customer group, per "
        "model and trigger rule (four-fifths rule)",
    )
    fairness.add_argument(
        "--input", required=True, type=Path, help="JSON Lines, in event time order"
    )
    fairness.add_argument("--json", action="store_true", help="print the report as JSON")
    fairness.set_defaults(func=run_fairness)
    register_forecast(models)
    register_send_time(models)
    register_next_purchase(models)
    register_personas(models)


def register_send_time(models: Any) -> None:
    send_time = models.add_parser(
        "send-time",
        help="send time: email opens inside each customer's send window vs one global best hour",
    )
    send_time.add_argument(
        "--input", required=True, type=Path, help="JSON Lines, in event time order"
    )
    send_time.add_argument("--json", action="store_true", help="print the result as JSON")
    send_time.set_defaults(func=run_send_time)


def register_next_purchase(models: Any) -> None:
    parser = models.add_parser(
        "next-purchase",
        help="next purchase: days between the predicted and the actual next order (MAE) vs "
        "the population's and the customer's own mean gap",
    )
    parser.add_argument("--input", required=True, type=Path, help="JSON Lines of events")
    parser.add_argument(
        "--holdout-days",
        type=float,
        default=None,
        help="days at the end held out for scoring (default: the last third)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_next_purchase)


def run_next_purchase(args: argparse.Namespace) -> int:
    from cdpulse.contract.partitions import partition_of
    from cdpulse.models.next_purchase_eval import evaluate, fit_at_split
    from cdpulse.ops.progress import Reporter
    from cdpulse.pipeline.next_purchase_replay import replay_next_purchase
    from cdpulse.profile.rules import Rules

    settings = get_settings()
    rules = Rules.from_settings(settings)
    events = _documents(args.input)
    with Reporter("evaluate next-purchase", len(events)) as progress:
        result = evaluate(events, args.holdout_days, rules, progress=progress.advance)
    if result is None:
        raise CliError(
            f"no customer in {args.input} ordered both before and after the split; give a "
            "longer history or a different --holdout-days"
        )
    # The live measure, with the split's fit pinned throughout: what a worker holding
    # that fit counts on /metrics for this file (README: Next purchase).
    fit = fit_at_split(events, args.holdout_days, rules)
    lines = _lines(args.input)
    with Reporter("evaluate next-purchase (live)", len(lines)) as progress:
        live = asyncio.run(
            replay_next_purchase(lines, settings, partition_of, fit, progress=progress.advance)
        )
    measured = {p: live.mae_days(p) for p in ("model", "own_gap")}
    if args.json:
        document = result.as_dict()
        document["live"] = {"orders": live.orders, "mae_days": measured}
        print(json.dumps(document, indent=2))
        return 0
    fitted = "BG/NBD fitted" if result.fitted else "no BG/NBD fit: own gaps only"
    print(
        f"{result.customers} customers ordered again after {result.split_days:g} days "
        f"({fitted}); error of the predicted next order, days"
    )
    print(f"{'':34}{'MAE':>10}")
    print(f"{'own cycle shrunk by BG/NBD':34}{result.model_mae:>10.2f}")
    print(f"{'population mean gap':34}{result.population_gap_mae:>10.2f}")
    print(f"{'own mean gap':34}{result.own_gap_mae:>10.2f}")
    print(
        f"live, as the worker counts it with the split's fit: {live.orders} repeat orders "
        "(cdpulse_next_purchase_*)"
    )
    for name, predictor in (("next purchase (model)", "model"), ("own mean gap", "own_gap")):
        mae = measured[predictor]
        print(f"{name:34}{'-' if mae is None else f'{mae:.2f}':>10}")
    return 0


def register_personas(models: Any) -> None:
    parser = models.add_parser(
        "personas",
        help="personas: silhouette and stability of the online clustering vs batch k-means",
    )
    parser.add_argument("--input", required=True, type=Path, help="JSON Lines of events")
    parser.add_argument("--k", type=int, default=0, help="personas (default: CDPULSE_PERSONA_K)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_personas)


def run_personas(args: argparse.Namespace) -> int:
    from cdpulse.models.personas_eval import evaluate
    from cdpulse.pipeline.persona_replay import replay_personas

    settings = get_settings()
    k = args.k or settings.persona_k
    if not 2 <= k <= settings.persona_warmup:
        raise CliError(
            f"--k must be 2 or more and at most CDPULSE_PERSONA_WARMUP "
            f"({settings.persona_warmup}), got {k}"
        )
    replayed = _replayed(args, "personas", replay_personas)
    result = evaluate(
        replayed.examples, k, settings.persona_warmup, settings.persona_checkpoint_examples
    )
    if result is None:
        raise CliError(
            f"too few orders in {args.input} to learn {k} personas "
            f"({len(replayed.examples)} examples, warm-up {settings.persona_warmup}); "
            "give a longer history or set CDPULSE_PERSONA_WARMUP lower"
        )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"{result.examples} examples (customer-days with an order), {result.k} personas")
    print(f"measured on the newest {result.points} points learned")
    print(f"{'':28}{'silhouette':>12}{'stability':>11}")
    print(f"{'online personas':28}{result.silhouette:>12.4f}{result.stability:>11.4f}")
    print(
        f"{'batch k-means':28}{result.baseline_silhouette:>12.4f}{result.baseline_stability:>11.4f}"
    )
    if result.checkpoint_stability is not None:
        print(
            f"stability between the learner's last two checkpoints: {result.checkpoint_stability}"
        )
    for persona, description in sorted(result.descriptions.items()):
        print(f"  persona {persona} ({result.sizes[persona]} points): {description}")
    return 0


def run_send_time(args: argparse.Namespace) -> int:
    from cdpulse.models.send_time_eval import evaluate
    from cdpulse.ops.progress import Reporter
    from cdpulse.profile.rules import Rules

    events = _documents(args.input)
    with Reporter("evaluate send-time", len(events)) as progress:
        result = evaluate(events, Rules.from_settings(get_settings()), progress=progress.advance)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    if not result.scored:
        raise CliError(
            f"no email open in {args.input} could be timed: customers need a few opens, "
            "clicks, visits or orders before one; give a longer history"
        )
    print(
        f"{result.events} events ({result.rejected} rejected), {result.opens} email opens, "
        f"{result.scored} timed (inside the 3-hour window = hit)"
    )
    print(f"{'':28}{'hit rate':>10}")
    print(f"{'own send window':28}{result.model_hit_rate:>10.4f}")
    print(f"{f'global best hour ({result.baseline_hour}h)':28}{result.baseline_hit_rate:>10.4f}")
    return 0


def _lines(path: Path) -> list[bytes]:
    if not path.is_file():
        raise CliError(f"no such file {str(path)!r}; give a JSON Lines file of events")
    return path.read_bytes().splitlines()


def run_churn(args: argparse.Namespace) -> int:
    from cdpulse.models.churn.scoring import health_of
    from cdpulse.pipeline.replay import replay_churn

    result = _replayed(args, "churn", replay_churn)
    quality = health_of(result.snapshot).to_json()
    return _classifier_report(
        args, result, "labelled snapshots", "churned", ("churn model", "recency only"), quality
    )


def run_campaign(args: argparse.Namespace) -> int:
    from cdpulse.pipeline.campaign_replay import replay_campaign

    result = _replayed(args, "campaign", replay_campaign)
    return _classifier_report(
        args, result, "labelled exposures", "responded", ("campaign model", "rate of the kind")
    )


def _replayed(args: argparse.Namespace, model: str, replay: Any) -> Any:
    """``replay`` (``replay_churn``, ``replay_campaign``) over ``--input``, with progress."""
    from cdpulse.contract.partitions import partition_of
    from cdpulse.ops.progress import Reporter

    lines = _lines(args.input)
    with Reporter(f"evaluate {model}", len(lines)) as progress:
        return asyncio.run(replay(lines, get_settings(), partition_of, progress=progress.advance))


def _classifier_report(
    args: argparse.Namespace,
    result: Any,
    examples: str,
    positives: str,
    names: tuple[str, str],
    quality: dict[str, Any] | None = None,
) -> int:
    """An online classifier's test-then-train figures beside its baseline's (and the
    health of the model it ended with, when it has one)."""
    if args.json:
        document = {"model": result.model, "baseline": result.baseline}
        if quality is not None:
            document["quality"] = quality
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"{result.events} events ({result.rejected} rejected), "
        f"{result.model['examples']} {examples} ({result.model['positives']} {positives})"
    )
    print(f"{'':24}{'ROC AUC':>10}{'log loss':>10}")
    for name, figures in zip(names, (result.model, result.baseline), strict=True):
        print(f"{name:24}{figures['roc_auc']:>10.4f}{figures['log_loss']:>10.4f}")
    if quality is not None:
        print(f"model health: {quality['status']}" + "".join(f"; {r}" for r in quality["reasons"]))
    return 0


def run_clv(args: argparse.Namespace) -> int:
    from cdpulse.contract.partitions import partition_of
    from cdpulse.ops.progress import Reporter
    from cdpulse.pipeline.replay import replay_clv

    lines = _lines(args.input)
    with Reporter("evaluate clv", len(lines)) as progress:
        result = asyncio.run(
            replay_clv(
                lines,
                get_settings(),
                partition_of,
                holdout_days=args.holdout_days,
                progress=progress.advance,
            )
        )
    if args.json:
        print(json.dumps({"model": result.model, "baseline": result.baseline}, indent=2))
        return 0
    if not result.model:
        raise CliError(
            f"lifetime value could not be fitted on {args.input}: too few customers with "
            "orders, or no spread in their histories; give a longer or larger history"
        )
    print(
        f"{result.customers} customers with orders; purchases over the last "
        f"{result.holdout_days:g} days predicted from the days before"
    )
    print(f"{'':24}{'MAE':>10}{'RMSE':>10}{'predicted':>11}{'actual':>9}")
    for name, f in (("BG/NBD", result.model), ("own rate so far", result.baseline)):
        print(
            f"{name:24}{f['mae']:>10.4f}{f['rmse']:>10.4f}{f['predicted']:>11.1f}{f['actual']:>9.0f}"
        )
    return 0


def _documents(path: Path) -> list[Any]:
    """The JSON documents of a JSON Lines file (blank lines skipped)."""
    events = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{number}: not JSON ({exc}); fix or drop the line") from exc
    return events


def run_reco(args: argparse.Namespace) -> int:
    from cdpulse.models.reco_eval import evaluate
    from cdpulse.ops.progress import Reporter

    events = _documents(args.input)
    with Reporter("evaluate reco", len(events)) as progress:
        result = evaluate(events, k=args.k, progress=progress.advance)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    k = result["k"]
    print(f"next-item prediction, k={k}, model {result['model_version']}")
    print(f"{'events':18}{'n':>8}{'hit@k':>9}{'NDCG@k':>9}{'pop hit':>9}{'pop NDCG':>10}")
    for name in ("all", "new", "product_viewed", "product_added", "order_completed"):
        f = result.get(name)
        if f:
            print(
                f"{name:18}{f['events']:>8}{f['hit']:>9.3f}{f['ndcg']:>9.3f}"
                f"{f['popularity_hit']:>9.3f}{f['popularity_ndcg']:>10.3f}"
            )
    return 0


def run_fairness(args: argparse.Namespace) -> int:
    import msgspec

    from cdpulse.contract.partitions import partition_of
    from cdpulse.ops.progress import Reporter
    from cdpulse.pipeline.fairness import replay_fairness

    lines = _lines(args.input)
    settings = get_settings()
    with Reporter("evaluate fairness", len(lines)) as progress:
        report = asyncio.run(
            replay_fairness(lines, settings, partition_of, progress=progress.advance)
        )
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
        return 0
    print(f"groups: {', '.join(settings.fairness_groups)}; {report.method}")
    header = (
        f"{'group':18}{'n':>7}{'selected':>10}{'ratio':>7}{'score':>9}"
        f"{'pred':>7}{'obs':>7}{'FPR':>7}{'FNR':>7}"
    )
    for subject in report.subjects:
        print(f"\n{subject.kind} {subject.name}: selected = {subject.selection}")
        for attribute in subject.attributes:
            print(f"  {attribute.attribute} (best treated: {attribute.best or '-'})")
            print(f"  {header}")
            for g in attribute.groups:
                cells = [g.ratio, g.mean_score, g.predicted, g.observed]
                cells += [g.false_positive_rate, g.false_negative_rate]
                ratio, score, pred, obs, fpr, fnr = (_cell(c) for c in cells)
                mark = "  FLAGGED" if g.flagged else ""
                print(
                    f"  {g.group:18}{g.members:>7}{g.selection_rate:>10.1%}{ratio:>7}"
                    f"{score:>9}{pred:>7}{obs:>7}{fpr:>7}{fnr:>7}{mark}"
                )
    print()
    for line in report.flagged or ["nothing flagged"]:
        print(line)
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
