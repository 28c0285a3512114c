#!/bin/bash
# SPDX-License-Identifier: MIT
# Host A has a public address and no NAT (it receives the coordinator's filter-test poison
# itself); host B is behind a cone NAT.
set -u
. "$(dirname "$0")/lib.sh"

tb_init
tb_pair public cone
tb_assert_tunnel a b 20
tb_assert_endpoint a b
tb_assert_endpoint b a
tb_pass "public <-> cone: direct tunnel"
