"""The bundle benchmark: ``python -m benchmarks.bundles [--quick] [--calls N]``.

Loading the generated 5,000-rule bundle, and the native engine against regorus
evaluating the bundle's exported ``policy.rego``. Prints one JSON document
(see benchmarks/README.md for how to read it).
"""
