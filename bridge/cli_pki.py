"""``openstrom-bridge pki ...``: the link CA, device and Modbus/TCP Security client certificates."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import load_config
from .errors import ConfigError

EXIT_OK = 0


def state_dir_of(args: argparse.Namespace) -> Path:
    """state_dir from --state-dir, or from --config (relative to the config file, as the bridge reads it)."""
    if args.state_dir:
        return Path(args.state_dir)
    if args.config:
        config = load_config(args.config)
        state = Path(config.bridge.state_dir)
        return state if state.is_absolute() else Path(args.config).resolve().parent / state
    raise ConfigError("give --config FILE (the bridge's configuration) or --state-dir DIR")


def cmd_pki_init(args: argparse.Namespace) -> int:
    from .pki import PkiPaths, init_pki

    state = state_dir_of(args)
    existed = PkiPaths.under(state).exists()
    paths = init_pki(state, list(args.host), force=args.force)
    if existed and not args.force:
        print(f"link PKI already in {paths.root} (kept; --force makes a new CA, which every device must then get)")
    else:
        print(f"link CA and bridge certificate written to {paths.root} (private keys mode 0600)")
    return EXIT_OK


def cmd_pki_issue_device(args: argparse.Namespace) -> int:
    from .pki import issue_device

    crt, key, ca = issue_device(state_dir_of(args), args.serial, Path(args.out))
    print(f"device {args.serial}: {crt}, {key} (keep it secret), {ca}")
    tls = f"--tls-cert {crt} --tls-key {key} --tls-ca {ca}"
    print(f"  simulator: openstrom-device-sim --serial-number {args.serial} {tls}")
    return EXIT_OK


def cmd_pki_issue_client(args: argparse.Namespace) -> int:
    from .pki import issue_client

    crt, key, ca = issue_client(state_dir_of(args), args.name, args.role, Path(args.out))
    print(f"Modbus/TCP Security client {args.name} (role {args.role}): {crt}, {key} (keep it secret), {ca}")
    return EXIT_OK
