"""memsim: a simulator and cost model of the GPU memory hierarchy for LLM attention
(docs/DESIGN.md). ``memsim.__version__`` is the installed distribution's version."""


def __getattr__(name: str) -> str:
    if name == "__version__":   # read on demand: importing memsim stays free of metadata I/O
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("memsim")
        except PackageNotFoundError:   # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'memsim' has no attribute {name!r}")
