"""Issue #14, finding 9: the admin URL a node advertises is never a wildcard address."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from wsops.admin.advertise import advertised_url, routable_address
from wsops.config import Settings


async def test_a_configured_url_wins_and_a_bound_address_is_kept() -> None:
    assert await advertised_url("0.0.0.0", 9765, "https://admin.example:443/") == (
        "https://admin.example:443")
    assert await advertised_url("10.1.2.3", 9765, None) == "http://10.1.2.3:9765"
    assert await advertised_url("::1", 9765, None) == "http://[::1]:9765"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
async def test_a_wildcard_host_becomes_a_routable_address_of_this_machine(host: str) -> None:
    url = await advertised_url(host, 9765, None)
    address = url.removeprefix("http://").rsplit(":", 1)[0].strip("[]")
    ip = ipaddress.ip_address(address)
    assert not ip.is_unspecified, url
    if routable_address((socket.AF_INET,)) is not None:
        assert not ip.is_loopback and not ip.is_link_local, url
    if host == "0.0.0.0":
        assert ip.version == 4


def test_the_routable_address_prefers_the_host_name_then_skips_what_is_not_routable() -> None:
    named = ["127.0.1.1", "169.254.3.4", "10.9.8.7"]
    assert routable_address((socket.AF_INET,), named) == "10.9.8.7"
    assert routable_address((socket.AF_INET,), ["fd00::5"]) != "fd00::5"  # wrong family
    assert routable_address((socket.AF_INET, socket.AF_INET6), ["fe80::1%eth0", "fd00::5"]) == (
        "fd00::5")


@pytest.mark.parametrize("url", ["http://0.0.0.0:9765", "http://[::]:9765", "10.0.0.1:9765",
                                 "ftp://h/", "http://:9765"])
def test_settings_refuse_an_unusable_advertise_url(url: str) -> None:
    with pytest.raises(ValueError, match="admin_advertise_url"):
        Settings(admin_advertise_url=url)
