"""Fit the regressor on cached features: coarse phase, then fine phase; folds and sweeps (see --help).

    python fit.py -o config/kwai_simpleVQA.yml [--fine CONFIG] [--store DIR] [--out RUN_DIR] [--set KEY=VALUE ...]
                  [--seed N] [--folds K | --repeats N [--test-fraction F]] [--sweep SWEEP_YAML] [--jobs N]
"""

from pipeline.cli import fit

if __name__ == "__main__":
    fit()
