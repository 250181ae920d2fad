#!/usr/bin/env python3
"""Print a kiln-train run's metrics.jsonl as the Markdown table docs/results.md uses.

    python3 scripts/metrics_table.py RUN/metrics.jsonl

One row per epoch line; the elapsed column is the line's `seconds`, the run's wall time so far
(training and validation). Standard library only, so it runs wherever kiln-train's output is.
"""
import json
import sys


def minutes_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60:02d} s"


def print_table(rows: list) -> None:
    truth = rows[-1]["val_colorfulness_true"]
    print("| epoch | steps | lr | train loss | val MSE(ab) | grey MSE(ab) | PSNR dB | grey PSNR dB"
          f" | colourfulness (truth {truth:.1f}) | img/s | elapsed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        epoch = r["epoch"]
        epoch_text = f"{epoch:g}" if epoch == int(epoch) else f"{epoch:.2f}"
        print(f"| {epoch_text} | {r['step']} | {r['lr']:.2e} | {r['train_loss']:.5f}"
              f" | {r['val_mse_ab']:.2f} | {r['baseline_mse_ab']:.2f} | {r['val_psnr']:.2f}"
              f" | {r['baseline_psnr']:.2f} | {r['val_colorfulness_pred']:.1f}"
              f" | {r['images_per_s']:.1f} | {minutes_seconds(r['seconds'])} |")
    best = min(rows, key=lambda r: r["val_mse_ab"])
    print(f"\nbest: epoch {best['epoch']:g}, val MSE(ab) {best['val_mse_ab']:.2f}"
          f" (grey {best['baseline_mse_ab']:.2f}); last: {rows[-1]['val_mse_ab']:.2f}")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: metrics_table.py RUN/metrics.jsonl", file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if not rows:
            raise ValueError("no epoch lines")
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("a line is not a JSON object")
        print_table(rows)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        print(f"metrics_table.py: {path}: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"metrics_table.py: {path}: a line lacks field {e}; is this kiln-train's metrics.jsonl?",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
