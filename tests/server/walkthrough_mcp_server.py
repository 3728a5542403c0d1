"""The walkthrough's upstream MCP server: one read tool, served over stdio.

The gateway's MCP proxy launches it (``mcp.options.upstreams[].stdio``); as
upstream ``crm`` its tool ``read`` appears to agents as ``crm.read``, the tool
the walkthrough policy allows.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("walkthrough-crm")


@server.tool(description="Read the CRM record of an account.")
def read(account: str) -> str:
    return f"record of {account}"


if __name__ == "__main__":
    server.run()
