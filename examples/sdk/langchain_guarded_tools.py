"""LangChain tools guarded by Aegis, in-process, on the finance-payments example policy.

No model and no network: the script calls the tools the way an agent loop
would (``invoke`` with arguments, or with a model's tool call) and prints what
Aegis let through. Run it from the repository root::

    .venv/bin/python examples/sdk/langchain_guarded_tools.py

The policy (examples/finance-payments/policy.yaml): finance-agent may pay up to
5,000 in USD/EUR/GBP; above that the payments desk must approve; everything
else is denied by default; reading the balance is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from aegis.sdk import ApprovalRequired, LocalAegis, PolicyViolation, aegis_context
from aegis.sdk.langchain import guard_tool, guard_tools

POLICY = Path(__file__).resolve().parent.parent / "finance-payments"

#: LangChain tool name -> the tool name the policy knows.
AEGIS_NAMES = {"create_payment": "stripe.create_payment", "get_balance": "stripe.get_balance"}


@tool
def create_payment(amount: float, currency: str, payee: str) -> str:
    """Send a payment with Stripe."""
    return f"payment of {amount:,.2f} {currency} to {payee} sent"


@tool
def get_balance() -> str:
    """Read the account balance."""
    return "balance: 12,400.00 USD"


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_balance", {}),
    ("create_payment", {"amount": 120, "currency": "USD", "payee": "acct_123"}),
    ("create_payment", {"amount": 7500, "currency": "EUR", "payee": "acct_456"}),
    ("create_payment", {"amount": 50, "currency": "BTC", "payee": "acct_789"}),
]


def main() -> None:
    with LocalAegis(POLICY) as aegis:
        guarded = guard_tools([create_payment, get_balance], aegis, names=AEGIS_NAMES)
        tools = {t.name: t for t in guarded}

        # The agent's identity for every tool call in this block.
        with aegis_context(tenant="acme", agent_id="finance-agent"):
            for name, args in CALLS:
                try:
                    result = tools[name].invoke(args)
                except ApprovalRequired as exc:
                    group = exc.approval.group if exc.approval else "?"
                    print(f"approval needed  {name} {args}: ask {group}, ticket {exc.approval_id}")
                except PolicyViolation as exc:
                    print(f"denied           {name} {args}: {exc.code} ({exc.reason})")
                else:
                    print(f"allowed          {name} {args}: {result}")

        # With on_violation="message", the model gets the refusal as an error ToolMessage
        # instead of the loop stopping, and can choose another action.
        for_model = guard_tool(
            create_payment,
            aegis,
            name=AEGIS_NAMES["create_payment"],
            tenant="acme",
            agent_id="finance-agent",
            on_violation="message",
        )
        model_call = {
            "type": "tool_call",
            "id": "call_1",
            "name": "create_payment",
            "args": {"amount": 9000, "currency": "USD", "payee": "acct_999"},
        }
        message = for_model.invoke(model_call)
        assert isinstance(message, ToolMessage)
        print(f"tool message     status={message.status} content={message.content}")


if __name__ == "__main__":
    main()
