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

"""Check the generated configuration sample (run by ``tox -e genconfig``).

``check_config_sample.py GENERATOR_CONF``: for every namespace the
oslo-config-generator configuration names, every option must have a help
text (the generator itself only logs a warning), and must appear in the
sample it wrote (``output_file``). Exit status 1, naming the options, if
not.
"""

import configparser
import importlib.metadata
import re
import sys


def _namespace_opts(namespace):
    """(group, opt) pairs of an ``oslo.config.opts`` entry point."""
    points = [ep for ep in importlib.metadata.entry_points(
        group='oslo.config.opts') if ep.name == namespace]
    if not points:
        raise SystemExit('no oslo.config.opts entry point named %r'
                         % namespace)
    for group, opts in points[0].load()():
        for opt in opts:
            yield group or 'DEFAULT', opt


def _sample_options(path):
    """{group: set of option names} in the sample (commented or not)."""
    found = {}
    group = None
    with open(path) as f:
        for line in f:
            header = re.match(r'^\[(\S+)\]\s*$', line)
            if header:
                group = header.group(1)
                continue
            option = re.match(r'^#?(\w+) = ', line)
            if option and group:
                found.setdefault(group, set()).add(option.group(1))
    return found


def check(generator_conf):
    parser = configparser.ConfigParser()
    if not parser.read(generator_conf):
        raise SystemExit('cannot read %s' % generator_conf)
    output = parser['DEFAULT']['output_file']
    namespaces = parser['DEFAULT']['namespace'].split()
    sample = _sample_options(output)
    problems = []
    count = 0
    for namespace in namespaces:
        for group, opt in _namespace_opts(namespace):
            count += 1
            name = '[%s] %s' % (group, opt.dest)
            if not (opt.help or '').strip():
                problems.append('%s has no help text' % name)
            if opt.dest not in sample.get(group, ()):
                problems.append('%s is missing from %s' % (name, output))
    return count, problems


def main(argv):
    if len(argv) != 1:
        raise SystemExit('usage: check_config_sample.py GENERATOR_CONF')
    count, problems = check(argv[0])
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems or not count:
        raise SystemExit(1)
    print('%d options, each with a help text, all in the sample' % count)


if __name__ == '__main__':
    main(sys.argv[1:])
