"""Extract frozen-backbone features of a CSV's videos into a feature store (see --help).

    python extract_features.py -o config/kwai_simpleVQA.yml [--csv CSV] [--store DIR] [--workers N]
"""

from pipeline.cli import extract

if __name__ == "__main__":
    extract()
