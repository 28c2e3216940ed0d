"""The systemd units: systemd-analyze accepts them, and the sandbox holds.

systemd-analyze runs offline here (no systemd as PID 1 is needed). Its verify
returns 0 even for an unknown key or a value it cannot parse (it logs
"..., ignoring" and goes on), so besides the exit status every test fails on
any line of its output that names one of our units.
"""
import os
import pathlib
import re
import shutil
import stat
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT_DIR = ROOT / 'systemd'
UNITS = ('backfilld.service', 'backfilld.socket')
MAX_EXPOSURE = 2.0
# A line of systemd-analyze's output about one of our units.
OUR_UNIT = re.compile(r'backfilld\.(service|socket)')
EXPOSURE = re.compile(r'Overall exposure level for backfilld\.service: (\d+\.\d+)')

SYSTEMD_ANALYZE = shutil.which('systemd-analyze')
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason='systemd-analyze not installed (package systemd; scripts/install-deps.sh)')


def daemon_binary(tmp_path):
    """build/backfilld if it exists, else an executable stand-in: verify only
    checks that ExecStart= names an executable file."""
    path = pathlib.Path(os.environ.get('BACKFILLD', ROOT / 'build' / 'backfilld'))
    if path.is_file() and os.access(path, os.X_OK):
        return path.resolve()
    dummy = tmp_path / 'dummy-backfilld'
    dummy.write_text('#!/bin/sh\nexit 0\n')
    dummy.chmod(dummy.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return dummy


@pytest.fixture
def units(tmp_path):
    """The units as `make install` writes them, with the installed paths
    pointing into tmp_path: the same substitutions as the Makefile's UNIT_SED,
    to a prefix where sbin/backfilld is the built daemon."""
    prefix = tmp_path / 'prefix'
    for sub in ('sbin', 'bin', 'etc/backfilld', 'doc'):
        (prefix / sub).mkdir(parents=True)
    (prefix / 'sbin' / 'backfilld').symlink_to(daemon_binary(tmp_path))
    replacements = {
        '/usr/local/sbin/': f'{prefix}/sbin/',
        '/usr/local/bin/': f'{prefix}/bin/',
        '/etc/backfilld/': f'{prefix}/etc/backfilld/',
        '/usr/share/doc/backfilld/': f'{prefix}/doc/',
    }
    out = tmp_path / 'units'
    out.mkdir()
    for name in UNITS:
        text = (UNIT_DIR / name).read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        (out / name).write_text(text)
    return out


def analyze(*args, cwd):
    env = dict(os.environ, SYSTEMD_LOG_LEVEL='notice', SYSTEMD_PAGER='', SYSTEMD_COLORS='0')
    return subprocess.run([SYSTEMD_ANALYZE, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def complaints(result):
    return [line for line in (result.stdout + result.stderr).splitlines()
            if OUR_UNIT.search(line)]


def describe(result):
    return f'exit status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}'


@needs_analyze
def test_verify_accepts_the_units(units):
    result = analyze('verify', '--man=no', '--generators=no',
                     *(f'./{name}' for name in UNITS), cwd=units)
    assert result.returncode == 0, describe(result)
    assert complaints(result) == [], describe(result)


@needs_analyze
def test_verify_catches_a_broken_unit(units):
    """The check above is not blind: a misspelt key, a bad value and a
    missing binary are each reported about our unit."""
    service = units / 'backfilld.service'
    text = service.read_text()
    text = text.replace('\nUMask=', '\nUMsk=').replace('\nRestart=on-failure', '\nRestart=sometimes')
    text = re.sub(r'\nExecStart=\S+', '\nExecStart=/nonexistent/backfilld', text)
    service.write_text(text)
    result = analyze('verify', '--man=no', '--generators=no',
                     *(f'./{name}' for name in UNITS), cwd=units)
    found = '\n'.join(complaints(result))
    assert 'UMsk' in found and 'sometimes' in found and '/nonexistent/backfilld' in found, \
        describe(result)


@needs_analyze
def test_security_exposure_is_low(units):
    result = analyze('security', '--offline=yes', f'--threshold={int(MAX_EXPOSURE * 10)}',
                     '--no-pager', './backfilld.service', cwd=units)
    match = EXPOSURE.search(result.stdout)
    assert match, describe(result)
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, describe(result)
    # --threshold: non-zero exit when the level is over it (checked as well,
    # in case the printed format changes).
    assert result.returncode == 0, describe(result)
    assert [line for line in result.stderr.splitlines() if OUR_UNIT.search(line)] == [], \
        describe(result)


def directives(name):
    """{key: [values]} of a unit file, in order."""
    found = {}
    for line in (UNIT_DIR / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(('#', ';', '[')):
            key, _, value = line.partition('=')
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def config_default(section, key):
    """A key's value in the example configuration (two-level YAML)."""
    current = None
    for line in (ROOT / 'config' / 'backfilld.yaml').read_text().splitlines():
        if re.match(r'^[a-z_]+:\s*$', line):
            current = line.rstrip(':\n ')
        m = re.match(r'^  ([a-z_]+):\s*(\S+)', line)
        if m and current == section and m.group(1) == key:
            return m.group(2)
    raise AssertionError(f'{section}.{key} not in config/backfilld.yaml')


def test_socket_unit_matches_the_service_and_the_config():
    service, socket = directives('backfilld.service'), directives('backfilld.socket')
    # The daemon and backfillctl default to the same path as ListenStream=.
    assert socket['ListenStream'] == [config_default('control', 'socket')]
    assert socket['Service'] == ['backfilld.service']
    runtime_dir = '/run/' + service['RuntimeDirectory'][0]
    assert os.path.dirname(socket['ListenStream'][0]) == runtime_dir
    # Without it, stopping the service would delete the socket unit's socket.
    assert service['RuntimeDirectoryPreserve'] == ['yes']
    assert socket['SocketUser'] == service['User']
    assert socket['SocketGroup'] == service['Group']


def seconds(value):
    m = re.fullmatch(r'(\d+)(s|min)?', value)
    assert m, f'cannot parse the duration {value!r}'
    return int(m.group(1)) * (60 if m.group(2) == 'min' else 1)


def test_service_matches_the_daemon():
    service = directives('backfilld.service')
    assert service['Type'] == ['notify']
    assert service['NotifyAccess'] == ['main']
    assert service['ExecStart'] == ['/usr/local/sbin/backfilld -c /etc/backfilld/backfilld.yaml']
    assert seconds(service['WatchdogSec'][0]) > 0
    # SIGKILL must not cut the shutdown grace short.
    grace_ms = int(config_default('engine', 'shutdown_grace_ms'))
    assert seconds(service['TimeoutStopSec'][0]) * 1000 > grace_ms
    # It would show every backfillctl user as "nobody" to SO_PEERCRED.
    assert 'PrivateUsers' not in service


def test_documentation_names_pages_that_exist():
    """Every man: page a unit names is in man/, and make install installs
    the README that the file:// link points to."""
    for name in UNITS:
        for value in directives(name).get('Documentation', []):
            for uri in value.split():
                if uri.startswith('man:'):
                    page = re.fullmatch(r'man:([\w.-]+)\((\d)\)', uri)
                    assert page, uri
                    assert (ROOT / 'man' / f'{page.group(1)}.{page.group(2)}').is_file(), \
                        f'{name}: {uri} has no man/{page.group(1)}.{page.group(2)}'
                else:
                    assert uri == 'file:///usr/share/doc/backfilld/README.md', uri


def test_every_sandbox_directive_says_why():
    """Below the sandbox marker, each directive has a comment right above it
    (or follows a line with the same key, as SystemCallFilter= does)."""
    lines = (UNIT_DIR / 'backfilld.service').read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('# ---- Sandbox'))
    end = lines.index('[Install]')
    previous = ''
    for line in lines[start:end]:
        if line and not line.startswith('#'):
            key = line.split('=', 1)[0]
            assert previous.startswith('#') or previous.split('=', 1)[0] == key, \
                f'backfilld.service: no comment says why {line!r}'
        previous = line
