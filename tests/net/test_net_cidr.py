"""CidrSet: IP ranges, strict parsing, IPv4-mapped IPv6."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from aegis.errors import ErrorCode, HostPatternError
from aegis.net import CidrListError, CidrSet, parse_destination, parse_url_host


@pytest.fixture(scope="module")
def private() -> CidrSet:
    return CidrSet.parse(
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.169.254",
         "::1/128", "fc00::/7", "fe80::/10"]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("10.0.0.0", True),
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("9.255.255.255", False),
        ("172.31.255.255", True),
        ("172.32.0.0", False),
        ("169.254.169.254", True),
        ("169.254.169.253", False),
        ("127.0.0.1", True),
        ("8.8.8.8", False),
        ("::1", True),
        ("::2", False),
        ("fd12:3456::1", True),
        ("fe80::1", True),
        ("2001:db8::1", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped: checked against the IPv4 blocks
        ("::ffff:8.8.8.8", False),
        ("::10.1.2.3", False),  # deprecated IPv4-compatible form is not mapped
    ],
)
def test_contains_ip(private: CidrSet, address: str, inside: bool) -> None:
    assert private.contains_ip(ip_address(address)) is inside


def test_mapped_only_one_way() -> None:
    # An IPv6 block does not contain the IPv4 address whose mapped form it covers.
    v6 = CidrSet.parse(["::ffff:0:0/96"])
    assert v6.contains_ip(IPv6Address("::ffff:1.2.3.4"))
    assert not v6.contains_ip(IPv4Address("1.2.3.4"))


def test_contains_host(private: CidrSet) -> None:
    for value in ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/",
                  "http://[::ffff:127.0.0.1]/", "http://10.1.2.3:8080/", "[::1]:22"]:  # fmt: skip
        host = parse_url_host(value) or parse_destination(value)
        assert host is not None, value
        assert private.contains_host(host), value
    for value in ["http://localhost/", "http://8.8.8.8/", "redis://10.0.0.1/", "example.com"]:
        host = parse_url_host(value) or parse_destination(value)
        assert host is not None, value
        assert not private.contains_host(host), value


def test_len_and_networks(private: CidrSet) -> None:
    assert len(private) == 8
    assert [str(n) for n in private][:2] == ["10.0.0.0/8", "172.16.0.0/12"]
    assert private.networks[4].num_addresses == 1
    assert len(CidrSet.parse([])) == 0
    assert not CidrSet.parse([]).contains_ip(IPv4Address("10.0.0.1"))


def test_everything_blocks() -> None:
    everything = CidrSet.parse(["0.0.0.0/0", "::/0"])
    assert everything.contains_ip(IPv4Address("1.2.3.4"))
    assert everything.contains_ip(IPv6Address("2001:db8::1"))


@pytest.mark.parametrize(
    "cidr",
    ["10.0.0.1/8", "192.168.1.1/24", "2001:db8::1/32", "10.0.0.0/33", "::/129", "10.0.0.0/",
     "10.0.0.0/8/8", "010.0.0.0/8", "10.0.0/8", "10.0.0.0/255.0.0.0", "10.0.0.0/0.255.255.255",
     "fe80::1%eth0/128", "[::1]/128", " 10.0.0.0/8", "10.0.0.0/8 ", "", "example.com/8",
     "10.0.0.0/-1", "1.2.3.4/٨"],
)  # fmt: skip
def test_invalid_cidrs(cidr: str) -> None:
    with pytest.raises(CidrListError) as caught:
        CidrSet.parse(["127.0.0.0/8", cidr])
    err = caught.value
    assert isinstance(err, HostPatternError)
    assert err.code is ErrorCode.POLICY_INVALID_CIDR
    assert err.index == 1
    assert err.cidr == cidr
    assert repr(cidr) in err.message


def test_host_bits_message() -> None:
    with pytest.raises(HostPatternError, match="host bits set"):
        CidrSet.parse(["10.0.0.1/8"])


def test_bare_string_refused() -> None:
    with pytest.raises(HostPatternError) as caught:
        CidrSet.parse("10.0.0.0/8")
    assert caught.value.code is ErrorCode.POLICY_INVALID_CIDR


def test_non_string_refused() -> None:
    with pytest.raises(CidrListError):
        CidrSet.parse([167772160])  # type: ignore[list-item]
