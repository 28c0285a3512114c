#!/bin/bash
# SPDX-License-Identifier: MIT
# Host A's NAT maps the WireGuard port to another public port (51820 -> 52820) for every
# destination and filters inbound; host B is behind a cone NAT. The node must use the mapping its
# probe revealed, not the WireGuard port.
set -u
. "$(dirname "$0")/lib.sh"

tb_init
tb_pair portmap cone
tb_assert_tunnel a b 20
tb_assert_endpoint b a
tb_assert_endpoint a b
tb_pass "portmap ($(tb_endpoint b a)) <-> cone: direct tunnel"
