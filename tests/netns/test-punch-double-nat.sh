#!/bin/bash
# SPDX-License-Identifier: MIT
# Host A is behind two cone NATs (NAT behind NAT, as with a home router behind a provider's
# router); host B is behind one.
set -u
. "$(dirname "$0")/lib.sh"

tb_init
tb_pair double cone
tb_assert_tunnel a b 20
tb_assert_endpoint b a
tb_assert_endpoint a b
tb_pass "double NAT <-> cone: direct tunnel"
