"""Transfer (paper Sec. 5): the producer trains its encoder on object hue with the latent
reconstruction term lambda_rec; consumers train their own linear C_L on the producer's plain
train bundle for tasks the producer never saw, and verify the certified test bundle."""

from __future__ import annotations

import argparse

from lassi.experiments.workspace import Workspace, data_config
from lassi.spec import LossWeights


def transfer(ws: Workspace, args: argparse.Namespace) -> dict:
    """One producer (its loss weights from ``args``) and a consumer per task and sigma_cls; the
    results dict the CLI writes."""
    t = ws.settings.transfer
    folder = ws.out / "transfer"
    data = data_config(args.glow, ws.settings.producer.correlate, ws.data_root)
    spec = ws.spec_for(args.glow, ["orientation"], folder)
    loss = LossWeights(
        adv=args.lambda_adv,
        contr=args.lambda_contr,
        rec=args.lambda_rec,
        delta_contr=t.delta_contr,
        attack_points=t.attack_points,
    )
    name = f"producer-rec{args.lambda_rec}-contr{args.lambda_contr}"
    producer = folder / (name if args.lambda_adv == t.lambda_adv else f"{name}-adv{args.lambda_adv}")
    tasks = list(t.tasks)
    _, train, test = ws.producer_run(
        spec, data, "transfer", 0, producer, args.test, loss=loss, labels=tasks
    )
    rows = []
    for task in tasks:
        for sigma in args.sigmas:
            result = ws.consumer_run(
                spec, train, test, task, sigma, producer, 0, epochs=args.consumer_epochs
            ) | {"task": task, "sigma": sigma}
            rows.append(result)
            print(
                f"{task} sigma {sigma}: acc {result['accuracy']:.3f} cert {result['certified_fairness']:.3f}"
            )
    lines = [
        "| consumer task | producer saw it | consumer epochs | sigma_cls | accuracy % | certified fair % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {'yes' if r['task'] == ws.settings.encoder.task else 'no'} "
            f"| {args.consumer_epochs} | {r['sigma']} "
            f"| {100 * r['accuracy']:.1f} | {100 * r['certified_fairness']:.1f} |"
        )
    results_file = f"results-{producer.name}-epochs{args.consumer_epochs}.json"
    return {"rows": rows, "markdown": "\n".join(lines), "results_file": results_file}
