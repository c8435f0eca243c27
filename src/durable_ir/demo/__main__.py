"""``python -m durable_ir.demo``: the same as ``durable-ir demo``."""

from durable_ir.demo.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
