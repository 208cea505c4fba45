#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Open the built documentation in headless Chromium (run by ``tox -e docs``).

``check_docs_in_browser.py HTML_DIR [--screenshot PNG]``: serves HTML_DIR
on a free loopback port, has Chromium load the configuration page as a
reader's browser would, and checks that the page it rendered shows every
option of the ``df_nats`` ``oslo.config.opts`` namespace, each as a
reference entry with its name and its help text. Exit status 1, naming the
options missing, if not.

Chromium is ``$CHROMIUM`` or the first of chromium, chromium-browser,
google-chrome on the PATH. Without one, the check is skipped (exit 0),
unless ``DF_NATS_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs
Debian's chromium) makes that an error.
"""

import argparse
import functools
import html.parser
import http.server
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import threading

NAMESPACE = 'df_nats'
PAGE = 'configuration.html'
# What the check needs of Chromium: no first-run work, no connection
# anywhere but the page's own loopback address.
_CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                   '--disable-quic', '--no-first-run',
                   '--disable-background-networking',
                   '--disable-component-update', '--disable-sync']


def _chromium():
    for name in filter(None, (os.environ.get('CHROMIUM'), 'chromium',
                              'chromium-browser', 'google-chrome')):
        path = shutil.which(name)
        if path:
            return path
    return None


def _expected_options():
    """``group.name`` of every option the namespace registers."""
    points = [ep for ep in importlib.metadata.entry_points(
        group='oslo.config.opts') if ep.name == NAMESPACE]
    if not points:
        raise SystemExit('no oslo.config.opts entry point named %r: is'
                         ' df-nats installed?' % NAMESPACE)
    expected = {}
    for group, opts in points[0].load()():
        for opt in opts:
            expected['%s.%s' % (group or 'DEFAULT', opt.dest)] = opt
    return expected


class _OptionEntries(html.parser.HTMLParser):
    """The option entries of a rendered page: the id of each
    ``<dl class="oslo.config option">`` and all the text it shows.
    """

    def __init__(self):
        super().__init__()
        self.entries = {}
        self._depth = 0       # dl nesting inside the entry being read
        self._id = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'dl' and self._depth:
            self._depth += 1
        elif tag == 'dl' and 'oslo.config' in (attrs.get('class') or ''):
            self._depth, self._id, self._text = 1, None, []
        elif tag == 'dt' and self._depth == 1 and self._id is None:
            self._id = attrs.get('id')

    def handle_endtag(self, tag):
        if tag == 'dl' and self._depth:
            self._depth -= 1
            if not self._depth and self._id:
                self.entries[self._id] = ''.join(self._text)

    def handle_data(self, data):
        if self._depth:
            self._text.append(data)


def _letters(text):
    return ''.join(c for c in text.lower() if c.isalnum())


def _missing(entries, expected):
    """What is wrong with each expected option's entry, by option."""
    problems = {}
    for key, opt in sorted(expected.items()):
        text = entries.get(key)
        if text is None:
            problems[key] = 'no entry'
        elif _letters(opt.name) not in _letters(text):
            problems[key] = 'its name is not shown'
        elif _letters(opt.help)[:40] not in _letters(text):
            problems[key] = 'its help is not shown'
    return problems


class _Server:
    """HTML_DIR over HTTP on a free loopback port, in a thread."""

    def __init__(self, root):
        handler = functools.partial(_QuietHandler, directory=root)
        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      handler)
        self.url = 'http://127.0.0.1:%d/' % self._httpd.server_address[1]

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever,
                         daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _render(chromium, url, screenshot=None):
    """The DOM Chromium built from ``url`` (after its scripts ran)."""
    with tempfile.TemporaryDirectory() as profile:
        argv = [chromium] + _CHROMIUM_FLAGS + [
            '--user-data-dir=' + profile]
        if screenshot:
            subprocess.run(argv + ['--window-size=1280,1600',
                                   '--screenshot=' + screenshot, url],
                           capture_output=True, timeout=120, check=True)
        return subprocess.run(argv + ['--dump-dom', url],
                              capture_output=True, text=True, timeout=120,
                              check=True).stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('html_dir')
    parser.add_argument('--screenshot', metavar='PNG',
                        help='also save what the top of the page looks like')
    args = parser.parse_args(argv)
    chromium = _chromium()
    if chromium is None:
        if os.environ.get('DF_NATS_REQUIRE_BROWSER') == '1':
            print('check_docs_in_browser: no Chromium found (set CHROMIUM,'
                  ' or install Debian\'s chromium)', file=sys.stderr)
            return 1
        print('check_docs_in_browser: skipped, no Chromium found')
        return 0
    if not os.path.exists(os.path.join(args.html_dir, PAGE)):
        print('check_docs_in_browser: no %s in %s: build the docs first'
              % (PAGE, args.html_dir), file=sys.stderr)
        return 1
    expected = _expected_options()
    with _Server(args.html_dir) as server:
        dom = _render(chromium, server.url + PAGE, args.screenshot)
    page = _OptionEntries()
    page.feed(dom)
    problems = _missing(page.entries, expected)
    if problems:
        for key, why in problems.items():
            print('check_docs_in_browser: %s%s: [%s] %s' % (
                server.url, PAGE, key, why), file=sys.stderr)
        return 1
    print('check_docs_in_browser: %s in Chromium shows all %d options of'
          ' the %s namespace' % (PAGE, len(expected), NAMESPACE))
    return 0


if __name__ == '__main__':
    sys.exit(main())
