"""Score a CSV's videos with a fitted model; extracts the features not cached yet (see --help).

    python score.py --model RUN_DIR/best_model.pth --csv CSV --out scores.csv [--per-second FILE] [--metrics FILE]
                    [--report FILE.html [--report-worst N]]
"""

from pipeline.cli import score

if __name__ == "__main__":
    score()
