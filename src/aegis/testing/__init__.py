"""Test helpers shipped as product code: conformance cases other evaluation paths reuse."""
