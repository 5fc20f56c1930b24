"""The build as a spark-submit application.

    zip -r recommender.zip recommender
    spark-submit --master yarn --py-files recommender.zip [--archives env.tar.gz#env ...] \\
        recommender/spark_submit.py build hdfs:///data/posts.parquet --out models/big

runs ``python -m recommender build ... --engine spark`` on the session spark-submit made
(its ``--master`` and ``--conf`` settings apply). It imports ``recommender`` from
``--py-files``, so it uses absolute imports; every other argument is the CLI's.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from recommender.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["build"] and "--engine" not in args:
        args += ["--engine", "spark"]
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
