"""Speed of memsim itself: ``python -m benchmarks`` (``make bench``) runs every
``bench_*.py`` module's ``run()`` and prints one JSON line per result. Benchmarks report;
they assert nothing about time."""
