"""Policy as code: the language (model), its compiler and the evaluator."""

from aegis.policy.compiled import CompiledPolicy, CompiledRule
from aegis.policy.compiler import compile_sources, compile_text, load_policy, policy_files
from aegis.policy.engine import decide

__all__ = [
    "CompiledPolicy",
    "CompiledRule",
    "compile_sources",
    "compile_text",
    "decide",
    "load_policy",
    "policy_files",
]
