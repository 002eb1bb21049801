"""A real Python program profiled by the pyroscope-io SDK, for Ember's acceptance tests.

It spends about 90% of its CPU time in `ember_hot_loop` and the rest in
`ember_light_loop`, then shuts the SDK down, which flushes the last profile.

usage: busy_app.py --server URL --app NAME [--tenant ID] [--seconds N] [--basic-auth USER:PASS]
"""

import argparse
import sys
import time

import pyroscope


def ember_hot_loop(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def ember_light_loop(n):
    total = 0
    for i in range(n):
        total += i
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--tenant", default="")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--basic-auth", default="", help="user:password")
    args = parser.parse_args()

    user, _, password = args.basic_auth.partition(":")
    pyroscope.configure(
        application_name=args.app,
        basic_auth_username=user,
        basic_auth_password=password,
        server_address=args.server,
        tenant_id=args.tenant,
        sample_rate=100,
        tags={"suite": "ember-acceptance"},
    )
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline:
        ember_hot_loop(200_000)
        ember_light_loop(20_000)
        rounds += 1
    pyroscope.shutdown()
    print(f"ran {rounds} rounds", file=sys.stderr)


if __name__ == "__main__":
    main()
