"""Several databases on one host (issue 15): the systemd templates
backfilld@.service and backfilld@.socket, and `backfillctl -i NAME`, which
reaches instance NAME at /run/backfilld/NAME.sock.

The name checks and the socket precedence are read from the path that
backfillctl reports when nobody listens there (exit 3); two tests start a
real daemon under /run/backfilld (the tests run as root), one that creates
its socket there and one socket-activated the way backfilld@NAME.socket
does it, and remove what they made.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pytest

from daemon import BACKFILLCTL, socket_activated
from test_units import MAX_EXPOSURE, analyze, daemon_binary, describe, needs_analyze

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT_DIR = ROOT / 'systemd'
RUNTIME_DIR = pathlib.Path('/run/backfilld')
# sun_path is 108 bytes: "/run/backfilld/" + NAME + ".sock" + NUL.
MAX_NAME = 108 - len('/run/backfilld/.sock') - 1
TEMPLATES = ('backfilld@.service', 'backfilld@.socket')
# A line of systemd-analyze's output about one of the templates.
OUR_TEMPLATE = re.compile(r'backfilld@[\w.-]*\.(service|socket)')


def ctl(*args, env=None):
    """backfillctl ARGS with BACKFILLD_SOCKET and BACKFILLD_INSTANCE unset
    unless env sets them."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('BACKFILLD_SOCKET', 'BACKFILLD_INSTANCE')}
    full_env.update(env or {})
    return subprocess.run([str(BACKFILLCTL), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30, env=full_env)


def unique_name():
    return f'bf-test-{os.getpid()}-{uuid.uuid4().hex[:8]}'


def socket_tried(result):
    """The socket backfillctl tried, from its "daemon not running" line."""
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    m = re.fullmatch(r'backfillctl: daemon not running\? cannot connect to (.+\.sock|\S+): [^:]*\n',
                     result.stderr)
    assert m, result.stderr
    return m.group(1)


# -- the name ----------------------------------------------------------------

@pytest.mark.parametrize('name, reason', [
    ('', 'is empty'),
    ('a/b', 'is not a file name'),
    ('/etc/passwd', 'is not a file name'),
    ('app/', 'is not a file name'),
    ('.', 'is not a file name'),
    ('..', 'is not a file name'),
    ('a\nb', 'control character'),
    ('x' * (MAX_NAME + 1), f'is {MAX_NAME + 1} bytes long, more than the {MAX_NAME}'),
])
def test_a_bad_instance_name_is_a_usage_error(name, reason):
    for result, source in ((ctl('-i', name, 'status'), '-i'),
                           (ctl('--instance', name, 'status'), '-i'),
                           (ctl('status', env={'BACKFILLD_INSTANCE': name}), 'BACKFILLD_INSTANCE')):
        if source == 'BACKFILLD_INSTANCE' and name == '':
            continue        # an empty variable counts as unset
        assert result.returncode == 2, (name, result.returncode, result.stderr)
        assert result.stdout == ''
        # One line, saying where the name came from and what is wrong with it.
        assert result.stderr.count('\n') == 1, result.stderr
        assert result.stderr.startswith(f'backfillctl: {source}: the instance name '), result.stderr
        assert reason in result.stderr, result.stderr


def test_the_instance_socket_is_in_the_runtime_directory():
    name = unique_name()
    assert socket_tried(ctl('-i', name, 'status')) == f'/run/backfilld/{name}.sock'
    assert socket_tried(ctl(f'--instance={name}', 'status')) == f'/run/backfilld/{name}.sock'
    # The longest name that fits, and names that are odd but file names.
    longest = 'y' * MAX_NAME
    assert socket_tried(ctl('-i', longest, 'status')) == f'/run/backfilld/{longest}.sock'
    assert len(f'/run/backfilld/{longest}.sock') == 107
    for odd in ('...', '.hidden', 'a b', '-dash', 'app.sock'):
        assert socket_tried(ctl('-i', odd, 'status')) == f'/run/backfilld/{odd}.sock'
    # The default socket is the instance "backfilld".
    assert socket_tried(ctl('status')) == '/run/backfilld/backfilld.sock'
    assert socket_tried(ctl('-i', 'backfilld', 'status')) == '/run/backfilld/backfilld.sock'


def test_socket_precedence(tmp_path):
    """-s, -i, $BACKFILLD_SOCKET, $BACKFILLD_INSTANCE, the default: the
    command line before the environment, a path before a name."""
    path, env_path = str(tmp_path / 'opt.sock'), str(tmp_path / 'env.sock')
    both = {'BACKFILLD_SOCKET': env_path, 'BACKFILLD_INSTANCE': 'fromenv'}
    assert socket_tried(ctl('-s', path, 'status', env=both)) == path
    assert socket_tried(ctl('-i', 'opt', 'status', env=both)) == '/run/backfilld/opt.sock'
    assert socket_tried(ctl('status', env=both)) == env_path
    assert socket_tried(ctl('status', env={'BACKFILLD_INSTANCE': 'fromenv'})) == \
        '/run/backfilld/fromenv.sock'
    # Empty variables count as unset.
    assert socket_tried(ctl('status', env={'BACKFILLD_SOCKET': '',
                                           'BACKFILLD_INSTANCE': 'fromenv'})) == \
        '/run/backfilld/fromenv.sock'
    assert socket_tried(ctl('status', env={'BACKFILLD_INSTANCE': ''})) == \
        '/run/backfilld/backfilld.sock'
    # A bad $BACKFILLD_INSTANCE that is not used stops nothing.
    assert socket_tried(ctl('-s', path, 'status', env={'BACKFILLD_INSTANCE': 'a/b'})) == path
    assert socket_tried(ctl('status', env={'BACKFILLD_SOCKET': env_path,
                                           'BACKFILLD_INSTANCE': '..'})) == env_path


def test_socket_and_instance_together_are_a_usage_error(tmp_path):
    for args in (('-s', str(tmp_path / 's'), '-i', 'app', 'status'),
                 ('--instance', 'app', 'status', '--socket', str(tmp_path / 's'))):
        result = ctl(*args)
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert result.stderr == 'backfillctl: -s and -i both name the socket: give one of them\n'
    # Usage errors come before any connection: the command is checked too.
    result = ctl('-i', 'a/b', 'frobnicate')
    assert result.returncode == 2 and 'unknown command' in result.stderr, result.stderr


def test_help_says_how_the_socket_is_chosen():
    out = ctl('--help').stdout
    assert out.startswith('usage: backfillctl [-s SOCKET | -i NAME] ')
    assert re.search(r'^  -i, --instance NAME +the instance backfilld@NAME', out, re.M), out
    flat = ' '.join(out.split())
    assert ('/run/backfilld/NAME.sock neither -s nor -i: $BACKFILLD_SOCKET, else the '
            'instance $BACKFILLD_INSTANCE, else /run/backfilld/backfilld.sock') in flat, out


def test_man_page_documents_the_instance():
    page = (ROOT / 'man' / 'backfillctl.1').read_text()
    assert r'\-\-instance' in page and 'BACKFILLD_INSTANCE' in page
    assert '/run/backfilld/' in page and 'backfilld@' in page


def test_readme_shows_the_template_and_links_the_scaling_notes():
    readme = (ROOT / 'README.md').read_text()
    section = readme[readme.index('### Several databases on one host'):]
    section = section[:section.index('\n## ')]
    for needed in ('backfilld@.service', 'backfillctl -i', '/run/backfilld/NAME.sock',
                   '](docs/scaling.md)'):
        assert needed in section, needed
    assert (ROOT / 'docs' / 'scaling.md').is_file()


# -- a real daemon -----------------------------------------------------------

class RuntimeDir:
    """/run/backfilld for one test: made if missing, and then removed again
    if it is empty; the test's own socket path is removed in any case."""

    def __init__(self, name):
        self.made = not RUNTIME_DIR.exists()
        RUNTIME_DIR.mkdir(mode=0o755, exist_ok=True)
        self.socket = RUNTIME_DIR / f'{name}.sock'
        assert not self.socket.exists(), self.socket

    def cleanup(self):
        if os.path.lexists(self.socket):
            self.socket.unlink()
        if self.made:
            try:
                RUNTIME_DIR.rmdir()
            except OSError:
                pass        # another test's socket is in it now


def test_instance_reaches_its_daemon(db, daemon_factory):
    """A daemon whose control.socket is /run/backfilld/NAME.sock (what the
    template's NAME.yaml says) is reached by -i NAME and $BACKFILLD_INSTANCE."""
    name = unique_name()
    run = RuntimeDir(name)
    d = None
    try:
        d = daemon_factory(db.server, db.name, {'control': {'socket': str(run.socket)}})
        result = ctl('-i', name, 'status', '--json')
        assert result.returncode == 0, (result.returncode, result.stderr)
        assert json.loads(result.stdout)['daemon']['pid'] == d.pid
        result = ctl('status', '--json', env={'BACKFILLD_INSTANCE': name})
        assert result.returncode == 0, (result.returncode, result.stderr)
        assert json.loads(result.stdout)['daemon']['pid'] == d.pid
        # Another instance's name reaches nobody.
        assert socket_tried(ctl('-i', name + '-other', 'status')) == \
            f'/run/backfilld/{name}-other.sock'
        assert d.stop() == 0
        assert not run.socket.exists(), 'the daemon left its socket behind'
    finally:
        if d is not None and d.alive():
            d.kill()
        run.cleanup()


def test_instance_reaches_a_daemon_activated_like_the_template(db, daemon_factory, tmp_path):
    """What backfilld@NAME.socket does: systemd listens on
    /run/backfilld/NAME.sock and passes the socket as fd 3. The daemon serves
    it whatever control.socket says, so the template fixes the path."""
    name = unique_name()
    run = RuntimeDir(name)
    d = daemon_factory(db.server, db.name, start=False)
    missing = tmp_path / 'no-such-dir' / 'ctl.sock'
    d.config['control']['socket'] = str(missing)
    try:
        with socket_activated(d, run.socket):
            result = ctl('-i', name, 'status', '--json')
            assert result.returncode == 0, (result.returncode, result.stderr)
            assert json.loads(result.stdout)['daemon']['pid'] == d.pid
            assert not missing.parent.exists()
            assert d.stop() == 0
    finally:
        run.cleanup()


# -- the units ---------------------------------------------------------------

def sections(name):
    """{section: [(key, value)]} of a unit file, in order, comments left out."""
    found, current = {}, None
    for line in (UNIT_DIR / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(('#', ';')):
            continue
        if line.startswith('['):
            current = found.setdefault(line.strip('[]'), [])
        else:
            key, _, value = line.partition('=')
            current.append((key.strip(), value.strip()))
    return found


def test_service_template_has_the_service_sandbox():
    """The same [Service] as backfilld.service, line for line, but for the
    configuration file: the hardening cannot drift apart."""
    single, template = sections('backfilld.service'), sections('backfilld@.service')
    expected = [(k, v.replace('/etc/backfilld/backfilld.yaml', '/etc/backfilld/%i.yaml'))
                for k, v in single['Service']]
    assert template['Service'] == expected
    assert ('ExecStart', '/usr/local/sbin/backfilld -c /etc/backfilld/%i.yaml') in expected
    assert ('RuntimeDirectory', 'backfilld') in template['Service']
    # Shared by the instances: one stopping must not delete the others' sockets.
    assert ('RuntimeDirectoryPreserve', 'yes') in template['Service']
    unit = template['Unit']
    assert ('Requires', 'backfilld@%i.socket') in unit and ('After', 'backfilld@%i.socket') in unit
    assert template['Install'] == [('WantedBy', 'multi-user.target'),
                                   ('Also', 'backfilld@%i.socket')]


def test_socket_template_is_the_socket_at_the_instance_path():
    single, template = sections('backfilld.socket'), sections('backfilld@.socket')
    listen = dict(template['Socket'])
    # The path backfillctl -i composes (checked above through its message).
    assert listen['ListenStream'] == '/run/backfilld/%i.sock'
    assert listen['Service'] == 'backfilld@%i.service'
    differ = {'ListenStream', 'Service'}
    assert [kv for kv in template['Socket'] if kv[0] not in differ] == \
        [kv for kv in single['Socket'] if kv[0] not in differ]
    assert template['Install'] == single['Install']


@pytest.fixture
def templates(tmp_path):
    """The templates with the installed paths pointing into tmp_path (as in
    test_units), plus an instance "app" of each: verify reads a template
    and an instance alike, security wants an instance."""
    prefix = tmp_path / 'prefix'
    (prefix / 'sbin').mkdir(parents=True)
    (prefix / 'sbin' / 'backfilld').symlink_to(daemon_binary(tmp_path))
    out = tmp_path / 'units'
    out.mkdir()
    for name in TEMPLATES:
        text = (UNIT_DIR / name).read_text()
        text = text.replace('/usr/local/sbin/', f'{prefix}/sbin/')
        (out / name).write_text(text)
        (out / name.replace('@', '@app')).write_text(text)
    return out


def template_complaints(result):
    return [line for line in (result.stdout + result.stderr).splitlines()
            if OUR_TEMPLATE.search(line)]


@needs_analyze
def test_verify_accepts_the_templates(templates):
    for names in (TEMPLATES, [n.replace('@', '@app') for n in TEMPLATES]):
        result = analyze('verify', '--man=no', '--generators=no',
                         *(f'./{n}' for n in names), cwd=templates)
        assert result.returncode == 0, describe(result)
        assert template_complaints(result) == [], describe(result)
    # Not blind to the templates: a misspelt key is reported.
    service = templates / 'backfilld@.service'
    service.write_text(service.read_text().replace('\nUMask=', '\nUMsk='))
    result = analyze('verify', '--man=no', '--generators=no', './backfilld@.service',
                     cwd=templates)
    assert any('UMsk' in line for line in template_complaints(result)), describe(result)


@needs_analyze
def test_instance_security_exposure_is_low(templates):
    result = analyze('security', '--offline=yes', f'--threshold={int(MAX_EXPOSURE * 10)}',
                     '--no-pager', './backfilld@app.service', cwd=templates)
    match = re.search(r'Overall exposure level for backfilld@app\.service: (\d+\.\d+)',
                      result.stdout)
    assert match, describe(result)
    assert float(match.group(1)) <= MAX_EXPOSURE, describe(result)
    assert result.returncode == 0, describe(result)


@pytest.mark.skipif(shutil.which('systemctl') is None, reason='systemctl not installed')
def test_enabling_an_instance_enables_its_socket(tmp_path):
    """systemctl --root: offline, no systemd running needed."""
    unit_dir = tmp_path / 'etc' / 'systemd' / 'system'
    unit_dir.mkdir(parents=True)
    for name in TEMPLATES:
        shutil.copy(UNIT_DIR / name, unit_dir / name)
    result = subprocess.run(['systemctl', f'--root={tmp_path}', 'enable', 'backfilld@app.service'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, describe(result)
    assert (unit_dir / 'multi-user.target.wants' / 'backfilld@app.service').is_symlink()
    assert (unit_dir / 'sockets.target.wants' / 'backfilld@app.socket').is_symlink()


def test_make_install_installs_the_templates(tmp_path):
    """make install, against copies of the built binaries: -o keeps make
    from rebuilding them (and from touching the real build directory)."""
    daemon = pathlib.Path(os.environ.get('BACKFILLD', ROOT / 'build' / 'backfilld'))
    if not daemon.is_file() or not pathlib.Path(BACKFILLCTL).is_file():
        pytest.skip('needs the built backfilld and backfillctl')
    build = tmp_path / 'build'
    build.mkdir()
    shutil.copy(daemon, build / 'backfilld')
    shutil.copy(BACKFILLCTL, build / 'backfillctl')
    stage = tmp_path / 'stage'
    result = subprocess.run(['make', '-s', '-C', str(ROOT), f'BUILD={build}', f'DESTDIR={stage}',
                             'PREFIX=/usr', '-o', f'{build}/backfilld', '-o',
                             f'{build}/backfillctl', 'install'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, describe(result)
    units = stage / 'usr' / 'lib' / 'systemd' / 'system'
    service = (units / 'backfilld@.service').read_text()
    assert '\nExecStart=/usr/sbin/backfilld -c /etc/backfilld/%i.yaml\n' in service
    assert '\nListenStream=/run/backfilld/%i.sock\n' in (units / 'backfilld@.socket').read_text()
    assert oct((units / 'backfilld@.socket').stat().st_mode & 0o777) == '0o644'
    assert sorted(p.name for p in build.iterdir()) == ['backfillctl', 'backfilld']
