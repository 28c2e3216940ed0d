"""The command line and the configuration file, as an operator meets them."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = os.environ.get('BACKFILLD', str(ROOT / 'build' / 'backfilld'))
BAD = ROOT / 'tests' / 'config' / 'bad'


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)


def expected_bad_configs():
    for line in (BAD / 'EXPECTED').read_text().splitlines():
        if line.strip() and not line.startswith('#'):
            name, position, message = line.split('\t')
            yield name, position, message


def test_example_config_is_valid():
    result = run('--check-config', '-c', str(ROOT / 'config' / 'backfilld.yaml'))
    assert result.returncode == 0, result.stderr
    assert 'valid' in result.stdout


@pytest.mark.parametrize('name,position,message', list(expected_bad_configs()))
def test_bad_config_is_refused_with_its_position(name, position, message):
    path = BAD / name
    for args in (('--check-config', '-c', str(path)), ('-c', str(path))):
        result = run(*args)
        assert result.returncode != 0
        first = result.stderr.strip().splitlines()[0]
        assert f'{path}:{position}:' in first, first
        assert message in first, first


def test_missing_config_file():
    result = run('-c', '/nonexistent/backfilld.yaml')
    assert result.returncode != 0
    assert '/nonexistent/backfilld.yaml' in result.stderr


def test_version_and_usage():
    assert run('--version').stdout.startswith('backfilld ')
    bad = run('--no-such-option')
    assert bad.returncode == 2 and 'Usage' in bad.stderr
