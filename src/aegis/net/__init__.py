"""Hosts and addresses: parsing destinations and matching them against policy.

* :mod:`aegis.net.host` -- the host a URL or bare ``host:port`` really names,
  by the WHATWG URL Standard (never by hand-splitting strings).
* :mod:`aegis.net.psl` -- the Public Suffix List, to refuse ``*.co.uk``-style
  wildcards.
* :mod:`aegis.net.patterns` -- host patterns (``example.com``, ``*.example.com``,
  ``api.example.com:443``, ``10.1.2.3``, ``[::1]``) and fast sets of them; the
  module docstring is the reference for the pattern language.
* :mod:`aegis.net.cidr` -- IP ranges.

Nothing here resolves DNS or holds global state: the PSL is loaded explicitly
(:func:`load_public_suffix_list`) and passed to whatever needs it.
"""

from aegis.net.cidr import CidrListError, CidrSet
from aegis.net.host import Host, HostKind, parse_destination, parse_host, parse_url_host
from aegis.net.patterns import HostPattern, HostPatternListError, HostSet
from aegis.net.psl import PublicSuffixList, load_public_suffix_list

__all__ = [
    "CidrListError",
    "CidrSet",
    "Host",
    "HostKind",
    "HostPattern",
    "HostPatternListError",
    "HostSet",
    "PublicSuffixList",
    "load_public_suffix_list",
    "parse_destination",
    "parse_host",
    "parse_url_host",
]
