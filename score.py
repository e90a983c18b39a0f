"""Score videos with a fitted model: a CSV's, or those --videos finds; extracts the features not cached yet (see --help).

    python score.py --model RUN_DIR/best_model.pth --csv CSV | --videos DIR|FILE|GLOB|- ... --out scores.csv|.jsonl|.parquet
                    [--per-second FILE] [--metrics FILE] [--report FILE.html [--report-worst N]]
"""

from pipeline.cli import score

if __name__ == "__main__":
    score()
