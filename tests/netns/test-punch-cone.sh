#!/bin/bash
# SPDX-License-Identifier: MIT
# Two hosts, each behind a port-preserving NAT that drops unsolicited inbound packets (a typical
# home router), get a direct WireGuard tunnel through wgpunch.
set -u
. "$(dirname "$0")/lib.sh"

tb_init
tb_pair cone cone
tb_assert_tunnel a b 20
tb_assert_endpoint a b
tb_assert_endpoint b a
tb_pass "cone <-> cone: direct tunnel"
